import { GrowthError, type GrowthOperator, parseOptions, type TransformerSpec } from '@sprout/core'
import type { Planned } from './records.js'
import type { ProgressiveLine } from './suites.js'

/** One growth of a planned line: the operator, the spec it grows to and its parsed options. */
export interface GrowthStep {
  op: GrowthOperator<any>
  target: TransformerSpec
  options: Record<string, unknown>
}

/**
 * A planned method as growth steps. `a+b` composes two operators the way practitioners chain
 * recipes: `a` grows everything but depth (width, heads, FFN) to the target's, then `b` grows
 * depth, e.g. `hypercloning+block-expansion`. A composed line's options are keyed by method
 * name (`{"hypercloning": {...}, "block-expansion": {...}}`).
 *
 * Throws a GrowthError when the methods cannot do the growth (the line is skipped), or an Error
 * naming the option when the suite's options are wrong (the user's mistake).
 */
export function growthSteps(
  p: Planned,
  source: TransformerSpec,
  operators: GrowthOperator<any>[],
): GrowthStep[] {
  const names = p.method.split('+').map((s) => s.trim())
  const ops = names.map((name) => {
    const op = operators.find((o) => o.name === name)
    if (!op) throw new GrowthError(`method ${name} is not installed`)
    return op
  })
  if (ops.length > 2)
    throw new GrowthError(`${p.method}: compose at most two methods (width first, then depth)`)
  const targets = ops.length === 1 ? [p.target] : [{ ...p.target, nLayers: source.nLayers }, p.target]
  const steps = ops.map((op, i) => ({
    op,
    target: targets[i],
    options: parseOptions(
      op,
      ((ops.length === 1 ? p.options : p.options[op.name]) ?? {}) as Record<string, unknown>,
    ),
  }))
  let from = source
  for (const s of steps) {
    s.op.check(from, s.target, s.options)
    from = s.target
  }
  return steps
}

/**
 * A progressive line's growths, checked along its chain of specs (start → each stage's target)
 * with the same errors as `growthSteps`: a growth a method cannot do is a GrowthError (skipped).
 */
export function progressiveSteps(line: ProgressiveLine, operators: GrowthOperator<any>[]): GrowthStep[] {
  let from = line.start
  return line.stages.map((st) => {
    const op = operators.find((o) => o.name === st.method)
    if (!op) throw new GrowthError(`method ${st.method} is not installed`)
    const step = { op, target: st.target, options: parseOptions(op, st.options) }
    op.check(from, st.target, step.options)
    from = st.target
    return step
  })
}
