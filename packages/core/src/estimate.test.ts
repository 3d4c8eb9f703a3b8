import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { afterEach, describe, expect, it } from 'vitest'
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js'
import { estimateModelBytes, estimateParamCount, estimateTrainingBytes } from './estimate.js'
import { loss } from './forward.js'
import {
  allowNonFinite,
  assertFiniteTensor,
  assertFitsMemory,
  countNonFinite,
  formatBytes,
  memoryLimit,
  parseByteSize,
  setRuntimeLimits,
} from './limits.js'
import { countParams, disposeModel, initModel } from './params.js'
import { SeededRandom } from './random.js'
import { parseSpec } from './spec.js'

afterEach(() => {
  setRuntimeLimits({})
  delete process.env.SPROUT_MEMORY_LIMIT
  delete process.env.SPROUT_ALLOW_NON_FINITE
})

describe('estimateParamCount', () => {
  it('equals the enumerated count (countParams) on 300 random specs of every family and option', () => {
    const rng = new SeededRandom(7)
    const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]
    for (let i = 0; i < 300; i++) {
      const family = pick(['decoder', 'encoder', 'vit'] as const)
      const nHeads = 1 + rng.int(4)
      const headDim = 2 * (1 + rng.int(4))
      const nLayers = 1 + rng.int(4)
      const moe =
        rng.int(2) === 0
          ? {
              experts: 1 + rng.int(5),
              topK: 1,
              layers: [...new Set([rng.int(nLayers), rng.int(nLayers)])],
              ...(rng.int(2) === 0 ? { expertDFF: 1 + rng.int(9) } : {}),
            }
          : undefined
      const raw: Record<string, unknown> = {
        family,
        dModel: nHeads * headDim,
        nHeads,
        nLayers,
        dFF: 1 + rng.int(20),
        norm: pick(['layernorm', 'rmsnorm']),
        normPlacement: pick(['pre', 'post']),
        activation: pick(['gelu', 'relu', 'swiglu']),
        bias: rng.int(2) === 0,
        ...(moe ? { moe } : {}),
      }
      if (family === 'vit')
        raw.image = { size: 8, patch: pick([2, 4, 8]), channels: 1 + rng.int(3), classes: 2 + rng.int(5) }
      else {
        raw.vocabSize = 2 + rng.int(30)
        raw.maxSeqLen = 1 + rng.int(16)
        if (family === 'decoder') {
          raw.tieEmbeddings = rng.int(2) === 0
          if (rng.int(2) === 0) raw.positional = 'rotary'
          if (nHeads % 2 === 0 && rng.int(2) === 0) raw.nKVHeads = nHeads / 2
        } else if (rng.int(2) === 0) raw.mlmHead = true
      }
      const spec = parseSpec(raw)
      expect(estimateParamCount(spec), JSON.stringify(raw)).toBe(countParams(spec))
    }
  })

  it('sizes the issue’s impossible specs in well under a second without enumerating them', () => {
    const base = {
      family: 'decoder',
      vocabSize: 256,
      maxSeqLen: 64,
      dModel: 128,
      nLayers: 2,
      nHeads: 4,
      dFF: 512,
    }
    const start = performance.now()
    const layers = estimateParamCount(parseSpec({ ...base, nLayers: 1e6 }))
    const experts = estimateParamCount(parseSpec({ ...base, moe: { experts: 1e6, layers: [0] } }))
    const wide = estimateParamCount(parseSpec({ ...base, dModel: 1e9, nHeads: 1 }))
    expect(performance.now() - start).toBeLessThan(500)
    // Hand-computed: per layer 2 LayerNorms (4·128) + q,k,v,o with biases (4·(128·128+128)) + MLP (128·512+512+512·128+128).
    const perLayer = 4 * 128 + 4 * (128 * 128 + 128) + (128 * 512 + 512 + 512 * 128 + 128)
    expect(layers).toBe(1e6 * perLayer + 256 * 128 + 64 * 128 + 2 * 128)
    expect(experts).toBeGreaterThan(1e6 * 2 * 128 * 512)
    expect(wide).toBeGreaterThan(4 * 1e18) // q, k, v, o alone are 4·D²
  })

  it('training activations are a lower bound of what a real forward and backward pass allocates', async () => {
    const spec = parseSpec({
      family: 'decoder',
      vocabSize: 64,
      maxSeqLen: 16,
      dModel: 32,
      nLayers: 2,
      nHeads: 4,
      dFF: 64,
    })
    const before = tf.memory().numTensors
    const model = initModel(spec, 1)
    const B = 4
    const params = estimateParamCount(spec) * 4
    const est = estimateTrainingBytes(spec, { batchSize: B, seqLen: 16, optimizer: 'adamw' })
    const ids = tf.tensor2d(
      Array.from({ length: B * 16 }, (_, i) => i % 64),
      [B, 16],
      'int32',
    )
    const names = Object.keys(model.params)
    const vars = names.map((n) => tf.variable(model.params[n]))
    try {
      const profile = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => {
          const p = Object.fromEntries(names.map((n, i) => [n, vars[i]]))
          return loss({ spec, params: p }, { inputs: ids, targets: ids })
        })
        tf.dispose([value, ...Object.values(grads)])
      })
      const activations = est.bytes - 4 * params // weights, grads and two Adam moments
      expect(activations).toBeGreaterThan(0)
      // The estimate counts what the backward pass keeps; tfjs allocates at least that (plus
      // temporaries: about 9× on this model with the composite ops).
      expect(activations).toBeLessThan(profile.peakBytes)
      expect(activations).toBeGreaterThan(profile.peakBytes / 20)
    } finally {
      tf.dispose([ids, ...vars])
      disposeModel(model)
    }
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('memory limit', () => {
  it('parses sizes in binary and decimal units, and refuses nonsense naming the source', () => {
    expect(parseByteSize('8G', 'x')).toBe(8 * 2 ** 30)
    expect(parseByteSize('8GB', 'x')).toBe(8e9)
    expect(parseByteSize('512MiB', 'x')).toBe(512 * 2 ** 20)
    expect(parseByteSize('2e9', 'x')).toBe(2e9)
    expect(parseByteSize('1.5g', 'x')).toBe(1.5 * 2 ** 30)
    expect(parseByteSize('none', 'x')).toBe(Number.POSITIVE_INFINITY)
    for (const bad of ['', '-1G', 'lots', '0', '8X'])
      expect(() => parseByteSize(bad, 'SPROUT_MEMORY_LIMIT')).toThrow(
        /SPROUT_MEMORY_LIMIT: ".*" is not a memory size/,
      )
    expect(formatBytes(1536)).toBe('1.50 KiB')
    expect(formatBytes(4.5 * 2 ** 30)).toBe('4.50 GiB')
  })

  it('comes from --memory-limit, else SPROUT_MEMORY_LIMIT, else 90% of the available memory', () => {
    const byDefault = memoryLimit()
    expect(byDefault.bytes).toBeGreaterThan(0)
    expect(byDefault.source).toMatch(/^90% of the .* of memory available now$/)
    process.env.SPROUT_MEMORY_LIMIT = '3G'
    expect(memoryLimit()).toEqual({ bytes: 3 * 2 ** 30, source: 'SPROUT_MEMORY_LIMIT' })
    setRuntimeLimits({ memoryLimit: 1000 })
    expect(memoryLimit()).toEqual({ bytes: 1000, source: '--memory-limit' })
    expect(() => assertFitsMemory(1001, 'doing x', 'because y')).toThrow(
      expect.objectContaining({
        code: 'TOO_LARGE',
        message: expect.stringMatching(
          /^doing x needs about 1001 B \(because y\), above the memory limit of 1000 B \(--memory-limit\); .*--memory-limit SIZE/,
        ),
      }),
    )
    expect(() => assertFitsMemory(1000, 'doing x')).not.toThrow()
  })

  it('initModel refuses a spec above the limit before allocating, with the estimate', () => {
    setRuntimeLimits({ memoryLimit: 2 ** 20 })
    const spec = parseSpec({
      family: 'decoder',
      vocabSize: 1000,
      maxSeqLen: 8,
      dModel: 512,
      nLayers: 1,
      nHeads: 8,
      dFF: 64,
    })
    const before = tf.memory().numTensors
    expect(() => initModel(spec, 1)).toThrow(
      new RegExp(`needs about ${formatBytes(estimateModelBytes(spec).bytes).replace('.', '\\.')}`),
    )
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('loadCheckpoint under a memory limit', () => {
  it('refuses from the spec before reading any tensor, with the estimate, and loads under a limit that fits', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sprout-limit-'))
    try {
      const spec = parseSpec({
        family: 'decoder',
        vocabSize: 64,
        maxSeqLen: 8,
        dModel: 16,
        nLayers: 1,
        nHeads: 2,
        dFF: 32,
      })
      const model = initModel(spec, 1)
      await saveCheckpoint(join(dir, 'ck'), model)
      disposeModel(model)
      const bytes = estimateParamCount(spec) * 4
      const before = tf.memory().numTensors
      setRuntimeLimits({ memoryLimit: bytes - 1 })
      expect(() => loadCheckpoint(join(dir, 'ck'))).toThrow(
        expect.objectContaining({
          code: 'TOO_LARGE',
          message: expect.stringMatching(
            new RegExp(
              `^loading .*ck \\(decoder L1 d16 .*\\) needs about ${formatBytes(bytes).replace('.', '\\.')}`,
            ),
          ),
        }),
      )
      expect(tf.memory().numTensors).toBe(before)
      setRuntimeLimits({ memoryLimit: bytes })
      disposeModel(loadCheckpoint(join(dir, 'ck')).model)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('non-finite weights', () => {
  it('counts NaN and Inf and names the tensor; the opt-out is explicit', () => {
    const data = new Float32Array([
      1,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      -Number.POSITIVE_INFINITY,
      0,
      Number.NaN,
    ])
    expect(countNonFinite(data)).toEqual({ nan: 2, inf: 2 })
    expect(countNonFinite(new Float32Array([3.4e38, -0, 1e-45]))).toEqual({ nan: 0, inf: 0 })
    expect(() => assertFiniteTensor('w.safetensors', 'layers.0.attn.q.weight', data)).toThrow(
      expect.objectContaining({
        code: 'WEIGHTS_NON_FINITE',
        message: expect.stringMatching(
          /^w\.safetensors: tensor "layers\.0\.attn\.q\.weight" holds 2 NaN and 2 Inf of 6 values; .*--allow-non-finite/,
        ),
      }),
    )
    expect(allowNonFinite()).toBe(false)
    process.env.SPROUT_ALLOW_NON_FINITE = '1'
    expect(() => assertFiniteTensor('w', 'x', data)).not.toThrow()
    setRuntimeLimits({ allowNonFinite: false })
    expect(() => assertFiniteTensor('w', 'x', data)).toThrow(/2 NaN/)
  })
})
