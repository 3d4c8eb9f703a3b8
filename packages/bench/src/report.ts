import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { formatFlops, specSummary, type TransformerSpec, writeFileAtomic } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import type { MethodRun, SourceRun } from './compare.js'
import { type CurvePoint, lossCurveSpec, renderChart, savingsSpec } from './plots.js'
import { firstReach, lossAt, savings } from './savings.js'
import type { ResolvedSuite } from './suites.js'

const require = createRequire(import.meta.url)

export interface MethodResult {
  name: string
  method: string
  status: 'done' | 'skipped'
  reason?: string
  variant: boolean
  growthFlops: number
  growthSeconds: number
  /** FLOPs (growth included) to reach scratch's final validation loss; null if never reached. */
  flopsToTarget: number | null
  secondsToTarget: number | null
  /** 1 − flopsToTarget / scratch's FLOPs. */
  savings: number | null
  /** Validation loss at scratch's total FLOPs (null if the run ended before). */
  lossAtEqualFlops: number | null
  finalValLoss: number | null
  totalFlops: number | null
  schedule: 'suite' | 'recommended'
  scheduleNote?: string
  variantTarget?: TransformerSpec
}

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

export interface Results {
  suite: string
  date: string
  backend: string
  machine: Machine
  target: number | null
  source: SourceRun
  methods: MethodResult[]
  table: string[]
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

/** The savings column: a percentage, or why there is none. */
function savingsLabel(m: MethodResult, defined: boolean): string {
  if (m.variant) return 'n/a (variant)'
  if (!defined) return 'undefined'
  return m.savings === null ? 'not reached' : `${(100 * m.savings).toFixed(1)}%`
}

/** Scratch's final loss is the target every method is measured against. */
export function summarise(
  suite: string,
  source: SourceRun,
  runs: MethodRun[],
  machine: Machine = describeMachine('rendered'),
): Results {
  const scratch = runs.find((r) => r.name === 'scratch' && r.status === 'done')
  const target = scratch?.finalValLoss ?? null
  // Scratch is measured like every method: FLOPs until it first reaches its own final loss
  // (its total when the curve falls monotonically). Zero means it never improved on its random
  // initialisation, and then no saving can be defined.
  const scratchReach = scratch && target !== null ? firstReach(scratch.curve, target) : null
  const scratchFlops = scratchReach && scratchReach.flops > 0 ? scratchReach.flops : null
  const scratchTotal = scratch?.curve.at(-1)?.flops ?? null
  const methods: MethodResult[] = runs.map((r) => {
    const reach = target !== null && r.status === 'done' ? firstReach(r.curve, target) : null
    return {
      name: r.name,
      method: r.method,
      status: r.status,
      reason: r.reason,
      variant: r.variantTarget !== undefined,
      variantTarget: r.variantTarget,
      growthFlops: r.growthFlops,
      growthSeconds: r.growthSeconds,
      flopsToTarget: reach?.flops ?? null,
      secondsToTarget: reach?.seconds ?? null,
      // A variant trains a different target (e.g. an upcycled MoE): no saving is claimed against scratch.
      savings:
        scratchFlops !== null && r.status === 'done' && r.variantTarget === undefined
          ? savings(reach?.flops ?? null, scratchFlops)
          : null,
      lossAtEqualFlops: scratchTotal !== null && r.status === 'done' ? lossAt(r.curve, scratchTotal) : null,
      finalValLoss: r.finalValLoss,
      totalFlops: r.curve.at(-1)?.flops ?? null,
      schedule: r.schedule,
      scheduleNote: r.scheduleNote,
    }
  })
  const order = (m: MethodResult) => (m.status === 'skipped' ? 4 : m.variant ? 3 : m.savings === null ? 2 : 1)
  methods.sort((a, b) => order(a) - order(b) || (b.savings ?? -Infinity) - (a.savings ?? -Infinity))
  const pct = (m: MethodResult) => savingsLabel(m, scratchFlops !== null)
  const table = [
    `target: scratch's final validation loss ${target?.toFixed(4) ?? '-'}`,
    ...(scratch && scratchFlops === null
      ? ['  scratch never improved on its initial loss: savings are undefined; train longer']
      : []),
    ...methods.map((m) =>
      m.status === 'skipped'
        ? `  ${m.name.padEnd(12)} skipped: ${m.reason}`
        : `  ${m.name.padEnd(12)} savings ${pct(m).padStart(13)}  final ${m.finalValLoss?.toFixed(4) ?? '-'}  growth ${formatFlops(m.growthFlops)}`,
    ),
  ]
  return { suite, date: machine.date, backend: machine.backend, machine, target, source, methods, table }
}

function markdown(suite: ResolvedSuite, r: Results): string {
  const f = (x: number | null) => (x === null ? '—' : formatFlops(x))
  const s = (x: number | null) => (x === null ? '—' : `${x.toFixed(1)} s`)
  const l = (x: number | null) => (x === null ? '—' : x.toFixed(4))
  const scratchNeverImproved = r.methods.some(
    (m) => m.name === 'scratch' && m.status === 'done' && m.savings === null,
  )
  const rows = r.methods.map((m) =>
    m.status === 'skipped'
      ? `| ${m.name} | skipped | | | | | | ${m.reason} |`
      : `| ${m.name} | ${m.savings === null ? savingsLabel(m, !scratchNeverImproved) : `**${savingsLabel(m, true)}**`} | ${f(m.flopsToTarget)} | ${s(m.secondsToTarget)} | ${l(m.lossAtEqualFlops)} | ${l(m.finalValLoss)} | ${f(m.growthFlops)} | ${[
          m.variant
            ? `variant with another target (${specSummary(m.variantTarget!)}): compare its curve, no saving is claimed`
            : '',
          m.schedule === 'recommended' ? `method's schedule: ${m.scheduleNote}` : '',
        ]
          .filter(Boolean)
          .join('; ')} |`,
  )
  const m = r.machine
  return `# Sprout growth comparison: \`${suite.name}\`

${suite.description}

- Source: ${specSummary(suite.source)}, pretrained ${r.source.steps} steps (${formatFlops(r.source.flops)}, ${r.source.seconds.toFixed(1)} s, val loss ${r.source.valLoss.toFixed(4)}) — shared by every method, not charged to any.
- Target: ${specSummary(suite.target)}, ${suite.targetSteps} steps of ${suite.batchSize} × ${suite.seqLen ?? suite.target.maxSeqLen} on \`${suite.data}\`, AdamW lr ${suite.optimizer.lr}, ${suite.schedule.kind} schedule, eval every ${suite.evalEvery} steps on ${suite.evalBatches} fixed batches, seed ${suite.seed}.
- Target loss: scratch's final validation loss, **${l(r.target)}**. Savings = 1 − FLOPs to reach it / scratch's FLOPs to reach it; growth and operator fitting FLOPs are charged to the method.${
    scratchNeverImproved
      ? '\n- **Scratch never improved on its initial loss, so no saving is defined: the target budget is too small.**'
      : ''
  }
- Machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB; backend \`${m.backend}\`; ${Object.entries(m.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}; ${m.dateKind ?? 'started'} ${m.date}.

| method | compute saved | FLOPs to target | time to target | loss at scratch's FLOPs | final loss | growth cost | notes |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

A negative saving means the method needed more compute than scratch; "not reached" means it
never got to scratch's final loss within the budget. FLOPs are counted analytically from the
specs and token counts, so they do not depend on the machine; wall times are measured on a shared
machine (concurrently with other runs under \`--jobs\`) and are indicative only. The dashed line
in the loss plots is the target loss.

![validation loss vs FLOPs](loss-vs-flops.svg)

![validation loss vs time](loss-vs-time.svg)

![compute saved](savings.svg)
`
}

/** Writes results.json, report.md and the plots (SVG and PNG) into `dir`. */
export async function writeReport(
  dir: string,
  suite: ResolvedSuite,
  source: SourceRun,
  runs: MethodRun[],
  machine?: Machine,
): Promise<Results> {
  const results = summarise(suite.name, source, runs, machine)
  const points: CurvePoint[] = runs
    .filter((r) => r.status === 'done')
    .flatMap((r) =>
      r.curve.map((c) => ({
        method: r.name,
        flops: c.flops,
        seconds: c.seconds,
        valLoss: c.valLoss,
      })),
    )
  const charts = {
    'loss-vs-flops': lossCurveSpec(
      points,
      'flops',
      `${suite.name}: validation loss vs compute`,
      results.target,
    ),
    'loss-vs-time': lossCurveSpec(
      points,
      'seconds',
      `${suite.name}: validation loss vs wall time`,
      results.target,
    ),
    savings: savingsSpec(results.methods, `${suite.name}: compute saved to reach scratch's final loss`),
  }
  for (const [name, spec] of Object.entries(charts)) {
    const { svg, png } = await renderChart(spec)
    writeFileAtomic(join(dir, `${name}.svg`), svg)
    writeFileSync(join(dir, `${name}.png`), png)
  }
  writeFileAtomic(join(dir, 'results.json'), `${JSON.stringify({ ...results, table: undefined }, null, 2)}\n`)
  writeFileAtomic(join(dir, 'report.md'), markdown(suite, results))
  return results
}
