const tiny = { family: 'decoder', vocabSize: 256, maxSeqLen: 8, nHeads: 2 }

/** The smallest `bench compare` suite the CLI tests run: a 1-layer d8 decoder grown to d16, 2 steps each. */
export const tinySuite = {
  name: 'tiny',
  data: 'moby-dick',
  batchSize: 2,
  seqLen: 8,
  source: { ...tiny, dModel: 8, nLayers: 1, dFF: 16 },
  target: { ...tiny, dModel: 16, nLayers: 1, dFF: 32 },
  sourceSteps: 2,
  targetSteps: 2,
  evalEvery: 1,
  evalBatches: 1,
}
