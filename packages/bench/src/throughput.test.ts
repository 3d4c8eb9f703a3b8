import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { runThroughput } from './throughput.js'

describe('throughput', () => {
  it('trains a GPT-2-style decoder on random tokens and reports one JSON line', async () => {
    const before = tf.memory().numTensors
    const out: string[] = []
    const r = await runThroughput(
      {
        layers: 1,
        dModel: 16,
        heads: 2,
        seqLen: 8,
        batch: 2,
        vocab: 32,
        steps: 2,
        backend: 'cpu',
        json: true,
      },
      { out: (l) => out.push(l), err: () => {} },
    )
    expect(Object.keys(JSON.parse(out[0])).sort()).toEqual([
      'backend',
      'params',
      'stepSeconds',
      'tokensPerSecond',
    ])
    expect(r.backend).toBe('cpu')
    expect(r.tokensPerSecond).toBeCloseTo(16 / r.stepSeconds, 6)
    expect(tf.memory().numTensors).toBe(before)
    await expect(
      runThroughput(
        { layers: 0, dModel: 16, heads: 2, seqLen: 8, batch: 2, vocab: 32, steps: 1 },
        { out: () => {}, err: () => {} },
      ),
    ).rejects.toThrow(/--layers must be a positive integer/)
  })
})
