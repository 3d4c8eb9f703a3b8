import type { GrowthOperator } from '@sprout/core'
import lemon from '@sprout/lemon'
import stack from '@sprout/stack'

/** The tests' operator resolver (the CLI passes its own, which also loads plugins by path). */
export async function testResolver(ref: string): Promise<GrowthOperator<any>> {
  const op = ({ stack, lemon } as Record<string, GrowthOperator<any>>)[ref]
  if (!op) throw new Error(`unknown method "${ref}"`)
  return op
}

/** A one-layer byte-level decoder: the progressive runs' first stage. */
export const tinyDecoder = {
  family: 'decoder',
  vocabSize: 256,
  maxSeqLen: 8,
  dModel: 16,
  nLayers: 1,
  nHeads: 2,
  dFF: 32,
}

/** 1 layer → 2 (stack) → 4 layers, twice as wide (lemon, lossless with noiseStd 0). */
export const twoLayers = { ...tinyDecoder, nLayers: 2 }
export const fourWide = { ...tinyDecoder, nLayers: 4, dModel: 32, nHeads: 4, dFF: 64 }

export function twoStageConfig(steps: number, at: [number, number], extra: Record<string, unknown> = {}) {
  return {
    spec: tinyDecoder,
    data: 'moby-dick',
    batchSize: 2,
    steps,
    evalEvery: 5,
    evalBatches: 1,
    optimizer: { kind: 'adamw', lr: 0.003 },
    schedule: { kind: 'cosine', warmupSteps: 3 },
    stages: [
      { atStep: at[0], method: 'stack', target: twoLayers },
      { atStep: at[1], method: 'lemon', target: fourWide, options: { noiseStd: 0 } },
    ],
    ...extra,
  }
}
