import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  applyMask,
  assertGrowthOperator,
  disposeModel,
  type GrowthOperator,
  type GrowthResult,
  initModel,
  loadCheckpoint,
  type Model,
  maxAbsLogitDiff,
  parseOptions,
  saveCheckpoint,
  specSummary,
  type TransformerSpec,
  validateParams,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { type TestContext, testContext } from './context.js'
import { defaultFixture, type Fixture, growthKinds, unclaimedKinds } from './fixtures.js'

type AnyOperator = GrowthOperator<any>

/** A conformance failure: the message says what the operator did and what was expected. */
export class ConformanceError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConformanceError'
  }
}

function fail(message: string): never {
  throw new ConformanceError(message)
}

/** GrowthError by class or, across duplicated copies of @sprout/core, by name. */
export function isGrowthError(e: unknown): boolean {
  return e instanceof Error && e.name === 'GrowthError'
}

/** Name, description, option schema and capabilities are well-formed. */
export function checkMetadata(op: AnyOperator): void {
  try {
    assertGrowthOperator(op, 'the operator')
  } catch (e) {
    fail((e as Error).message)
  }
  if (op.description.trim().length < 10)
    fail(`"description" of ${op.name} is too short to tell users what the method does`)
}

/** Values tried, in order, until the schema rejects one for an option: out of range first, then wrong types. */
const badCandidates: unknown[] = [-1, 'not-a-valid-value', 0.5, { notAValidValue: true }, Number.NaN]

/** The option names the schema exposes (zod object schemas), for probing. */
export function optionNames(op: AnyOperator): string[] {
  const shape = (op.options as unknown as { shape?: Record<string, unknown> }).shape
  return shape && typeof shape === 'object' ? Object.keys(shape) : []
}

/**
 * Bad options are refused with a GrowthError naming the option: one wrong value per
 * option the schema declares, plus an unknown option (a typo must not be ignored silently).
 * Returns what was probed, for the run's log.
 */
export function checkOptionValidation(op: AnyOperator, base: Record<string, unknown>): string[] {
  try {
    parseOptions(op, base)
  } catch (e) {
    fail(`the options ${JSON.stringify(base)} the suite grows with are rejected: ${(e as Error).message}`)
  }
  const probed: string[] = []
  const expectRefusal = (raw: Record<string, unknown>, name: string, what: string) => {
    let error: unknown = null
    try {
      parseOptions(op, raw)
    } catch (e) {
      error = e
    }
    if (error === null) fail(`${what} was accepted; the options schema must reject it`)
    if (!isGrowthError(error)) fail(`${what} threw ${(error as Error).name}, expected a GrowthError`)
    if (!(error as Error).message.includes(name))
      fail(
        `${what} was rejected with "${(error as Error).message}", which does not name the option "${name}"`,
      )
    probed.push(what)
  }
  for (const name of optionNames(op)) {
    const bad = badCandidates.find((v) => !op.options.safeParse({ ...base, [name]: v }).success)
    if (bad === undefined) continue
    expectRefusal({ ...base, [name]: bad }, name, `option ${name}=${JSON.stringify(bad)}`)
  }
  expectRefusal({ ...base, notAnOption: 1 }, 'notAnOption', 'the unknown option notAnOption=1')
  return probed
}

function expectCheckRefuses(
  op: AnyOperator,
  source: Fixture['source'],
  target: Fixture['target'],
  options: unknown,
  why: string,
) {
  let error: unknown = null
  try {
    op.check(source, target, options as Record<string, unknown>)
  } catch (e) {
    error = e
  }
  const pair = `${specSummary(source)} -> ${specSummary(target)}`
  if (error === null) fail(`check() accepted ${pair}, which it ${why}; it must throw a GrowthError`)
  if (!isGrowthError(error))
    fail(
      `check() refused ${pair} with ${(error as Error).name}: ${(error as Error).message}; expected a GrowthError`,
    )
}

/**
 * check() refuses what the operator cannot do with a GrowthError: shrinking (each claimed
 * fixture reversed) and every kind of growth the capabilities do not claim.
 */
export function checkRefusals(op: AnyOperator, options: unknown, claimed: Fixture[]): void {
  const shrinkPairs = claimed.length > 0 ? claimed : [defaultFixture('decoder', 'width')]
  for (const f of shrinkPairs)
    expectCheckRefuses(op, f.target, f.source, options, `shrinks (${f.id} reversed)`)
  for (const kind of unclaimedKinds(op.capabilities)) {
    const f = defaultFixture('decoder', kind)
    expectCheckRefuses(op, f.source, f.target, options, `does not claim (capabilities.${kind} is false)`)
  }
}

export interface Grown {
  source: Model
  result: GrowthResult
  test: TestContext
}

/** Grows a fresh seeded source for the fixture; the caller disposes with `disposeGrown`. */
export async function growFixture(
  op: AnyOperator,
  fixture: Fixture,
  options: unknown,
  seed: number,
  maxFitSteps?: number,
): Promise<Grown> {
  const source = initModel(fixture.source, seed)
  const test = testContext(fixture.target, seed, maxFitSteps)
  try {
    op.check(fixture.source, fixture.target, options as Record<string, unknown>)
    const result = await op.grow(source, fixture.target, test.ctx, options as Record<string, unknown>)
    return { source, result, test }
  } catch (e) {
    disposeModel(source)
    const refused = isGrowthError(e)
      ? `; the operator refuses this fixture although capabilities.${fixture.kind} is true — pass your own \`fixtures\` or exclude "${fixture.id}" with a reason`
      : ''
    throw new ConformanceError(`growing ${fixture.id} failed: ${(e as Error).message}${refused}`)
  }
}

export function disposeGrown(g: Grown): void {
  disposeModel(g.source)
  disposeModel(g.result.model)
  if (g.result.optimizerState) tf.dispose(Object.values(g.result.optimizerState))
}

/**
 * Fields a method may legitimately change while growing: LEMON rescales the norm epsilon with
 * the width so layer norm stays exact. They change no parameter shape.
 */
const RESCALABLE_FIELDS = new Set<string>(['normEps'])

/** JSON with object keys sorted, so equal specs compare equal whatever order their keys were set in. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )
}

/** Top-level spec fields whose values differ. */
export function specDifferences(a: TransformerSpec, b: TransformerSpec): (keyof TransformerSpec)[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof TransformerSpec>
  return [...keys].filter((k) => canonicalJson(a[k]) !== canonicalJson(b[k]))
}

/** The grown model has exactly the target spec's parameters and the report is well-formed. */
export function checkShapes(op: AnyOperator, fixture: Fixture, g: Grown): void {
  const { model, report } = g.result
  const differing = specDifferences(model.spec, fixture.target).filter((k) => !RESCALABLE_FIELDS.has(k))
  if (differing.length > 0)
    fail(
      `${fixture.id}: the grown spec differs from the target in ${differing
        .map((k) => `${k} (${JSON.stringify(model.spec[k])} vs ${JSON.stringify(fixture.target[k])})`)
        .join(', ')}`,
    )
  try {
    validateParams(fixture.target, model.params)
  } catch (e) {
    fail(`${fixture.id}: ${(e as Error).message}`)
  }
  for (const [name, t] of Object.entries(model.params))
    if (t.dtype !== 'float32') fail(`${fixture.id}: parameter "${name}" is ${t.dtype}, expected float32`)
  if (report.method !== op.name)
    fail(`${fixture.id}: report.method is "${report.method}", expected "${op.name}"`)
  for (const key of ['growthFlops', 'steps', 'seconds'] as const)
    if (!Number.isFinite(report[key]) || report[key] < 0)
      fail(`${fixture.id}: report.${key} must be a finite non-negative number, got ${report[key]}`)
}

export const DEFAULT_TOLERANCE = 1e-4

/**
 * Measures max |Δ logits| between source and grown model (at mask 0 when the method fades
 * new structure in) and fails when a function-preservation claim does not hold.
 */
export function checkFunctionPreserving(fixture: Fixture, g: Grown, tolerance = DEFAULT_TOLERANCE): number {
  const grown = applyMask(g.result.model, g.result.mask, 0)
  try {
    const diff = maxAbsLogitDiff(g.source, grown)
    if (!(diff < tolerance))
      fail(
        `${fixture.id}: the operator claims to preserve the function, but max |Δ logits| = ${diff.toExponential(3)} (tolerance ${tolerance})`,
      )
    return diff
  } finally {
    if (grown !== g.result.model) for (const name of g.result.mask?.params ?? []) grown.params[name].dispose()
  }
}

/** Max |a − b| per parameter of two models with the same parameter names. */
function firstDifference(a: Model, b: Model): { name: string; diff: number } | null {
  for (const [name, t] of Object.entries(a.params)) {
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(t, b.params[name]))).dataSync()[0])
    if (diff !== 0) return { name, diff }
  }
  return null
}

/**
 * Growing again with the same seed gives bit-identical parameters. Compares with `reference`
 * (an earlier grow of the same fixture, options and seed) when given, else grows twice.
 */
export async function checkDeterminism(
  op: AnyOperator,
  fixture: Fixture,
  options: unknown,
  seed: number,
  maxFitSteps?: number,
  reference?: Grown,
): Promise<void> {
  const a = reference ?? (await growFixture(op, fixture, options, seed, maxFitSteps))
  try {
    const b = await growFixture(op, fixture, options, seed, maxFitSteps)
    try {
      const d = firstDifference(a.result.model, b.result.model)
      if (d) fail(`${fixture.id}: two grows with seed ${seed} differ in "${d.name}" by up to ${d.diff}`)
    } finally {
      disposeGrown(b)
    }
  } finally {
    if (!reference) disposeGrown(a)
  }
}

/**
 * Disposing a grow's source and result brings tf.memory().numTensors back to `before`, the
 * count taken just before the grow (the checks run in between are tidy themselves).
 */
export function checkDisposesToBaseline(fixture: Fixture, g: Grown, before: number): void {
  disposeGrown(g)
  const leaked = tf.memory().numTensors - before
  if (leaked !== 0)
    fail(
      `${fixture.id}: grow() leaked ${leaked} tensor(s); wrap intermediate work in tf.tidy and dispose what you create`,
    )
}

/** Growing and disposing the result leaves tf.memory().numTensors unchanged. */
export async function checkNoLeaks(
  op: AnyOperator,
  fixture: Fixture,
  options: unknown,
  seed: number,
  maxFitSteps?: number,
): Promise<void> {
  const before = tf.memory().numTensors
  disposeGrown(await growFixture(op, fixture, options, seed, maxFitSteps))
  const leaked = tf.memory().numTensors - before
  if (leaked !== 0)
    fail(
      `${fixture.id}: grow() leaked ${leaked} tensor(s); wrap intermediate work in tf.tidy and dispose what you create`,
    )
}

/** The grown model survives saveCheckpoint/loadCheckpoint bit for bit. */
export async function checkCheckpointRoundTrip(fixture: Fixture, g: Grown): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sprout-testkit-'))
  try {
    const out = join(dir, 'grown')
    await saveCheckpoint(out, g.result.model, { meta: { report: g.result.report } })
    const loaded = loadCheckpoint(out)
    try {
      const changed = specDifferences(loaded.model.spec, g.result.model.spec)
      if (changed.length > 0)
        fail(`${fixture.id}: the checkpoint's spec differs from the grown model's in ${changed.join(', ')}`)
      for (const [name, t] of Object.entries(g.result.model.params)) {
        const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(t, loaded.model.params[name]))).dataSync()[0])
        if (diff !== 0) fail(`${fixture.id}: "${name}" changed by ${diff} through a checkpoint round trip`)
      }
    } finally {
      disposeModel(loaded.model)
      if (loaded.state) tf.dispose(Object.values(loaded.state))
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A learned operator asks ctx.fit to train it, and fitting lowers the held-out loss. */
export async function checkFitReducesLoss(
  op: AnyOperator,
  fixture: Fixture,
  options: unknown,
  seed: number,
  steps: number,
): Promise<string> {
  const g = await growFixture(op, fixture, options, seed, steps)
  try {
    if (g.test.fits.length === 0)
      fail(
        `${fixture.id}: the operator claims capabilities.learned but never called ctx.fit (pass options that fit, e.g. steps > 0)`,
      )
    const summary: string[] = []
    for (const r of g.test.fits) {
      if (r.steps === 0) fail(`${fixture.id}: ${r.label} asked ctx.fit for 0 steps`)
      if (!(r.heldOutAfter < r.heldOutBefore))
        fail(
          `${fixture.id}: ${r.steps} fitting steps of ${r.label} did not reduce the held-out loss (${r.heldOutBefore.toFixed(4)} -> ${r.heldOutAfter.toFixed(4)})`,
        )
      summary.push(
        `${r.label}: ${r.heldOutBefore.toFixed(4)} -> ${r.heldOutAfter.toFixed(4)} in ${r.steps} steps`,
      )
    }
    return summary.join('; ')
  } finally {
    disposeGrown(g)
  }
}

export { growthKinds }
