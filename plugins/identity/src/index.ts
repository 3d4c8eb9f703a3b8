import { capabilities, defineOperator, GrowthError, type Params, specSummary, z } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/**
 * The smallest possible growth operator: the target equals the source, so the result is a
 * copy. It exists to prove the contract end to end (registry, CLI, checkpoints, verify).
 */
const identity = defineOperator({
  name: 'identity',
  description: 'Copies the model unchanged (source and target specs must be equal)',
  options: z.strictObject({}),
  capabilities: capabilities('functionPreserving'),
  check(source, target) {
    if (JSON.stringify(source) !== JSON.stringify(target))
      throw new GrowthError(
        `identity: the target (${specSummary(target)}) must equal the source (${specSummary(source)}); use a growth method such as lemon to change the shape`,
      )
  },
  async grow(source, target, ctx) {
    const start = performance.now()
    const params: Params = {}
    for (const [name, t] of Object.entries(source.params)) params[name] = tf.clone(t)
    ctx.progress({ stage: 'copy', step: 1, total: 1 })
    return {
      model: { spec: structuredClone(target), params },
      report: {
        method: 'identity',
        growthFlops: 0,
        steps: 0,
        seconds: (performance.now() - start) / 1000,
        functionPreserving: true,
        maxAbsLogitDiff: null,
        details: {},
      },
    }
  },
})

export default identity
export { identity }
