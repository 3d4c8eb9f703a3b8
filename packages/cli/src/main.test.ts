import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CommandIo } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from './index.js'
import { tinySuite } from './testing/suite.testutil.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-cli-'))
const here = dirname(fileURLToPath(import.meta.url))
const bin = resolve(here, '../dist/bin.js')
const spec = { family: 'decoder', vocabSize: 32, maxSeqLen: 16, dModel: 16, nLayers: 1, nHeads: 2, dFF: 32 }
const specPath = join(dir, 'spec.json')

function capture(): CommandIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = []
  const stderr: string[] = []
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l) }
}

async function run(...argv: string[]) {
  const io = capture()
  const code = await main(['--backend', 'cpu', ...argv], io)
  return { code, ...io }
}

beforeAll(async () => {
  writeFileSync(specPath, JSON.stringify(spec))
  const r = await run('init', '--spec', specPath, '--seed', '3', '--out', join(dir, 'src'))
  expect(r.code).toBe(0)
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('sprout CLI', () => {
  it('init then grow with identity --verify --json reports zero difference', async () => {
    const before = tf.memory().numTensors
    const r = await run(
      'grow',
      '--method',
      'identity',
      '--from',
      join(dir, 'src'),
      '--target',
      specPath,
      '--out',
      join(dir, 'g'),
      '--verify',
      '--json',
    )
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout.at(-1)!)
    expect(report).toMatchObject({
      method: 'identity',
      maxAbsLogitDiff: 0,
      growthFlops: 0,
      out: join(dir, 'g'),
    })
    expect(report.source.dModel).toBe(16)
    expect(typeof report.seconds).toBe('number')
    expect(existsSync(join(dir, 'g', 'model.safetensors'))).toBe(true)
    expect(tf.memory().numTensors).toBe(before)
  })
  it('convert to Hugging Face and back, then forward, keeps the logits', async () => {
    const hf = join(dir, 'hf')
    const back = join(dir, 'back')
    const tokens = join(dir, 'tokens.json')
    writeFileSync(
      tokens,
      JSON.stringify([
        [1, 2, 3, 4],
        [5, 6, 7, 8],
      ]),
    )
    expect((await run('convert', '--to', 'hf', '--in', join(dir, 'src'), '--out', hf)).code).toBe(0)
    expect(existsSync(join(hf, 'config.json'))).toBe(true)
    expect((await run('convert', '--from', 'hf', '--in', hf, '--out', back)).code).toBe(0)
    const a = join(dir, 'a.safetensors')
    const b = join(dir, 'b.safetensors')
    expect(
      (await run('forward', '--checkpoint', join(dir, 'src'), '--tokens', tokens, '--out', a)).code,
    ).toBe(0)
    expect((await run('forward', '--checkpoint', back, '--tokens', tokens, '--out', b)).code).toBe(0)
    const { readSafetensors } = await import('@sprout/core')
    const [la, lb] = [readSafetensors(a), readSafetensors(b)]
    const [key] = [...la.tensors.keys()]
    const values = (f: typeof la) => Array.from(f.tensors.get(key!)!.data as Float32Array)
    expect(values(la).length).toBe(2 * 4 * 32)
    expect(values(lb)).toEqual(values(la))
    const bad = await run('convert', '--to', 'onnx', '--in', join(dir, 'src'), '--out', join(dir, 'x'))
    expect(bad.code).toBe(2)
    expect(bad.stderr.join('\n')).toMatch(/only format is "hf"/)
  })

  it('grows with LEMON losslessly into a wider, deeper target', async () => {
    const bigPath = join(dir, 'big.json')
    writeFileSync(bigPath, JSON.stringify({ ...spec, dModel: 24, nHeads: 3, dFF: 48, nLayers: 2 }))
    const r = await run(
      'grow',
      '--method',
      'lemon',
      '--from',
      join(dir, 'src'),
      '--target',
      bigPath,
      '--out',
      join(dir, 'lemon'),
      '--verify',
      '--json',
    )
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout.at(-1)!)
    expect(report.target).toMatchObject({ dModel: 24, nLayers: 2, nHeads: 3, dFF: 48 })
    expect(report.maxAbsLogitDiff).toBeLessThan(1e-4)
    expect(report.growthFlops).toBeGreaterThan(0)
  })

  it('learned methods without data: refuse with a hint, or materialise the initialisation with steps=0', async () => {
    const bigPath = join(dir, 'big2.json')
    writeFileSync(bigPath, JSON.stringify({ ...spec, dModel: 32, nHeads: 4, dFF: 64, nLayers: 2 }))
    const common = ['--from', join(dir, 'src'), '--target', bigPath]
    const refused = await run('grow', '--method', 'ligo', ...common, '--out', join(dir, 'ligo0'))
    expect(refused.code).toBe(1)
    expect(refused.stderr.join('\n')).toMatch(/--data moby-dick/)
    expect(existsSync(join(dir, 'ligo0'))).toBe(false)
    for (const method of ['ligo', 'mango']) {
      const r = await run(
        'grow',
        '--method',
        method,
        ...common,
        '--out',
        join(dir, method),
        '--option',
        'steps=0',
        '--json',
      )
      expect(r.code).toBe(0)
      const report = JSON.parse(r.stdout.at(-1)!)
      expect(report).toMatchObject({ method, steps: 0 })
      expect(report.target.dModel).toBe(32)
    }
  })

  it('fits LiGO on Moby Dick batches and charges the fitting FLOPs to growth', async () => {
    const small = { ...spec, vocabSize: 256 }
    const smallPath = join(dir, 'small256.json')
    const bigPath = join(dir, 'big256.json')
    writeFileSync(smallPath, JSON.stringify(small))
    writeFileSync(bigPath, JSON.stringify({ ...small, dModel: 32, nHeads: 4, dFF: 64, nLayers: 2 }))
    expect((await run('init', '--spec', smallPath, '--out', join(dir, 'src256'))).code).toBe(0)
    const r = await run(
      'grow',
      '--method',
      'ligo',
      '--from',
      join(dir, 'src256'),
      '--target',
      bigPath,
      '--data',
      'moby-dick',
      '--batch-size',
      '2',
      '--option',
      'steps=3',
      '--out',
      join(dir, 'ligo-fit'),
      '--json',
    )
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout.at(-1)!)
    expect(report.steps).toBe(3)
    expect(report.growthFlops).toBeGreaterThan(report.details.fitFlopsPerStep ?? 0)
    expect(r.stderr.join('\n')).toMatch(/data: moby-dick \(byte tokens/)
  })

  it('trains from a config, refuses to overwrite the run, resumes it and evaluates the checkpoint', async () => {
    const cfgPath = join(dir, 'run.json')
    writeFileSync(
      cfgPath,
      JSON.stringify({
        spec: 'small256.json',
        data: 'moby-dick',
        batchSize: 2,
        seqLen: 8,
        steps: 4,
        evalEvery: 2,
        evalBatches: 2,
      }),
    )
    const out = join(dir, 'train')
    const r = await run('train', '--config', cfgPath, '--out', out, '--json')
    expect(r.code).toBe(0)
    const last = JSON.parse(r.stdout.at(-1)!)
    expect(Object.keys(last).sort()).toEqual(['flops', 'seconds', 'step', 'tokens', 'trainLoss', 'valLoss'])
    expect(last).toMatchObject({ step: 4, tokens: 64 })
    const again = await run('train', '--config', cfgPath, '--out', out)
    expect(again.code).toBe(1)
    expect(again.stderr.join('\n')).toMatch(
      /already holds a training run; continue it with `sprout train --resume/,
    )
    const more = await run('train', '--resume', out, '--steps', '6', '--json')
    expect(more.code).toBe(0)
    expect(JSON.parse(more.stdout.at(-1)!).step).toBe(6)
    const ev = await run(
      'eval',
      '--checkpoint',
      join(out, 'checkpoint'),
      '--data',
      'moby-dick',
      '--batches',
      '2',
      '--json',
    )
    expect(ev.code).toBe(0)
    const e = JSON.parse(ev.stdout.at(-1)!)
    expect(Object.keys(e).sort()).toEqual(['perplexity', 'valLoss'])
    writeFileSync(cfgPath, JSON.stringify({ spec: 'small256.json', optimizer: { lr: -1 } }))
    const bad = await run('train', '--config', cfgPath, '--out', join(dir, 'bad'))
    expect(bad.code).toBe(1)
    expect(bad.stderr.join('\n')).toMatch(/run.json.optimizer.lr/)
    expect(existsSync(join(dir, 'bad'))).toBe(false)
  })

  it('masked stacking verifies at mask 0, and training ramps the mask in from the grown checkpoint', async () => {
    const deepPath = join(dir, 'deep256.json')
    writeFileSync(deepPath, JSON.stringify({ ...spec, vocabSize: 256, nLayers: 2 }))
    if (!existsSync(join(dir, 'src256'))) {
      writeFileSync(join(dir, 'small256b.json'), JSON.stringify({ ...spec, vocabSize: 256 }))
      await run('init', '--spec', join(dir, 'small256b.json'), '--out', join(dir, 'src256'))
    }
    const g = await run(
      'grow',
      '--method',
      'stack',
      '--option',
      'mode=masked',
      '--option',
      'maskRampSteps=4',
      '--from',
      join(dir, 'src256'),
      '--target',
      deepPath,
      '--out',
      join(dir, 'masked'),
      '--verify',
      '--json',
    )
    expect(g.code).toBe(0)
    expect(JSON.parse(g.stdout.at(-1)!).maxAbsLogitDiff).toBeLessThan(1e-5)
    const plain = await run(
      'grow',
      '--method',
      'stack',
      '--from',
      join(dir, 'src256'),
      '--target',
      deepPath,
      '--out',
      join(dir, 'stacked'),
      '--verify',
      '--json',
    )
    expect(JSON.parse(plain.stdout.at(-1)!).maxAbsLogitDiff).toBeGreaterThan(1e-3)
    const cfg = join(dir, 'masked-run.json')
    writeFileSync(
      cfg,
      JSON.stringify({ from: 'masked', batchSize: 2, seqLen: 8, steps: 2, evalEvery: 1, evalBatches: 1 }),
    )
    const t = await run('train', '--config', cfg, '--out', join(dir, 'masked-train'), '--json')
    expect(t.code).toBe(0)
  })

  it('bench: an unknown suite or a directory without a comparison is a clear error', async () => {
    const a = await run('bench', 'compare', '--suite', 'nosuch')
    expect(a.code).toBe(2)
    expect(a.stderr.join('\n')).toMatch(/unknown suite "nosuch": choose smoke, quick, text, vit, paper/)
    const b = await run('bench', 'report', dir)
    expect(b.code).toBe(1)
    expect(b.stderr.join('\n')).toMatch(/is not a comparison directory/)
  })

  it('bench compare --plugin compares a method loaded from a plugin file', async () => {
    // Inside the repository so the plugin can import @sprout/core like an installed plugin would.
    const pluginDir = mkdtempSync(join(resolve(here, '../../..'), '.vitest-tmp-'))
    try {
      const plugin = join(pluginDir, 'reinit.mjs')
      writeFileSync(
        plugin,
        `import { initModel, z } from '@sprout/core'
export default {
  name: 'reinit', description: 'ignores the source: a fresh random model (test plugin)',
  options: z.strictObject({}),
  capabilities: { width: true, depth: true, heads: true, ffn: true, moe: false, learned: false, functionPreserving: false },
  check() {},
  async grow(source, target) {
    return { model: initModel(target, 9), report: { method: 'reinit', growthFlops: 0, steps: 0, seconds: 0, functionPreserving: false, maxAbsLogitDiff: null, details: {} } }
  },
}
`,
      )
      const suite = join(dir, 'tiny-suite.json')
      writeFileSync(
        suite,
        JSON.stringify({
          ...tinySuite,
          seeds: 1,
          budgets: [1],
          scratchLrSweep: [1],
        }),
      )
      const out = join(dir, 'bench-plugin')
      const r = await run(
        'bench',
        'compare',
        '--suite',
        suite,
        '--methods',
        'scratch,reinit',
        '--plugin',
        plugin,
        '--out',
        out,
      )
      expect(r.code).toBe(0)
      const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
      expect(
        results.methods.map((m: { method: string; status: string }) => `${m.method}:${m.status}`),
      ).toEqual(['reinit:done'])
      expect(results.scratch.byBudget).toHaveLength(1)
      const bad = await run(
        'bench',
        'compare',
        '--suite',
        suite,
        '--plugin',
        join(dir, 'missing.mjs'),
        '--out',
        join(dir, 'b2'),
      )
      expect(bad.code).toBe(1)
      expect(bad.stderr.join('\n')).toMatch(/missing.mjs does not exist/)
    } finally {
      rmSync(pluginDir, { recursive: true, force: true })
    }
  })

  it('lists methods with capabilities', async () => {
    const r = await run('list', '--json')
    const listed = JSON.parse(r.stdout[0]) as { name: string; capabilities: Record<string, boolean> }[]
    expect(listed.find((m) => m.name === 'identity')!.capabilities.functionPreserving).toBe(true)
    expect(listed.find((m) => m.name === 'hypercloning')!.capabilities).toMatchObject({
      width: true,
      heads: true,
      ffn: true,
      depth: false,
      functionPreserving: true,
    })
  })

  it('lists each method with its display name and papers (text), and keeps them as data (--json)', async () => {
    const text = (await run('list')).stdout.join('\n')
    expect(text).toContain('LiGO: Learned linear growth')
    expect(text).toContain(
      'Learning to Grow Pretrained Models for Efficient Transformer Training (Wang et al., ICLR 2023) https://arxiv.org/abs/2303.00980',
    )
    const listed = JSON.parse((await run('list', '--json')).stdout[0]) as {
      name: string
      description: string
      meta: { displayName: string; papers: { year: number; url: string }[] } | null
    }[]
    const byName = new Map(listed.map((m) => [m.name, m]))
    expect(byName.get('identity')!.meta).toBeNull()
    for (const name of ['lemon', 'ligo', 'mango', 'net2net', 'stack', 'upcycle']) {
      const m = byName.get(name)!
      expect(m.meta!.papers.length).toBeGreaterThan(0)
      // The citation moved out of the description into meta.
      expect(m.description).not.toMatch(/et al\./)
    }
    expect(byName.get('net2net')!.meta!.papers.map((p) => p.year)).toEqual([2016, 2022])
  })
  it.each([
    [
      ['grow', '--method', 'nope', '--from', 'SRC', '--target', 'SPEC', '--out', 'OUT'],
      1,
      /unknown method "nope"/,
    ],
    [
      ['grow', '--method', 'identity', '--from', 'missing-dir', '--target', 'SPEC', '--out', 'OUT'],
      1,
      /checkpoint directory missing-dir does not exist/,
    ],
    [
      ['grow', '--method', 'identity', '--from', 'SRC', '--target', 'missing.json', '--out', 'OUT'],
      1,
      /spec file missing.json does not exist/,
    ],
    [
      [
        'grow',
        '--method',
        'identity',
        '--from',
        'SRC',
        '--target',
        'SPEC',
        '--out',
        'OUT',
        '--option',
        'x=1',
      ],
      1,
      /method "identity": option.*unknown field\(s\) "x"/,
    ],
    [
      ['grow', '--method', 'identity', '--from', 'SRC', '--target', 'BIG', '--out', 'OUT'],
      1,
      /target .* must equal the source/,
    ],
    [
      ['grow', '--method', 'identity', '--from', 'SRC', '--target', 'SMALL', '--out', 'OUT'],
      1,
      /must equal the source/,
    ],
    [
      ['grow', '--method', './no/such/plugin.js', '--from', 'SRC', '--target', 'SPEC', '--out', 'OUT'],
      1,
      /method path .* does not exist/,
    ],
    [
      ['grow', '--method', 'NOTOP', '--from', 'SRC', '--target', 'SPEC', '--out', 'OUT'],
      1,
      /is not a GrowthOperator|no default export/,
    ],
    [['init', '--spec', 'BADSPEC', '--out', 'OUT'], 1, /dModel 100 is not divisible by nHeads 3/],
    [['init', '--spec', 'NOTJSON', '--out', 'OUT'], 1, /not valid JSON/],
    [['init', '--spec', 'SPEC', '--out', 'SRC'], 1, /already holds a checkpoint; pass --force/],
    [['init', '--spec', 'SPEC', '--out', 'FOREIGN'], 1, /is not a Sprout checkpoint/],
    // File-system problems and config problems: one line, exit 1 (issue 21).
    [
      ['init', '--spec', 'SPEC', '--out', 'UNDERFILE'],
      1,
      /cannot write .*afile\/sub: .*afile is a file, not a folder/,
    ],
    [['init', '--spec', 'SPEC', '--out', ''], 1, /^sprout: error: --out is empty; name the folder to write$/],
    [['grow', '--method', 'identity', '--from', 'SRC', '--target', 'SPEC', '--out', ''], 1, /--out is empty/],
    [['convert', '--to', 'hf', '--in', 'SRC', '--out', ''], 1, /--out is empty/],
    [['train', '--config', 'CFG_TOKENIZER', '--out', ''], 1, /--out is empty/],
    [['train', '--config', 'CFG_TOKENIZER', '--out', 'OUT'], 1, /tokenizer: "nope" is not one of/],
    [['train', '--config', 'CFG_SEQLEN', '--out', 'OUT'], 1, /seqLen 99 exceeds the model's maxSeqLen/],
    [
      ['train', '--config', 'CFG_FREEZE', '--out', 'OUT'],
      1,
      /frozen parameter .* is not in the model|freeze/,
    ],
    [
      ['train', '--config', 'CFG_OK', '--out', 'OUT', '--checkpoint-every', '0'],
      1,
      /checkpointEvery must be a positive integer/,
    ],
    [['train', '--resume', 'BADRUN'], 1, /run file .*run.json is not valid JSON/],
    [
      ['train', '--resume', 'OUT'],
      1,
      /out-never is not a training run \(it does not exist\); start one with --config/,
    ],
    [['grow', '--from', 'x'], 2, /required option '--method/],
    [['init', '--spec', 'SPEC', '--out', 'OUT', '--seed', 'abc'], 2, /--seed must be an integer/],
    [['frobnicate'], 2, /unknown command/],
  ])('%j exits %i with a one-line error', async (args, code, message) => {
    const files: Record<string, string> = {
      SRC: join(dir, 'src'),
      SPEC: specPath,
      OUT: join(dir, 'out-never'),
      BIG: join(dir, 'big.json'),
      SMALL: join(dir, 'small.json'),
      BADSPEC: join(dir, 'bad.json'),
      NOTJSON: join(dir, 'notjson.json'),
      NOTOP: join(dir, 'notop.mjs'),
      FOREIGN: join(dir, 'foreign'),
      UNDERFILE: join(dir, 'afile', 'sub'),
      CFG_TOKENIZER: join(dir, 'cfg-tokenizer.json'),
      CFG_OK: join(dir, 'cfg-ok.json'),
      CFG_SEQLEN: join(dir, 'cfg-seqlen.json'),
      CFG_FREEZE: join(dir, 'cfg-freeze.json'),
      BADRUN: join(dir, 'badrun'),
    }
    writeFileSync(join(dir, 'afile'), 'x')
    const cfg = { spec, data: 'moby-dick', steps: 1, batchSize: 2, evalBatches: 1 }
    writeFileSync(files.CFG_TOKENIZER, JSON.stringify({ ...cfg, tokenizer: 'nope' }))
    writeFileSync(files.CFG_OK, JSON.stringify({ ...cfg, spec: { ...spec, vocabSize: 256 } }))
    writeFileSync(files.CFG_SEQLEN, JSON.stringify({ ...cfg, seqLen: 99 }))
    writeFileSync(files.CFG_FREEZE, JSON.stringify({ ...cfg, freeze: ['layers.9.attn.q.weight'] }))
    mkdirSync(files.BADRUN, { recursive: true })
    writeFileSync(join(files.BADRUN, 'run.json'), '{"config": ')
    writeFileSync(files.BIG, JSON.stringify({ ...spec, dModel: 32 }))
    writeFileSync(files.SMALL, JSON.stringify({ ...spec, nLayers: 1, dFF: 16 }))
    writeFileSync(files.BADSPEC, JSON.stringify({ ...spec, dModel: 100, nHeads: 3 }))
    writeFileSync(files.NOTJSON, '{"family":')
    writeFileSync(files.NOTOP, 'export default { name: "x" }\n')
    mkdirSync(files.FOREIGN, { recursive: true })
    writeFileSync(join(files.FOREIGN, 'keep.txt'), 'x')
    const r = await run(...args.map((a) => files[a] ?? a))
    expect(r.code).toBe(code)
    const errors = r.stderr.filter((l) => !l.startsWith('sprout: backend'))
    expect(errors.join('\n')).toMatch(message)
    expect(errors.join('\n')).not.toMatch(/\n\s+at /)
    expect(existsSync(files.OUT)).toBe(false)
  })
  it('the built binary exits non-zero without a stack trace (skipped until built)', () => {
    if (!existsSync(bin)) {
      console.log('skipping: packages/cli/dist/bin.js not built (npm test builds it first)')
      return
    }
    const r = spawnSync(
      process.execPath,
      [
        bin,
        'grow',
        '--method',
        'identity',
        '--from',
        join(dir, 'nope'),
        '--target',
        specPath,
        '--out',
        join(dir, 'x'),
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, SPROUT_BACKEND: 'cpu' },
      },
    )
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^sprout: error: checkpoint directory .* does not exist$/m)
    expect(r.stderr).not.toMatch(/\s+at /)
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([])
  })
})
