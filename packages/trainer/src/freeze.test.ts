import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  disposeModel,
  exampleFlops,
  initModel,
  loadCheckpoint,
  paramTable,
  parseSpec,
  SproutError,
} from '@sprout/core'
import { openDataset } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { frozenExampleFlops, frozenWeightGradFlops, globToRegExp, resolveFrozen } from './freeze.js'
import { type TrainConfig, train } from './loop.js'
import { tinyDecoder, tinyMnistVit } from './testing/specs.testutil.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-freeze-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const spec = parseSpec({ ...tinyDecoder, maxSeqLen: 16 })
const names = paramTable(spec).map((p) => p.name)

function refusal(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(SproutError)
    return (e as Error).message
  }
  throw new Error('expected a SproutError')
}

describe('resolveFrozen', () => {
  it('globs span dots, match whole names, and exact names match themselves', () => {
    expect(globToRegExp('layers.*.attn.*').test('layers.3.attn.q.weight')).toBe(true)
    expect(globToRegExp('layers.*.attn.*').test('layers.3.mlp.fc1.weight')).toBe(false)
    expect(globToRegExp('norm.weight').test('layers.0.norm.weight')).toBe(false)
    expect(globToRegExp('layers.?.mlp.fc2.bias').test('layers.0.mlp.fc2.bias')).toBe(true)
    expect([...resolveFrozen(['layers.*.attn.*', 'norm.weight'], names, null)].sort()).toEqual(
      names.filter((n) => n.startsWith('layers.0.attn.') || n === 'norm.weight').sort(),
    )
  })

  it('"source" freezes everything but the recorded new parameters', () => {
    const fresh = names.filter((n) => n.startsWith('layers.0.mlp.'))
    const frozen = resolveFrozen(['source'], names, fresh)
    expect([...frozen].sort()).toEqual(names.filter((n) => !fresh.includes(n)).sort())
  })

  it('refuses "source" without a record of new parameters, naming the fix', () => {
    const msg = refusal(() => resolveFrozen(['source'], names, null))
    expect(msg).toContain('"source"')
    expect(msg).toContain('block-expansion')
  })

  it('refuses a pattern that matches nothing, naming it', () => {
    expect(refusal(() => resolveFrozen(['layers.*.attention.*'], names, null))).toContain(
      '"layers.*.attention.*" matches no parameter',
    )
  })

  it('refuses freezing every parameter', () => {
    expect(refusal(() => resolveFrozen(['*'], names, null))).toContain('nothing to train')
  })
})

describe('frozen FLOP accounting (hand counts, T = 8)', () => {
  const T = 8
  it('drops 2·T·in·out per frozen weight: the attention projections of a d16 layer', () => {
    const frozen = resolveFrozen(['layers.*.attn.*'], names, null)
    // q, k, v, o: four 16×16 weights (biases cost no matmul): 4 · 2 · 8 · 16 · 16.
    expect(frozenWeightGradFlops(spec, frozen, T)).toBe(4 * 2 * 8 * 16 * 16)
    expect(frozenExampleFlops(spec, frozen, T)).toBe(exampleFlops(spec, T).total - 16384)
  })

  it('a frozen tied embedding drops the head weight gradient: 2·T·D·V', () => {
    expect(frozenWeightGradFlops(spec, new Set(['embed.tokens']), T)).toBe(2 * 8 * 16 * 256)
  })

  it('an expert weight sees T·k/E tokens; the router sees all T', () => {
    const moe = parseSpec({ ...tinyDecoder, moe: { experts: 4, topK: 2, layers: [0] } })
    expect(frozenWeightGradFlops(moe, new Set(['layers.0.mlp.experts.1.fc1.weight']), T)).toBe(
      2 * 4 * 16 * 32,
    )
    expect(frozenWeightGradFlops(moe, new Set(['layers.0.mlp.router.weight']), T)).toBe(2 * 8 * 16 * 4)
  })

  it('ViT: the classifier reads one token, the patch embedding 16 patches of 49 pixels', () => {
    const vit = parseSpec(tinyMnistVit)
    expect(frozenWeightGradFlops(vit, new Set(['head.weight']), T)).toBe(2 * 1 * 16 * 10)
    expect(frozenWeightGradFlops(vit, new Set(['embed.patch.weight']), T)).toBe(2 * 16 * 49 * 16)
    // The whole model frozen but its biases: everything the forward matmuls cost once more, minus
    // the attention scores (no weights there).
    const all = new Set(paramTable(vit).map((p) => p.name))
    const f = exampleFlops(vit)
    expect(frozenWeightGradFlops(vit, all, T)).toBe(f.forward - f.parts.attnScores)
  })
})

describe('training with frozen parameters', () => {
  const base: TrainConfig = {
    steps: 4,
    optimizer: { kind: 'adamw', lr: 1e-2, weightDecay: 0.1 },
    schedule: { kind: 'constant' },
    clipNorm: 1,
    evalEvery: 4,
    evalBatches: 1,
  }
  async function run(config: TrainConfig, frozen: string[] | undefined, outDir?: string) {
    const d = await openDataset('moby-dick', spec, { batchSize: 2, seqLen: 8, seed: 1 })
    const val = d.valBatches(1)
    const model = initModel(spec, 3)
    try {
      const r = await train({ model, train: d.train, val, config, progress: false, frozen, outDir })
      const same = Object.fromEntries(
        Object.keys(model.params).map((n) => [
          n,
          tf.tidy(() => tf.all(tf.equal(model.params[n], r.model.params[n])).dataSync()[0] === 1),
        ]),
      )
      return { ...r, same }
    } finally {
      disposeModel(model)
      tf.dispose(val.flatMap((b) => Object.values(b)))
    }
  }

  for (const optimizer of [
    { kind: 'adamw', lr: 1e-2, weightDecay: 0.1 },
    { kind: 'sgd', lr: 0.5, momentum: 0.9, weightDecay: 0.1 },
  ] as const) {
    it(`${optimizer.kind}: frozen parameters stay bit-identical (no update, no decay), the rest train`, async () => {
      const before = tf.memory().numTensors
      const frozen = [...resolveFrozen(['layers.*.attn.*', 'embed.*'], names, null)]
      const r = await run({ ...base, optimizer }, frozen)
      for (const n of names) expect(r.same[n], n).toBe(frozen.includes(n))
      disposeModel(r.model)
      expect(tf.memory().numTensors).toBe(before)
    })
  }

  it('keeps no optimizer state for frozen parameters and charges fewer FLOPs per step', async () => {
    const frozen = [...resolveFrozen(['layers.*.attn.*'], names, null)]
    const out = join(dir, 'state')
    const r = await run(base, frozen, out)
    const full = await run(base, undefined)
    // 4 steps of batch 2: the four 16×16 attention weights' dW (2·8·16·16 each) per example.
    expect(full.state.flops - r.state.flops).toBe(4 * 2 * 4 * 2 * 8 * 16 * 16)
    const ckpt = loadCheckpoint(join(out, 'checkpoint'))
    const stateNames = Object.keys(ckpt.state!)
    expect(stateNames.length).toBe(2 * (names.length - frozen.length))
    for (const n of frozen) expect(stateNames).not.toContain(`m.${n}`)
    disposeModel(ckpt.model)
    tf.dispose(Object.values(ckpt.state!))
    disposeModel(r.model)
    disposeModel(full.model)
  })

  it('refuses a frozen name the model does not have', async () => {
    await expect(run(base, ['layers.9.attn.q.weight'])).rejects.toThrow(
      /frozen parameter "layers.9.attn.q.weight"/,
    )
  })
})
