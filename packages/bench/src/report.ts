import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import {
  formatFlops,
  formatPaper,
  type GrowthOperator,
  type OperatorMeta,
  specSummary,
  writeFileAtomic,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { lossCurveSpec, type PlotPoint, renderChart, type SavingsPoint, savingsSpec } from './plots.js'
import type { MethodRun, SourceRun } from './records.js'
import type { SeedStats } from './stats.js'
import type { ResolvedSuite } from './suites.js'
import { type Accountings, type MethodSummary, type Summary, summariseRuns } from './summary.js'

const require = createRequire(import.meta.url)

/** Where a comparison ran (recorded when it starts, so a re-rendered report keeps it). */
export interface Machine {
  cpu: string
  cores: number
  ramGiB: number
  backend: string
  versions: Record<string, string>
  date: string
  /** Whether `date` is when the comparison started, or only when this report was rendered. */
  dateKind?: 'started' | 'rendered'
}

/** results.json: the summary plus where and when it ran. */
export interface Results extends Summary {
  suite: string
  date: string
  backend: string
  machine: Machine
  /** What each growth method in the comparison is, from its operator's meta (when it has one). */
  papers: Record<string, OperatorMeta>
}

/** The operators a line uses: `a+b` composes two, a progressive line's `a>b` grows twice. */
const operatorsOf = (method: string) => method.split(/[+>]/).map((s) => s.trim())

/** Each used operator's meta, by operator name. */
function papersOf(methods: MethodSummary[], operators: GrowthOperator<any>[]): Record<string, OperatorMeta> {
  const out: Record<string, OperatorMeta> = {}
  for (const name of methods.flatMap((m) => operatorsOf(m.operator))) {
    const meta = operators.find((o) => o.name === name)?.meta
    if (meta) out[name] = meta
  }
  return out
}

function versions(): Record<string, string> {
  const out: Record<string, string> = { '@tensorflow/tfjs': tf.version_core }
  for (const pkg of ['@sprout/core', '@sprout/trainer', '@sprout/data', '@sprout/bench']) {
    try {
      out[pkg] = JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')).version
    } catch {
      // not resolvable from here (e.g. running from sources): leave it out
    }
  }
  return out
}

export function describeMachine(dateKind: Machine['dateKind'] = 'started'): Machine {
  const cpu = cpus()
  return {
    cpu: cpu[0]?.model ?? 'unknown CPU',
    cores: cpu.length,
    ramGiB: Math.round(totalmem() / 2 ** 30),
    backend: tf.getBackend(),
    versions: versions(),
    date: new Date().toISOString(),
    dateKind,
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`

/** "45.3 % ± 2.1 [40.1, 50.5]", or why there is no figure. */
export function formatSavings(s: SeedStats, seeds: number): string {
  if (s.mean === null) {
    const reached = s.perSeed.filter((v) => v !== null).length
    return reached === 0 ? 'not reached' : `not reached in ${seeds - reached} of ${seeds} seeds`
  }
  if (s.std === null || s.ci95 === null) return pct(s.mean)
  return `${pct(s.mean)} ± ${(100 * s.std).toFixed(1)} [${(100 * s.ci95[0]).toFixed(1)}, ${(100 * s.ci95[1]).toFixed(1)}]`
}

const loss = (s: SeedStats) =>
  s.mean === null ? '—' : s.std === null ? s.mean.toFixed(4) : `${s.mean.toFixed(4)} ± ${s.std.toFixed(4)}`

const perSeedPct = (s: SeedStats) =>
  s.perSeed.map((v) => (v === null ? '—' : (100 * v).toFixed(1))).join(' / ')

const budgetLabel = (b: number) => `${Math.round(100 * b)} %`

const ACCOUNTING_WORDS: Record<keyof Accountings, string> = {
  excludingSource: "with the source's pretraining as a sunk cost",
  includingSource: "charging the source's pretraining to the grown model",
}

/** The report's sentences: which savings are distinguishable from zero and from each other. */
export function findingsText(r: Summary): string[] {
  const lines: string[] = []
  if (r.seeds < 2)
    lines.push(
      `One seed: no interval can be computed, so no saving below is distinguishable from noise. Run with \`--seeds 3\` or more.`,
    )
  const sweep = r.scratch.lrSweep.map((e) => e.lrMult)
  const edge = r.scratch.byBudget.filter(
    (b) => sweep.length > 1 && (b.lrMult === Math.min(...sweep) || b.lrMult === Math.max(...sweep)),
  )
  if (edge.length)
    lines.push(
      `- Scratch's best learning rate lies at the edge of the sweep at ${edge.map((b) => `${budgetLabel(b.budget)} (×${b.lrMult})`).join(', ')}: a wider sweep might find a better baseline, which would lower every saving there.`,
    )
  for (const budget of r.budgets) {
    for (const accounting of ['excludingSource', 'includingSource'] as const) {
      const here = r.findings.filter((f) => f.budget === budget && f.accounting === accounting)
      if (here.length === 0) continue
      const by = (v: string) => here.filter((f) => f.verdict === v).map((f) => f.method)
      const parts: string[] = []
      const saves = by('positive')
      const costs = by('negative')
      const same = by('indistinguishable')
      const missed = by('not-reached')
      const undetermined = by('undetermined')
      if (saves.length)
        parts.push(`${saves.join(', ')} ${saves.length > 1 ? 'save' : 'saves'} compute with 95 % confidence`)
      if (costs.length)
        parts.push(
          `${costs.join(', ')} ${costs.length > 1 ? 'cost' : 'costs'} more than scratch with 95 % confidence`,
        )
      if (same.length) parts.push(`${same.join(', ')}: not distinguishable from zero`)
      if (missed.length) parts.push(`${missed.join(', ')}: did not reach scratch's loss in every seed`)
      if (undetermined.length && r.seeds >= 2) parts.push(`${undetermined.join(', ')}: undetermined`)
      if (parts.length === 0) continue
      lines.push(`- **${budgetLabel(budget)} budget, ${ACCOUNTING_WORDS[accounting]}:** ${parts.join('; ')}.`)
    }
  }
  if (r.seeds >= 2) {
    const top = r.budgets.at(-1)!
    const differ = r.pairs.filter(
      (p) => p.budget === top && (p.verdict === 'positive' || p.verdict === 'negative'),
    )
    const same = r.pairs.filter((p) => p.budget === top && p.verdict === 'indistinguishable')
    for (const p of differ) {
      const [more, less] = p.verdict === 'positive' ? [p.a, p.b] : [p.b, p.a]
      const d = Math.abs(p.difference.mean!)
      lines.push(
        `- At the full budget, ${more} saves more than ${less} (paired by seed: ${(100 * d).toFixed(1)} points, 95 % interval excludes 0).`,
      )
    }
    if (same.length)
      lines.push(
        `- At the full budget, these pairs are not distinguishable from each other: ${same.map((p) => `${p.a}/${p.b}`).join(', ')}.`,
      )
  }
  return lines
}

function sortMethods(methods: MethodSummary[]): MethodSummary[] {
  const order = (m: MethodSummary) =>
    m.status === 'skipped' ? 3 : m.variant ? 2 : m.savings.excludingSource.mean === null ? 1 : 0
  return [...methods].sort(
    (a, b) =>
      order(a) - order(b) ||
      (b.savings.excludingSource.mean ?? -Infinity) - (a.savings.excludingSource.mean ?? -Infinity),
  )
}

/** Lines for the terminal: the full budget in both accountings. */
export function resultTable(r: Results): string[] {
  const top = r.scratch.byBudget.at(-1)!
  return [
    `${r.suite}: ${r.seeds} seed${r.seeds > 1 ? 's' : ''}; target = scratch's final loss ${loss(top.finalLoss)} (lr ${top.lr}, tuned over ${r.scratch.lrSweep.length} rates)`,
    ...sortMethods(r.methods).map((m) =>
      m.status === 'skipped'
        ? `  ${m.method.padEnd(14)} skipped: ${m.reason}`
        : m.variant
          ? `  ${m.method.padEnd(14)} variant (another target): final ${loss(m.finalLoss)}`
          : `  ${m.method.padEnd(14)} saved ${formatSavings(m.savings.excludingSource, r.seeds).padEnd(30)} incl. source ${formatSavings(m.savings.includingSource, r.seeds).padEnd(30)} final ${loss(m.finalLoss)}`,
    ),
  ]
}

function papersSection(papers: Record<string, OperatorMeta>): string {
  const rows = Object.entries(papers)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, m]) => `- **${m.displayName}** (\`${name}\`): ${m.papers.map(formatPaper).join('; ')}`)
  return rows.length === 0 ? '' : `What the methods implement:\n\n${rows.join('\n')}\n\n`
}

function markdown(suite: ResolvedSuite, r: Results): string {
  const f = (s: SeedStats) => (s.mean === null ? '—' : formatFlops(s.mean))
  const methods = sortMethods(r.methods)
  const measured = methods.filter((m) => m.status === 'done' && !m.variant)
  const budgetRows = r.budgets.flatMap((budget) =>
    measured.map((m) => {
      const b = m.byBudget.find((x) => x.budget === budget)!
      return `| ${m.method} | ${budgetLabel(budget)} (${b.steps} steps) | ${formatSavings(b.savings.excludingSource, r.seeds)} | ${formatSavings(b.savings.includingSource, r.seeds)} | ${f(b.flopsToTarget)} | ${loss(b.lossAtEqualFlops)} | ${loss(b.finalLoss)} | ${perSeedPct(b.savings.excludingSource)} |`
    }),
  )
  const scratchRows = r.scratch.byBudget.map(
    (b) =>
      `| ${budgetLabel(b.budget)} | ${b.lr} (×${b.lrMult}) | **${loss(b.finalLoss)}** | ${f(b.flopsToFinal)} |`,
  )
  const sweepRows = r.scratch.lrSweep.map(
    (e) => `| ${e.lr} (×${e.lrMult}) | ${e.byBudget.map((b) => loss(b.finalLoss)).join(' | ')} |`,
  )
  const methodRows = methods.map((m) =>
    m.status === 'skipped'
      ? `| ${m.method} | skipped | | ${m.reason} |`
      : `| ${m.method} | ${formatFlops(m.growthFlops.mean)} | ${m.growthSeconds.mean.toFixed(1)} s | ${[
          m.variant
            ? `variant with another target (${specSummary(m.variantTarget!)}), full budget only; final loss ${loss(m.finalLoss)}: compare its curve, no saving is claimed`
            : '',
          m.schedule === 'recommended' ? `method's schedule: ${m.scheduleNote}` : '',
          m.progressive
            ? `progressive: from scratch at the source's size, grown during the run (${m.progressive.join(', ')} at the full budget); no source, so both accountings are equal`
            : '',
        ]
          .filter(Boolean)
          .join('; ')} |`,
  )
  const m = r.machine
  const src = r.source
  return `# Sprout growth comparison: \`${suite.name}\`

${suite.description}

- Source: ${specSummary(suite.source)}, pretrained ${suite.sourceSteps} steps per seed (${f(src.flops)}, val loss ${loss(src.valLoss)}).
- Target: ${specSummary(suite.target)}, up to ${suite.targetSteps} steps of ${suite.batchSize} × ${suite.seqLen ?? suite.target.maxSeqLen} on \`${suite.data}\`, AdamW, ${suite.schedule.kind} schedule to ${suite.schedule.minLrRatio}× with ${suite.schedule.warmupSteps} warm-up steps, eval ${suite.evalBatches} fixed batches.
- Seeds: ${r.seeds} (seed values ${Array.from({ length: r.seeds }, (_, i) => suite.seed + i).join(', ')}); each changes initialisation, data order and the method's randomness, and has its own source.
- Budgets: ${r.budgets.map(budgetLabel).join(', ')} of the target steps. At each budget every run (scratch and grown) has a schedule that fully decays there, and scratch is tuned over ${r.scratch.lrSweep.length} learning rates.
- Savings = 1 − FLOPs to reach scratch's final validation loss / scratch's FLOPs to reach it, paired by seed. Growth and operator fitting are always charged; the two accountings differ in whether the source's pretraining is. Figures are mean ± standard deviation [95 % t-interval] over seeds.
- Machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB; backend \`${m.backend}\`; ${Object.entries(m.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}; ${m.dateKind ?? 'started'} ${m.date}.

## What the seeds show

${findingsText(r).join('\n')}

## Savings at each budget

| method | budget | saved, source sunk | saved, source charged | FLOPs to target | loss at scratch's FLOPs | final loss | per seed (source sunk, %) |
| --- | --- | --- | --- | --- | --- | --- | --- |
${budgetRows.join('\n')}

"not reached" means the method never got to scratch's final loss within that budget; a negative
saving means it needed more compute than scratch.

## The baseline: scratch, tuned at each budget

| budget | chosen learning rate | final loss (the target) | FLOPs to it |
| --- | --- | --- | --- |
${scratchRows.join('\n')}

Learning-rate sweep (final validation loss, mean ± std over seeds):

| learning rate | ${r.budgets.map(budgetLabel).join(' | ')} |
| --- | ${r.budgets.map(() => '---').join(' | ')} |
${sweepRows.join('\n')}

## Methods

| method | growth cost (mean) | growth time | notes |
| --- | --- | --- | --- |
${methodRows.join('\n')}

${papersSection(r.papers)}FLOPs are counted analytically from the specs and token counts, so they do not depend on the
machine; wall times are measured on a shared machine (concurrently with other runs under
\`--jobs\`) and are indicative only.

![validation loss vs FLOPs](loss-vs-flops.svg)

![validation loss vs time](loss-vs-time.svg)

![compute saved by budget](savings.svg)
`
}

/** Summarises the runs and writes results.json, report.md and the plots (SVG and PNG) into `dir`. */
export async function writeReport(
  dir: string,
  suite: ResolvedSuite,
  sources: (SourceRun | null)[],
  runs: MethodRun[],
  machine: Machine = describeMachine('rendered'),
  operators: GrowthOperator<any>[] = [],
): Promise<Results> {
  const summary = summariseRuns({
    runs,
    sources,
    seeds: suite.seeds,
    budgets: suite.budgets,
    baseLr: suite.optimizer.lr,
    lrSweep: suite.scratchLrSweep,
  })
  const results: Results = {
    suite: suite.name,
    date: machine.date,
    backend: machine.backend,
    machine,
    ...summary,
    papers: papersOf(summary.methods, operators),
  }
  const top = summary.budgets.at(-1)!
  const chosen = summary.scratch.byBudget.at(-1)!
  // The curves at the full budget: scratch at its chosen rate and every method, one line per seed.
  const points: PlotPoint[] = runs
    .filter(
      (x) => x.status === 'done' && x.budget === top && (x.name !== 'scratch' || x.lrMult === chosen.lrMult),
    )
    .flatMap((x) =>
      x.curve.map((c) => ({
        method: x.name,
        seed: x.seed,
        flops: c.flops,
        seconds: c.seconds,
        valLoss: c.valLoss,
      })),
    )
  const savingsPoints: SavingsPoint[] = summary.methods
    .filter((x) => x.status === 'done' && !x.variant)
    .flatMap((x) =>
      x.byBudget
        .filter((b) => b.savings.excludingSource.mean !== null)
        .map((b) => ({
          method: x.method,
          budget: b.budget,
          mean: b.savings.excludingSource.mean!,
          lo: b.savings.excludingSource.ci95?.[0] ?? null,
          hi: b.savings.excludingSource.ci95?.[1] ?? null,
        })),
    )
  const charts = {
    'loss-vs-flops': lossCurveSpec(
      points,
      'flops',
      `${suite.name}: validation loss vs compute (full budget)`,
      chosen.finalLoss.mean,
    ),
    'loss-vs-time': lossCurveSpec(
      points,
      'seconds',
      `${suite.name}: validation loss vs wall time (full budget)`,
      chosen.finalLoss.mean,
    ),
    savings: savingsSpec(
      savingsPoints,
      `${suite.name}: compute saved to reach scratch's final loss (source sunk)`,
    ),
  }
  for (const [name, spec] of Object.entries(charts)) {
    const { svg, png } = await renderChart(spec)
    writeFileAtomic(join(dir, `${name}.svg`), svg)
    writeFileSync(join(dir, `${name}.png`), png)
  }
  writeFileAtomic(join(dir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`)
  writeFileAtomic(join(dir, 'report.md'), markdown(suite, results))
  return results
}
