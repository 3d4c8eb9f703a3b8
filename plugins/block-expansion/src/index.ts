import {
  capabilities,
  defineOperator,
  freshRunSchedule,
  type GrowthResult,
  validateParams,
  z,
} from '@sprout/core'
import { checkBlockExpansion, expandBlocks } from './expand.js'

export {
  checkBlockExpansion,
  type ExpandedLayer,
  type Expansion,
  expandBlocks,
  expansionPlan,
  resolveEvery,
  ZEROED_MODULES,
} from './expand.js'

/** Options users pass with `--option key=value`; unknown keys are refused (strictObject). */
export const blockExpansionOptions = z.strictObject({
  /**
   * Insert one block after every `every` source layers (LLaMA Pro: 32 layers, every=4 → 40).
   * Optional: by default it is the one the target's nLayers implies, L₁ / (L₂ − L₁).
   */
  every: z.number().int().positive().optional(),
})
export type BlockExpansionOptions = z.infer<typeof blockExpansionOptions>

const blockExpansion = defineOperator({
  name: 'block-expansion',
  meta: {
    displayName: 'Block expansion (LLaMA Pro)',
    papers: [
      {
        title: 'LLaMA Pro: Progressive LLaMA with Block Expansion',
        authors: 'Wu et al.',
        venue: 'ACL',
        year: 2024,
        url: 'https://arxiv.org/abs/2401.02415',
      },
    ],
  },
  description:
    'LLaMA Pro block expansion: after every `every` source layers insert a copy of the layer before with its attention output and MLP down projections zeroed (an exact identity in pre-norm models); records the new blocks so `"freeze": ["source"]` trains only them',
  options: blockExpansionOptions,
  capabilities: capabilities('depth', 'functionPreserving'),
  check(source, target, options) {
    checkBlockExpansion(source, target, options.every)
  },
  async grow(source, target, ctx, options): Promise<GrowthResult> {
    const start = performance.now()
    const every = checkBlockExpansion(source.spec, target, options.every)
    validateParams(source.spec, source.params)
    const { params, newParams, plan } = expandBlocks(source.spec, source.params, target, every)
    ctx.progress({ stage: 'block-expansion: copy layers', step: 1, total: 1 })
    const inserted = plan.flatMap((l, i) => (l.inserted ? [i] : []))
    return {
      model: { spec: structuredClone(target), params },
      newParams,
      report: {
        method: 'block-expansion',
        growthFlops: 0,
        steps: 0,
        seconds: (performance.now() - start) / 1000,
        functionPreserving: true,
        maxAbsLogitDiff: null,
        details: {
          every,
          insertedLayers: inserted,
          layerSources: plan.map((l) => l.source),
          newParams: newParams.length,
        },
      },
      schedule: freshRunSchedule(
        `block-expansion: ${inserted.length} new blocks start as identities; LLaMA Pro trains only them (run config "freeze": ["source"]) with a fresh optimizer`,
      ),
    }
  },
})

export default blockExpansion
export { blockExpansion }
