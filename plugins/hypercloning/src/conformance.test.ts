import { parseSpec } from '@sprout/core'
import { describeGrowthOperator, type Fixture } from '@sprout/testkit'
import hypercloning from './index.js'

const text = { vocabSize: 32, maxSeqLen: 8, nLayers: 2, dModel: 16, nHeads: 2, headDim: 8, dFF: 32 }
/** The paper's recipe (dModel, heads and FFN all × n) on the architectures HyperCloning must keep exact. */
const paper = (
  id: string,
  base: Record<string, unknown>,
  n = 2,
  grown: Record<string, unknown> = {},
): Fixture => {
  const source = parseSpec(base)
  const family = source.family
  return {
    id: `${family}/width-${id}`,
    family,
    kind: 'width',
    source,
    target: parseSpec({
      ...base,
      dModel: source.dModel * n,
      nHeads: source.nHeads * n,
      dFF: source.dFF * n,
      ...grown,
    }),
  }
}

const fixtures = (defaults: Fixture[]): Fixture[] => [
  ...defaults,
  paper('x2', { family: 'decoder', ...text }),
  paper('x3-post-norm-relu', { family: 'decoder', ...text, normPlacement: 'post', activation: 'relu' }, 3),
  paper(
    'llama-gqa',
    {
      family: 'decoder',
      ...text,
      nHeads: 4,
      headDim: 4,
      nKVHeads: 2,
      norm: 'rmsnorm',
      activation: 'swiglu',
      bias: false,
      positional: 'rotary',
      tieEmbeddings: false,
    },
    2,
    { nKVHeads: 4 },
  ),
  paper('moe', { family: 'decoder', ...text, moe: { experts: 4, topK: 2, layers: [1] } }),
  paper(
    'fine-grained-moe',
    { family: 'decoder', ...text, moe: { experts: 4, topK: 2, layers: [0], expertDFF: 16 } },
    2,
    { moe: { experts: 4, topK: 2, layers: [0], expertDFF: 32 } },
  ),
  paper('mlm-head-post-norm', { family: 'encoder', ...text, normPlacement: 'post', mlmHead: true }),
  paper('x2', {
    family: 'vit',
    nLayers: 2,
    dModel: 16,
    nHeads: 2,
    dFF: 32,
    image: { size: 8, patch: 4, channels: 1, classes: 4 },
  }),
]

// Every check on the default width / heads / FFN fixtures (each grows one role by 2) and on the
// paper's recipe, first with exact copies, then with the symmetric noise at 10 dB SNR.
describeGrowthOperator(hypercloning, { fixtures })
describeGrowthOperator(hypercloning, { fixtures, options: { noise: 10 } })
