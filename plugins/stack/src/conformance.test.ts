import { describeGrowthOperator } from '@sprout/testkit'
import { describe } from 'vitest'
import stack from './index.js'

// Plain stacking claims no preservation; the suite still checks shapes, refusals of width/heads/
// FFN/MoE growth, determinism, checkpoints and leaks on the depth fixtures.
describe('plain stacking', () => describeGrowthOperator(stack))
// Masked stacking reports functionPreserving: the suite verifies that claim at mask 0.
describe('masked stacking', () => describeGrowthOperator(stack, { options: { mode: 'masked' } }))
