import { defaultFixture, describeGrowthOperator, type Fixture } from '@sprout/testkit'
import mango from './index.js'

// Mango splits attention and the MLP into dModel×dModel blocks, so a wider target also needs
// nHeads·headDim and dFF that are multiples of the new dModel.
const widthWithBlocks = (f: Fixture): Fixture => {
  if (f.kind !== 'width') return f
  const base = defaultFixture(f.family, 'width')
  return { ...base, target: { ...base.target, nHeads: 4, dFF: 64 } }
}

// Fitting is checked on the FFN fixture, whose steps are the cheapest (width steps take ~0.6 s each here).
describeGrowthOperator(mango, {
  fixtures: (defaults) => defaults.map(widthWithBlocks),
  fitFixture: 'decoder/ffn',
  fitSteps: 20,
  fitOptions: { learningRate: 1e-2 },
  exclude: {
    'encoder/width':
      'width growth is checked on decoder/width; each mango width grow costs seconds on the cpu backend and the encoder/vit layouts of the blocks are the same',
    'vit/width':
      'width growth is checked on decoder/width; each mango width grow costs seconds on the cpu backend and the encoder/vit layouts of the blocks are the same',
  },
})
