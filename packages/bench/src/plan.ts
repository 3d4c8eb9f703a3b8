import { GrowthError, type GrowthOperator, SproutError } from '@sprout/core'
import { growthSteps, progressiveSteps } from './growth.js'
import type { BenchProgress } from './progress.js'
import type { Planned } from './records.js'
import type { ResolvedSuite } from './suites.js'

/** Scratch, every installed method on the suite's target, then the suite's variants. */
export function plan(suite: ResolvedSuite, operators: GrowthOperator<any>[], only?: string): Planned[] {
  const all: Planned[] = [
    { name: 'scratch', method: 'scratch', target: suite.target, options: {}, variant: false },
    ...operators
      .filter((op) => op.name !== 'identity')
      .map((op) => ({
        name: op.name,
        method: op.name,
        target: suite.target,
        options: suite.methods[op.name] ?? {},
        variant: false,
      })),
    // A variant on the suite's own target is just another configuration (e.g. stack's MSG mode)
    // and is measured like any method; one on another target claims no saving.
    ...suite.variants.map((v) => ({
      name: v.name,
      method: v.method,
      target: v.target,
      options: v.options,
      variant: JSON.stringify(v.target) !== JSON.stringify(suite.target),
    })),
    ...suite.progressive.map((line) => ({
      name: line.name,
      method: line.stages.map((s) => s.method).join('>'),
      target: suite.target,
      options: {},
      variant: false,
      progressive: line,
    })),
  ]
  const seen = new Set<string>()
  for (const p of all) {
    if (seen.has(p.name))
      throw new SproutError(
        'INPUT_INVALID',
        `suite ${suite.name}: two lines are named "${p.name}"; give each variant and progressive line its own name`,
      )
    seen.add(p.name)
  }
  if (!only) return all
  const wanted = only
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const w of wanted)
    if (!all.some((p) => p.name === w))
      throw new SproutError(
        'USAGE',
        `--methods: "${w}" is not available; choose from ${all.map((p) => p.name).join(', ')}`,
      )
  if (!wanted.includes('scratch')) wanted.unshift('scratch')
  return all.filter((p) => wanted.includes(p.name))
}

/**
 * Before anything is written: a method option in the suite that the operator rejects is the
 * user's mistake (an error naming the field); a growth the operator cannot do is a skip.
 */
export function preflight(
  suite: ResolvedSuite,
  planned: Planned[],
  operators: GrowthOperator<any>[],
): Map<string, string> {
  const skipped = new Map<string, string>()
  for (const p of planned) {
    if (p.method === 'scratch') continue
    try {
      if (p.progressive) progressiveSteps(p.progressive, operators)
      else growthSteps(p, suite.source, operators)
    } catch (e) {
      if (!(e instanceof GrowthError)) throw e
      if (e.code !== 'GROWTH_OPTIONS') {
        skipped.set(p.name, e.message)
        continue
      }
      const field = p.progressive
        ? `progressive (${p.name}).stages`
        : p.name === p.method
          ? `methods.${p.name}`
          : `variants (${p.name}).options`
      throw new SproutError('INPUT_INVALID', `suite ${suite.name}: ${field}: ${e.message}`)
    }
  }
  return skipped
}

/**
 * A unit of work: one seed of one planned line, grown once and trained at each of its budgets
 * (scratch: once per learning rate of the sweep). Workers run one unit each.
 */
export interface Unit {
  key: string
  seed: number
  planned: Planned
  /** Scratch's learning-rate multiplier; methods train at the suite's rate (or their recommended one). */
  lrMult?: number
  budgets: number[]
}

/** Everything a unit needs besides itself. */
export interface UnitContext {
  out: string
  suite: ResolvedSuite
  operators: GrowthOperator<any>[]
  progress: BenchProgress
  stop: () => boolean
}

/** The budgets, ascending and without repeats. */
export const budgetsOf = (suite: ResolvedSuite): number[] => [...new Set(suite.budgets)].sort((a, b) => a - b)

/** Seed-major, so a comparison stopped early has whole seeds rather than a few runs of each. */
export function units(suite: ResolvedSuite, planned: Planned[]): Unit[] {
  const budgets = budgetsOf(suite)
  const out: Unit[] = []
  for (let seed = 0; seed < suite.seeds; seed++)
    for (const p of planned) {
      if (p.method === 'scratch') {
        for (const lrMult of suite.scratchLrSweep)
          out.push({ key: `s${seed}/${p.name}@lr${lrMult}`, seed, planned: p, lrMult, budgets })
      } else {
        // A variant with its own target has no scratch of its size to compare budgets against.
        out.push({
          key: `s${seed}/${p.name}`,
          seed,
          planned: p,
          budgets: p.variant ? [budgets.at(-1)!] : budgets,
        })
      }
    }
  return out
}

/** Steps of a run at `budget` (a fraction of the suite's targetSteps). */
export const stepsAt = (suite: ResolvedSuite, budget: number): number =>
  Math.max(1, Math.round(budget * suite.targetSteps))

/** Evaluations stay about as frequent per run at every budget, so short runs keep a curve. */
export const evalEveryAt = (suite: ResolvedSuite, budget: number): number =>
  Math.max(1, Math.round(budget * suite.evalEvery))
