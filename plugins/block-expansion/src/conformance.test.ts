import { parseSpec } from '@sprout/core'
import { defaultFixture, describeGrowthOperator, type Fixture } from '@sprout/testkit'
import blockExpansion from './index.js'

/** A decoder depth fixture with spec fields added to source and target (same every: 2 → 4 layers). */
function variant(
  id: string,
  extra: Record<string, unknown>,
  sourceMoE?: number[],
  targetMoE?: number[],
): Fixture {
  const base = defaultFixture('decoder', 'depth')
  const moe = (layers?: number[]) => (layers ? { moe: { experts: 4, topK: 2, layers } } : {})
  return {
    ...base,
    id: `decoder/depth-${id}`,
    source: parseSpec({ ...base.source, ...extra, ...moe(sourceMoE) }),
    target: parseSpec({ ...base.target, ...extra, ...moe(targetMoE) }),
  }
}

// Default depth fixtures (decoder, encoder, ViT with LayerNorm, GELU, biases: 2 → 4 layers, so
// every = 1), plus RMSNorm, LLaMA-style SwiGLU + rotary + grouped-query attention, and MoE. The
// suite measures the function-preservation claim on every one.
describeGrowthOperator(blockExpansion, {
  fixtures: (defaults) => [
    ...defaults,
    variant('rmsnorm', { norm: 'rmsnorm' }),
    variant('llama', {
      norm: 'rmsnorm',
      activation: 'swiglu',
      bias: false,
      positional: 'rotary',
      nHeads: 4,
      headDim: 4,
      nKVHeads: 2,
    }),
    variant('moe', {}, [1], [2, 3]),
    { ...defaultFixture('encoder', 'depth'), id: 'encoder/depth-rmsnorm-swiglu', ...rmsSwiglu('encoder') },
    { ...defaultFixture('vit', 'depth'), id: 'vit/depth-rmsnorm', ...rmsSwiglu('vit') },
  ],
})

function rmsSwiglu(family: 'encoder' | 'vit'): Pick<Fixture, 'source' | 'target'> {
  const f = defaultFixture(family, 'depth')
  const extra = family === 'vit' ? { norm: 'rmsnorm' } : { norm: 'rmsnorm', activation: 'swiglu' }
  return { source: parseSpec({ ...f.source, ...extra }), target: parseSpec({ ...f.target, ...extra }) }
}
