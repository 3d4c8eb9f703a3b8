import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  disposeModel,
  forward,
  initModel,
  type Model,
  parseSpec,
  SeededRandom,
  skipUnless,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseImages } from './commands.js'
import { exportHuggingFace, importHuggingFace } from './hf.js'

/**
 * Optional: compares Sprout's logits with an independent PyTorch implementation
 * (fixtures/torch_reference.py). Skipped with a message when no python3 with torch exists
 * (an error under SPROUT_REQUIRE_ALL=1, as in CI).
 */
const SCRIPT = join(import.meta.dirname, '../fixtures/torch_reference.py')

function findTorchPython(): string | null {
  const candidates = [process.env.SPROUT_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[]
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch, numpy'], { encoding: 'utf8' })
    if (r.status === 0) return py
  }
  return null
}

const python = findTorchPython()

function py(args: string[]): void {
  const r = spawnSync(python!, [SCRIPT, ...args], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`torch_reference.py ${args.join(' ')} failed:\n${r.stderr}`)
}

function sproutLogits(model: Model, tokens: number[][]): Float32Array {
  const ids = tf.tensor2d(tokens, [tokens.length, tokens[0].length], 'int32')
  const y = forward(model, ids)
  const out = y.dataSync() as Float32Array
  tf.dispose([ids, y])
  return out
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

describe.skipIf(
  skipUnless(
    python !== null,
    'python3 with torch and numpy (apt-get install python3-torch, or set SPROUT_PYTHON)',
  ),
)('PyTorch reference (max |Δ logits| < 1e-4)', () => {
  let tmp: string
  let base: number
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'sprout-torch-'))
    base = tf.memory().numTensors
  })
  afterAll(() => {
    expect(tf.memory().numTensors).toBe(base)
    rmSync(tmp, { recursive: true, force: true })
  })

  for (const [arch, dtype] of [
    ['gpt2', 'f32'],
    ['llama', 'f32'],
    ['llama', 'bf16'],
    ['bert', 'f32'],
    ['vit', 'f16'],
  ] as const)
    it(`${arch} (${dtype}) built and saved by PyTorch, converted by Sprout`, () => {
      const dir = join(tmp, `${arch}-${dtype}`)
      py(['make', arch, dir, dtype])
      const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'))
      const { model } = importHuggingFace(dir)
      // ViT: PyTorch's channels-first pixel_values go through the same parser `sprout forward` uses.
      const got =
        arch === 'vit'
          ? tf.tidy(
              () =>
                forward(model, parseImages(ref.inputs, model.spec, 'reference')).dataSync() as Float32Array,
            )
          : sproutLogits(model, ref.inputs)
      const d = maxAbsDiff(got, ref.logits)
      console.log(`interop: ${arch} ${dtype} PyTorch vs Sprout max |Δ logits| = ${d.toExponential(2)}`)
      expect(d).toBeLessThan(1e-4)
      expect(Math.max(...Array.from(got, Math.abs))).toBeGreaterThan(0.5) // non-trivial logits
      disposeModel(model)
    })

  it('a Sprout model exported to Hugging Face gives the same logits in PyTorch (GPT-2, GQA LLaMA, BERT, ViT)', () => {
    const specs = {
      gpt2: {
        family: 'decoder',
        vocabSize: 29,
        maxSeqLen: 12,
        dModel: 16,
        nLayers: 2,
        nHeads: 2,
        dFF: 40,
        activation: 'gelu_tanh',
      },
      llama: {
        family: 'decoder',
        vocabSize: 31,
        maxSeqLen: 12,
        dModel: 24,
        nLayers: 2,
        nHeads: 6,
        nKVHeads: 2,
        dFF: 40,
        norm: 'rmsnorm',
        activation: 'swiglu',
        bias: false,
        tieEmbeddings: false,
        positional: 'rotary',
        ropeTheta: 10000,
      },
      bert: {
        family: 'encoder',
        vocabSize: 27,
        maxSeqLen: 12,
        dModel: 16,
        nLayers: 2,
        nHeads: 4,
        dFF: 32,
        normPlacement: 'post',
        normEps: 1e-12,
        mlmHead: true,
      },
      vit: {
        family: 'vit',
        dModel: 16,
        nLayers: 2,
        nHeads: 2,
        dFF: 24,
        image: { size: 6, patch: 3, channels: 2, classes: 3 },
      },
    }
    const rng = new SeededRandom(8)
    // Channels-first images as PyTorch takes them; Sprout reads them through parseImages.
    const images = [0, 1].map(() =>
      Array.from({ length: 2 }, () =>
        Array.from({ length: 6 }, () => Array.from({ length: 6 }, () => rng.normal())),
      ),
    )
    const imgFile = join(tmp, 'images.json')
    writeFileSync(imgFile, JSON.stringify(images))
    const tokens = [
      [3, 1, 4, 1, 5, 9, 2, 6, 5, 3],
      [2, 7, 1, 8, 2, 8, 1, 8, 2, 8],
    ]
    const tokFile = join(tmp, 'tokens.json')
    writeFileSync(tokFile, JSON.stringify(tokens))
    for (const [arch, raw] of Object.entries(specs)) {
      const model = initModel(parseSpec(raw), 3)
      for (const [k, t] of Object.entries(model.params)) {
        model.params[k] = tf.tidy(() => tf.add(t, tf.randomNormal(t.shape, 0, 0.3, 'float32', 4)))
        t.dispose()
      }
      const dir = join(tmp, `export-${arch}`)
      exportHuggingFace(model, dir)
      const out = join(tmp, `out-${arch}.json`)
      py(['forward', dir, arch === 'vit' ? imgFile : tokFile, out])
      const ref = JSON.parse(readFileSync(out, 'utf8'))
      const got =
        arch === 'vit'
          ? tf.tidy(
              () => forward(model, parseImages(images, model.spec, 'images')).dataSync() as Float32Array,
            )
          : sproutLogits(model, tokens)
      const d = maxAbsDiff(got, ref.logits)
      console.log(`interop: exported ${arch} PyTorch vs Sprout max |Δ logits| = ${d.toExponential(2)}`)
      expect(d).toBeLessThan(1e-4)
      disposeModel(model)
    }
  })
})
