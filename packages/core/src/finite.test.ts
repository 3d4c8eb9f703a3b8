import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js'
import { explainNonFinite } from './finite.js'
import { cloneModel, disposeModel, initModel } from './params.js'
import { parseSpec } from './spec.js'
import { maxAbsLogitDiff } from './verify.js'

const root = mkdtempSync(join(tmpdir(), 'sprout-finite-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const spec = parseSpec({
  family: 'decoder',
  vocabSize: 16,
  maxSeqLen: 8,
  dModel: 8,
  nLayers: 2,
  nHeads: 2,
  dFF: 16,
})

/** Overwrites `count` float32 values of a tensor in a safetensors file, at the offsets its header gives. */
function poison(file: string, name: string, values: number[]): void {
  const buf = readFileSync(file)
  const n = Number(buf.readBigUInt64LE(0))
  const [begin] = JSON.parse(buf.subarray(8, 8 + n).toString())[name].data_offsets
  values.forEach((v, i) => {
    buf.writeFloatLE(v, 8 + n + begin + 4 * i)
  })
  writeFileSync(file, buf)
}

describe('non-finite weights', () => {
  it('are refused at load naming the tensor and the counts, and load with the explicit opt-out', async () => {
    const before = tf.memory().numTensors
    const dir = join(root, 'nan')
    const model = initModel(spec, 1)
    await saveCheckpoint(dir, model)
    disposeModel(model)
    poison(join(dir, 'model.safetensors'), 'layers.1.mlp.fc1.weight', [
      Number.NaN,
      1,
      Number.POSITIVE_INFINITY,
      Number.NaN,
    ])
    expect(() => loadCheckpoint(dir)).toThrow(
      expect.objectContaining({
        code: 'WEIGHTS_NON_FINITE',
        message: expect.stringMatching(
          /model\.safetensors: tensor "layers\.1\.mlp\.fc1\.weight" holds 2 NaN and 1 Inf of 128 values; .*--allow-non-finite/,
        ),
      }),
    )
    expect(tf.memory().numTensors).toBe(before)
    const loaded = loadCheckpoint(dir, { allowNonFinite: true })
    expect(explainNonFinite(loaded.model)).toBe(
      'the weights are not finite: tensor "layers.1.mlp.fc1.weight" holds 2 NaN and 1 Inf of 128 values',
    )
    // Growth verification names the cause instead of reporting a mismatch.
    const copy = cloneModel(loaded.model)
    expect(() => maxAbsLogitDiff(loaded.model, copy)).toThrow(
      expect.objectContaining({
        code: 'WEIGHTS_NON_FINITE',
        message: expect.stringMatching(
          /source model's logits are not finite because the weights are not finite: tensor "layers\.1\.mlp\.fc1\.weight"/,
        ),
      }),
    )
    disposeModel(copy)
    disposeModel(loaded.model)
    expect(tf.memory().numTensors).toBe(before)
  })

  it('an overflow with finite weights is explained by the largest weight', () => {
    const model = initModel(spec, 2)
    const big = tf.fill([spec.dModel, spec.dFF], 3e38)
    const head = model.params['layers.0.mlp.fc1.weight']
    model.params['layers.0.mlp.fc1.weight'] = big
    head.dispose()
    expect(explainNonFinite(model)).toMatch(
      /every weight is finite but the forward pass overflows .*3\.000e\+38 in "layers\.0\.mlp\.fc1\.weight"/,
    )
    disposeModel(model)
  })
})
