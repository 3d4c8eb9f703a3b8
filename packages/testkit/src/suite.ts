import type { Family, GrowthOperator } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, it } from 'vitest'
import {
  checkCheckpointRoundTrip,
  checkDeterminism,
  checkDisposesToBaseline,
  checkFitReducesLoss,
  checkFunctionPreserving,
  checkMetadata,
  checkOptionValidation,
  checkRefusals,
  checkShapes,
  DEFAULT_TOLERANCE,
  disposeGrown,
  type Grown,
  growFixture,
} from './checks.js'
import { allFixtures, claimedFixtures, type Fixture } from './fixtures.js'

/** The checks the suite runs; each can be excluded with a written reason. */
export type CheckName =
  | 'metadata'
  | 'options'
  | 'refusals'
  | 'shapes'
  | 'functionPreserving'
  | 'determinism'
  | 'leaks'
  | 'checkpoint'
  | 'fit'

export interface ConformanceConfig {
  /** Raw options every grow uses (parsed through the operator's schema). Default {}. */
  options?: Record<string, unknown>
  /** Fixture pairs: a list replaces the defaults; a function edits them. Filtered by capabilities. */
  fixtures?: Fixture[] | ((defaults: Fixture[]) => Fixture[])
  /** Families to draw default fixtures from (default: decoder, encoder, vit). */
  families?: Family[]
  /**
   * Skips with a written reason, printed in the run. Keys: a check ("determinism"), a fixture
   * ("vit/width"), or a check on one fixture ("functionPreserving:encoder/heads").
   */
  exclude?: Record<string, string>
  /** Seed for sources, randomness and synthetic batches (default 7). */
  seed?: number
  /** Tolerance on max |Δ logits| for function-preserving claims (default 1e-4). */
  tolerance?: number
  /** Fitting steps in the "fit reduces the loss" check (default 30); other checks fit at most 2. */
  fitSteps?: number
  /** Fixture id the fitting check grows (default: the first claimed fixture). */
  fitFixture?: string
  /** Raw options merged over `options` for the fitting check only (e.g. a larger learning rate). */
  fitOptions?: Record<string, unknown>
}

/** Fitting steps outside the fitting check: one, to exercise the fit path for shapes, seeds and leaks. */
const CHEAP_FIT_STEPS = 1

function reasonFor(exclude: Record<string, string>, check: CheckName, fixture?: Fixture): string | undefined {
  const keys = fixture ? [`${check}:${fixture.id}`, fixture.id, check] : [check]
  for (const k of keys) if (exclude[k] !== undefined) return exclude[k]
  return undefined
}

const checkNames: readonly CheckName[] = [
  'metadata',
  'options',
  'refusals',
  'shapes',
  'functionPreserving',
  'determinism',
  'leaks',
  'checkpoint',
  'fit',
]

/** Every exclusion needs a reason and a key that names a check and/or a fixture (typos would silently skip nothing). */
function validateExclusions(exclude: Record<string, string>, fixtureIds: Set<string>): void {
  const known = (key: string) => {
    const [check, fixture] = key.includes(':') ? key.split(':', 2) : [undefined, key]
    if (check !== undefined) return checkNames.includes(check as CheckName) && fixtureIds.has(fixture)
    return checkNames.includes(key as CheckName) || fixtureIds.has(key)
  }
  for (const [key, reason] of Object.entries(exclude)) {
    if (typeof reason !== 'string' || reason.trim().length < 8)
      throw new Error(
        `describeGrowthOperator: exclusion "${key}" needs a written reason (a sentence saying why), got ${JSON.stringify(reason)}`,
      )
    if (!known(key))
      throw new Error(
        `describeGrowthOperator: exclusion "${key}" matches no check or fixture; use a check (${checkNames.join(', ')}), a fixture id (${[...fixtureIds].join(', ')}) or "check:fixture"`,
      )
  }
}

/**
 * Registers the conformance suite for a growth operator in the calling test file:
 *
 * ```ts
 * describeGrowthOperator(myOperator, { exclude: { 'vit/width': 'patch embeddings are not widened yet' } })
 * ```
 */
export function describeGrowthOperator(op: GrowthOperator<any>, config: ConformanceConfig = {}): void {
  const exclude = config.exclude ?? {}
  const seed = config.seed ?? 7
  const defaults = allFixtures(config.families)
  const fixtures = claimedFixtures(
    op.capabilities,
    typeof config.fixtures === 'function' ? config.fixtures(defaults) : (config.fixtures ?? defaults),
  )
  validateExclusions(exclude, new Set(fixtures.map((f) => f.id)))
  const rawOptions = config.options ?? {}
  const options = () => op.options.parse(rawOptions)
  const caps = op.capabilities

  const test = (check: CheckName, title: string, fn: () => unknown, fixture?: Fixture) => {
    const reason = reasonFor(exclude, check, fixture)
    if (reason !== undefined) {
      console.info(`[conformance] ${op.name}: skipped ${title} (${check}) — ${reason}`)
      it.skip(`${title} — excluded: ${reason}`, () => {})
    } else it(title, fn)
  }

  describe(`${op.name ?? 'operator'} conformance`, () => {
    test('metadata', 'name, description, options schema and capabilities are well-formed', () =>
      checkMetadata(op),
    )
    test('options', 'rejects bad options with a GrowthError naming the option', () => {
      const probed = checkOptionValidation(op, rawOptions)
      console.info(`[conformance] ${op.name}: refused ${probed.join('; ')}`)
    })
    test('refusals', 'check() refuses shrinking and unclaimed growth with a GrowthError', () =>
      checkRefusals(op, options(), fixtures),
    )
    if (fixtures.length === 0)
      console.info(
        `[conformance] ${op.name}: claims no kind of growth; only metadata, options and refusals apply`,
      )

    const firstOfFamily = new Set(
      fixtures.filter((f, i) => fixtures.findIndex((g) => g.family === f.family) === i).map((f) => f.id),
    )
    for (const fixture of fixtures) {
      // One grow per fixture serves every check; the leak check runs last and disposes it.
      describe(fixture.id, () => {
        let grown: Grown | null = null
        let before = 0
        beforeAll(async () => {
          if (exclude[fixture.id] !== undefined) return // the whole fixture is excluded
          before = tf.memory().numTensors
          grown = await growFixture(op, fixture, options(), seed, CHEAP_FIT_STEPS)
        })
        afterAll(() => {
          if (grown) disposeGrown(grown)
        })
        test(
          'shapes',
          'grows to exactly the target spec and parameter shapes',
          () => checkShapes(op, fixture, grown!),
          fixture,
        )
        test(
          'functionPreserving',
          caps.functionPreserving
            ? `preserves the function (max |Δ logits| < ${config.tolerance ?? DEFAULT_TOLERANCE})`
            : 'a function-preservation claim in the grow report holds',
          () => {
            if (!caps.functionPreserving && !grown!.result.report.functionPreserving) return
            const diff = checkFunctionPreserving(fixture, grown!, config.tolerance)
            console.info(`[conformance] ${op.name} ${fixture.id}: max |Δ logits| = ${diff.toExponential(2)}`)
          },
          fixture,
        )
        test(
          'checkpoint',
          'survives a checkpoint round trip bit for bit',
          () => checkCheckpointRoundTrip(fixture, grown!),
          fixture,
        )
        if (firstOfFamily.has(fixture.id))
          test(
            'determinism',
            'growing again with the same seed gives the same parameters',
            () => checkDeterminism(op, fixture, options(), seed, CHEAP_FIT_STEPS, grown!),
            fixture,
          )
        test(
          'leaks',
          'leaks no tensors (disposing the grown model restores the tensor count)',
          () => {
            const g = grown!
            grown = null
            checkDisposesToBaseline(fixture, g, before)
          },
          fixture,
        )
      })
    }

    const fitFixture = fixtures.find((f) => f.id === config.fitFixture) ?? fixtures[0]
    if (caps.learned && fitFixture)
      test(
        'fit',
        `${fitFixture.id}: fitting the learned operator reduces the held-out loss`,
        async () => {
          const summary = await checkFitReducesLoss(
            op,
            fitFixture,
            op.options.parse({ ...rawOptions, ...config.fitOptions }),
            seed,
            config.fitSteps ?? 30,
          )
          console.info(`[conformance] ${op.name} ${fitFixture.id}: ${summary}`)
        },
        fitFixture,
      )
  })
}
