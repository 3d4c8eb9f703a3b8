import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SproutError } from '@sprout/core'
import type { MethodRun, SourceRun } from './records.js'
import type { ResolvedSuite } from './suites.js'

/**
 * A comparison's output directory:
 *   suite.json, machine.json          what ran and where
 *   seed-<i>/source/{model,done.json}  the source pretrained for seed i
 *   runs/<key>.json                    one finished (seed, name, budget[, lr]) run each
 *   metrics/<key>.jsonl                its training metrics
 *   results.json, report.md, *.svg/png the summary (re-rendered by `sprout bench report`)
 */
export const SUITE_FILE = 'suite.json'
export const MACHINE_FILE = 'machine.json'
/** Written by the parent on Ctrl-C; workers check it at every step. */
export const STOP_FILE = 'STOP'
const RUNS = 'runs'
const METRICS = 'metrics'

/** Scratch's sweep entries carry their learning-rate multiplier in the key. */
export function runKey(seed: number, name: string, budget: number, lrMult?: number): string {
  return `s${seed}-${name}-b${budget}${lrMult === undefined ? '' : `-lr${lrMult}`}`
}

export const runFile = (out: string, key: string) => join(out, RUNS, `${key}.json`)
export const metricsFile = (out: string, key: string) => join(out, METRICS, `${key}.jsonl`)
export const sourceDir = (out: string, seed: number) => join(out, `seed-${seed}`, 'source')
export const runDirs = (out: string) => [join(out, RUNS), join(out, METRICS)]

export function readRuns(out: string): MethodRun[] {
  const dir = join(out, RUNS)
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as MethodRun)
}

export function readSources(out: string, seeds: number): (SourceRun | null)[] {
  return Array.from({ length: seeds }, (_, i) => {
    const f = join(sourceDir(out, i), 'done.json')
    return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as SourceRun) : null
  })
}

/**
 * An existing --out must hold this very comparison (and --resume must be asked for), so a run
 * never mixes into another suite's results or silently overwrites finished work.
 */
/**
 * Whether a suite continues a recorded one: every setting equal, and every variant or
 * progressive line recorded before still there unchanged (new lines may be added: their runs
 * are simply pending).
 */
export function sameComparison(previous: ResolvedSuite, suite: ResolvedSuite): boolean {
  const core = ({ variants, progressive, scratchLrSweep, ...rest }: ResolvedSuite) => JSON.stringify(rest)
  const kept = <T extends { name: string }>(before: T[] = [], now: T[] = []) =>
    before.every((b) => JSON.stringify(now.find((n) => n.name === b.name)) === JSON.stringify(b))
  return (
    core(previous) === core(suite) &&
    kept(previous.variants, suite.variants) &&
    kept(previous.progressive, suite.progressive) &&
    // A widened sweep adds scratch runs; the recorded ones keep their meaning.
    previous.scratchLrSweep.every((m) => suite.scratchLrSweep.includes(m))
  )
}

export function checkOut(out: string, suite: ResolvedSuite, resume: boolean | undefined): void {
  if (!existsSync(out)) return
  const suiteFile = join(out, SUITE_FILE)
  if (existsSync(suiteFile)) {
    const previous = JSON.parse(readFileSync(suiteFile, 'utf8'))
    if (!sameComparison(previous, suite))
      throw new SproutError(
        'IO',
        `--out ${out} holds a comparison of a different suite or settings ("${previous.name}", seeds ${previous.seeds}, budgets ${previous.budgets}); choose another --out`,
      )
    if (!resume)
      throw new SproutError(
        'IO',
        `--out ${out} already holds this comparison; pass --resume to continue it or choose another --out`,
      )
  } else if (readdirSync(out).length > 0) {
    throw new SproutError('IO', `--out ${out} exists and is not a comparison; choose another --out`)
  }
}
