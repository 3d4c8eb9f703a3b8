// Type tests, checked by `tsc -p packages/core/tsconfig.json` (and `vitest --typecheck`):
// defineOperator and defineLearnedOperator infer the options type from the zod schema.
import { expectTypeOf } from 'vitest'
import { capabilities, defineOperator, type GrowthOperator, z } from './growth.js'
import { defineLearnedOperator, type LearnedParametrisation, learnedOptionsShape } from './learned.js'

const schema = z.strictObject({ copies: z.number().int().default(2), mode: z.enum(['a', 'b']).default('a') })
const caps = capabilities('width', 'functionPreserving')
const report = {
  method: 'typed',
  growthFlops: 0,
  steps: 0,
  seconds: 0,
  functionPreserving: true,
  maxAbsLogitDiff: 0,
  details: {},
}

const op = defineOperator({
  name: 'typed',
  description: 'options inferred from the schema',
  options: schema,
  capabilities: caps,
  check(_source, _target, options) {
    expectTypeOf(options).toEqualTypeOf<{ copies: number; mode: 'a' | 'b' }>()
  },
  async grow(source, _target, _ctx, options) {
    expectTypeOf(options.copies).toBeNumber()
    return { model: source, report }
  },
})
expectTypeOf(op).toEqualTypeOf<GrowthOperator<{ copies: number; mode: 'a' | 'b' }>>()

// An option the schema does not produce is a type error in check/grow.
defineOperator({
  name: 'typed',
  description: 'x',
  options: schema,
  capabilities: caps,
  check(_s, _t, options) {
    // @ts-expect-error: `missing` is not an option of this schema
    options.missing
  },
  grow: async (source) => ({ model: source, report }),
})

declare const parametrisation: LearnedParametrisation
const learned = defineLearnedOperator({
  name: 'learned',
  description: 'a learned method',
  options: z.strictObject({ ...learnedOptionsShape, rank: z.number().default(1) }),
  capabilities: { width: true, depth: true, heads: true, ffn: true, moe: false },
  create(_s, _t, _p, options) {
    expectTypeOf(options).toEqualTypeOf<{
      steps: number
      learningRate: number
      weightDecay: number
      rank: number
    }>()
    return parametrisation
  },
})
expectTypeOf(learned.options.parse({})).toEqualTypeOf<{
  steps: number
  learningRate: number
  weightDecay: number
  rank: number
}>()
