import { parseSpec } from '@sprout/core'
import lemon from '@sprout/lemon'
import stack from '@sprout/stack'
import { describe, expect, it } from 'vitest'
import { growthSteps } from './growth.js'

const spec = (L: number, D: number, H: number) =>
  parseSpec({ family: 'decoder', vocabSize: 32, maxSeqLen: 8, dModel: D, nLayers: L, nHeads: H, dFF: 4 * D })
const line = (method: string, options: Record<string, unknown> = {}) => ({
  name: method,
  method,
  target: spec(4, 32, 4),
  options,
  variant: false,
})

describe('growthSteps', () => {
  it('a single method grows straight to the target', () => {
    const steps = growthSteps(line('lemon'), spec(2, 16, 2), [lemon, stack])
    expect(steps.map((s) => [s.op.name, s.target.nLayers, s.target.dModel])).toEqual([['lemon', 4, 32]])
  })
  it('a+b grows width with a (keeping the depth), then depth with b, each with its own options', () => {
    const steps = growthSteps(line('lemon+stack', { stack: { mode: 'stack' } }), spec(2, 16, 2), [
      lemon,
      stack,
    ])
    expect(steps.map((s) => [s.op.name, s.target.nLayers, s.target.dModel, s.target.nHeads])).toEqual([
      ['lemon', 2, 32, 4],
      ['stack', 4, 32, 4],
    ])
    expect(steps[1].options.mode).toBe('stack')
  })
  it('refusals: a missing method or growth it cannot do is a skip; bad options are the user’s', () => {
    expect(() => growthSteps(line('lemon+warp'), spec(2, 16, 2), [lemon])).toThrow(
      /method warp is not installed/,
    )
    // stack cannot grow width: composing it first is refused by its own check.
    expect(() => growthSteps(line('stack+lemon'), spec(2, 16, 2), [lemon, stack])).toThrow(
      expect.objectContaining({ code: 'GROWTH_UNSUPPORTED' }),
    )
    expect(() =>
      growthSteps(line('lemon+stack', { lemon: { noiseStd: -1 } }), spec(2, 16, 2), [lemon, stack]),
    ).toThrow(expect.objectContaining({ code: 'GROWTH_OPTIONS' }))
    expect(() => growthSteps(line('lemon+stack+lemon'), spec(2, 16, 2), [lemon, stack])).toThrow(
      /at most two/,
    )
  })
})
