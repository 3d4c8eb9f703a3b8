/** The trainer tests' models (raw spec fields): a one-layer byte-level decoder and a one-layer ViT for MNIST. */
export const tinyDecoder = {
  family: 'decoder',
  vocabSize: 256,
  maxSeqLen: 8,
  dModel: 16,
  nLayers: 1,
  nHeads: 2,
  dFF: 32,
}

export const tinyMnistVit = {
  family: 'vit',
  vocabSize: 0,
  maxSeqLen: 17,
  dModel: 16,
  nLayers: 1,
  nHeads: 2,
  dFF: 32,
  image: { size: 28, patch: 7, channels: 1, classes: 10 },
}
