import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import lemon from '@sprout/lemon'
import stack from '@sprout/stack'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { runBenchCompare, runBenchReport } from './compare.js'
import type { MethodRun } from './records.js'
import { resultTable, writeReport } from './report.js'
import { BUILTIN_SUITES, resolveSuite } from './suites.js'
import { curveRun } from './testing/runs.testutil.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-compare-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const capture = () => {
  const out: string[] = []
  const err: string[] = []
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } }
}

describe('compare', () => {
  const suite = {
    ...BUILTIN_SUITES.smoke,
    name: 'tiny',
    batchSize: 2,
    seqLen: 8,
    source: { ...BUILTIN_SUITES.smoke.source, maxSeqLen: 8, dModel: 16, nHeads: 2, dFF: 32 },
    target: { ...BUILTIN_SUITES.smoke.target, maxSeqLen: 8, dModel: 32, nHeads: 4, dFF: 64 },
    sourceSteps: 6,
    targetSteps: 6,
    evalEvery: 3,
    evalBatches: 1,
    seeds: 2,
    budgets: [0.5, 1],
    scratchLrSweep: [1, 2],
    variants: [] as unknown[],
  }
  suite.variants = [{ name: 'lemon-exact', method: 'lemon', target: suite.target, options: { noiseStd: 0 } }]
  const serialOut = join(dir, 'out')
  const runJson = (out: string, key: string) =>
    JSON.parse(readFileSync(join(out, 'runs', `${key}.json`), 'utf8'))

  it('runs seeds × budgets × the scratch sweep, skips what cannot grow, resumes and re-renders', async () => {
    const before = tf.memory().numTensors
    const suiteFile = join(dir, 'tiny.json')
    writeFileSync(suiteFile, JSON.stringify(suite))
    const out = serialOut
    // Ctrl-C while the second seed's scratch trains: the first seed's runs are kept.
    const cut = capture()
    const io = {
      out: cut.io.out,
      err: (l: string) => {
        cut.io.err(l)
        if (l.includes('s1-scratch-b1-lr1 step 3/6')) process.emit('SIGINT')
      },
    }
    const interrupted = runBenchCompare({ suite: suiteFile, out }, [lemon, stack], io)
    await expect(interrupted).rejects.toThrow(
      /interrupted; finished runs are saved in .*; continue with --resume/,
    )
    await expect(interrupted).rejects.toMatchObject({ code: 'INTERRUPTED' })
    expect(existsSync(join(out, 'seed-0', 'source', 'done.json'))).toBe(true)
    expect(existsSync(join(out, 'runs', 's0-lemon-b1.json'))).toBe(true)
    expect(existsSync(join(out, 'runs', 's1-scratch-b0.5-lr1.json'))).toBe(true)
    expect(existsSync(join(out, 'runs', 's1-scratch-b1-lr1.json'))).toBe(false)
    expect(existsSync(join(out, 'report.md'))).toBe(false)
    const c = capture()
    await runBenchCompare({ suite: suiteFile, out, json: true, resume: true }, [lemon, stack], c.io)
    expect(c.err.join('\n')).toMatch(/units done earlier, kept/)
    expect(c.err.join('\n')).not.toMatch(/s0\/source: pretraining/)
    for (const f of [
      'results.json',
      'report.md',
      'machine.json',
      'loss-vs-flops.svg',
      'loss-vs-flops.png',
      'loss-vs-time.png',
      'savings.svg',
      'metrics/s0-scratch-b1-lr2.jsonl',
      'metrics/s1-lemon-b0.5.jsonl',
    ])
      expect(existsSync(join(out, f)), f).toBe(true)
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
    expect(results).toMatchObject({ suite: 'tiny', seeds: 2, budgets: [0.5, 1] })
    expect(results.scratch.lrSweep.map((e: { lr: number }) => e.lr)).toEqual([3e-3, 6e-3])
    expect([3e-3, 6e-3]).toContain(results.scratch.chosenLr)
    const byName = Object.fromEntries(results.methods.map((m: { method: string }) => [m.method, m]))
    expect(byName.stack.status).toBe('skipped')
    expect(byName.stack.reason).toMatch(/dModel differs/)
    const lemonResult = byName.lemon
    expect(lemonResult.perSeed).toHaveLength(2)
    expect(lemonResult.savings.excludingSource.perSeed).toHaveLength(2)
    expect(lemonResult.savings.includingSource.perSeed).toHaveLength(2)
    expect(lemonResult.finalLoss.perSeed.every((x: number) => Number.isFinite(x))).toBe(true)
    expect(lemonResult.growthFlops.mean).toBeGreaterThan(0)
    expect(lemonResult.byBudget.map((b: { budget: number }) => b.budget)).toEqual([0.5, 1])
    // Seeds differ (initialisation, data order, growth); each budget has its own, shorter run.
    expect(runJson(out, 's0-lemon-b1').finalValLoss).not.toBe(runJson(out, 's1-lemon-b1').finalValLoss)
    expect(runJson(out, 's0-lemon-b0.5').steps).toBe(3)
    expect(runJson(out, 's0-scratch-b1-lr2').lr).toBe(6e-3)
    expect(byName['lemon-exact'].variant).toBe(false)
    expect(cut.err.join('\n')).toMatch(/stack: skipped: stack grows depth only/)
    expect(JSON.parse(c.out.at(-1)!).suite).toBe('tiny')
    const md = readFileSync(join(out, 'report.md'), 'utf8')
    expect(md).toMatch(/## What the seeds show/)
    expect(md).toMatch(/\| lemon \| 50 % \(3 steps\) \|/)
    expect(md).toMatch(/Learning-rate sweep/)

    await expect(runBenchCompare({ suite: suiteFile, out }, [lemon, stack], capture().io)).rejects.toThrow(
      /pass --resume/,
    )
    // Other seeds or budgets make another comparison: refused rather than mixed in.
    await expect(
      runBenchCompare({ suite: suiteFile, out, resume: true, seeds: 3 }, [lemon, stack], capture().io),
    ).rejects.toThrow(/different suite or settings/)
    const lost = runJson(out, 's1-lemon-b1')
    rmSync(join(out, 'runs', 's1-lemon-b1.json'))
    const resumed = capture()
    await runBenchCompare({ suite: suiteFile, out, resume: true }, [lemon, stack], resumed.io)
    const log = resumed.err.join('\n')
    expect(log).toMatch(/s1-lemon-b1 step/)
    expect(log).not.toMatch(/s1-lemon-b0.5 step/)
    expect(log).not.toMatch(/scratch-b[^ ]* step/)
    // Regrown and retrained deterministically.
    expect(runJson(out, 's1-lemon-b1').finalValLoss).toBe(lost.finalValLoss)
    rmSync(join(out, 'report.md'))
    await runBenchReport({ dir: out }, capture().io)
    const started = JSON.parse(readFileSync(join(out, 'machine.json'), 'utf8')).date
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain(`started ${started}`)
    expect(tf.memory().numTensors).toBe(before)
  })

  it('bad input is refused in one line before anything is written', async () => {
    const suiteFile = join(dir, 'tiny-bad.json')
    writeFileSync(suiteFile, JSON.stringify(suite))
    let n = 0
    const refuse = async (args: Record<string, unknown>, message: RegExp, code = 'USAGE') => {
      const out = join(dir, `bad-${n++}`)
      const p = runBenchCompare({ suite: suiteFile, out, ...args }, [lemon], capture().io)
      await expect(p).rejects.toThrow(message)
      await expect(p).rejects.toMatchObject({ code })
      expect(existsSync(out)).toBe(false)
    }
    await refuse({ seeds: 0 }, /--seeds must be a positive integer \(got 0\)/)
    await refuse({ seeds: 1.5 }, /--seeds must be a positive integer/)
    await refuse({ budgets: '0.5,-1' }, /--budgets: "-1" is not a fraction in \(0, 1\]/)
    await refuse({ budgets: '0.5,abc' }, /--budgets: "abc" is not a fraction/)
    await refuse({ budgets: '1.5' }, /--budgets: "1.5" is not a fraction/)
    await refuse({ budgets: '0.5,,1' }, /--budgets must be comma-separated fractions/)
    await refuse({ jobs: 0 }, /--jobs must be a positive integer \(got 0\)/)
    await refuse(
      { methods: 'scratch,warp' },
      /"warp" is not available; choose from scratch, lemon, lemon-exact/,
    )
    writeFileSync(suiteFile, JSON.stringify({ ...suite, scratchLrSweep: [] }))
    await refuse({}, /tiny-bad.json.scratchLrSweep/, 'INPUT_INVALID')
    writeFileSync(suiteFile, JSON.stringify({ ...suite, budgets: [0.5, 2] }))
    await refuse({}, /tiny-bad.json.budgets/, 'INPUT_INVALID')
    writeFileSync(suiteFile, JSON.stringify({ ...suite, methods: { lemon: { noiseStd: -1 } } }))
    await refuse({}, /suite tiny: methods.lemon: method "lemon": option noiseStd/, 'INPUT_INVALID')
  })

  it('a comparison into a folder another running process writes is refused, naming it', async () => {
    const suiteFile = join(dir, 'tiny-locked.json')
    writeFileSync(suiteFile, JSON.stringify(suite))
    const out = join(dir, 'locked')
    // The lock of a running process that is not this one: vitest's main process.
    writeFileSync(join(dir, '.locked.lock'), `${process.ppid}\n`)
    const p = runBenchCompare({ suite: suiteFile, out }, [lemon], capture().io)
    await expect(p).rejects.toThrow(new RegExp(`locked is being written by process ${process.ppid} \\(lock `))
    expect(existsSync(out)).toBe(false)
    rmSync(join(dir, '.locked.lock'))
  })

  it('--jobs trains sources and units in worker processes and reproduces the in-process losses', async () => {
    // One seed and one learning rate keep the worker count small; seed 0 is the same as above.
    const suiteFile = join(dir, 'tiny-jobs.json')
    writeFileSync(suiteFile, JSON.stringify({ ...suite, seeds: 1, scratchLrSweep: [2] }))
    const out = join(dir, 'jobs')
    const args = { suite: suiteFile, out, methods: 'lemon' }
    const fixture = fileURLToPath(new URL('./testing/worker-fixture.ts', import.meta.url))
    const c = capture()
    await runBenchCompare(
      {
        ...args,
        jobs: 2,
        worker: { script: fixture, args: [JSON.stringify(args)], execArgv: ['--import', 'tsx'] },
      },
      [lemon, stack],
      c.io,
    )
    expect(c.err.join('\n')).toMatch(/\[s0\/lemon\] +s0-lemon-b1 step 6\/6/)
    for (const key of ['s0-scratch-b1-lr2', 's0-scratch-b0.5-lr2', 's0-lemon-b1', 's0-lemon-b0.5'])
      expect(runJson(out, key).finalValLoss, key).toBe(runJson(serialOut, key).finalValLoss)
  }, 120_000)
})

describe('report', () => {
  const run = (name: string, seed: number, points: [number, number][], extra: Partial<MethodRun> = {}) =>
    curveRun(name, seed, 1, points, { steps: 2, lr: 3e-3, ...extra })
  const runs: MethodRun[] = [
    run('scratch', 0, [
      [0, 5],
      [50, 4],
      [100, 3],
    ]),
    run('scratch', 1, [
      [0, 5],
      [50, 4],
      [100, 3.1],
    ]),
    run('fast', 0, [
      [20, 3.5],
      [40, 3],
      [100, 2.5],
    ]),
    run('fast', 1, [
      [20, 3.5],
      [42, 3.1],
      [100, 2.5],
    ]),
    run('slow', 0, [
      [10, 4],
      [110, 3.2],
    ]),
    run('slow', 1, [
      [10, 4],
      [110, 3.2],
    ]),
    {
      ...run('nope', 0, [[0, 9]]),
      status: 'skipped',
      reason: 'cannot grow width',
      curve: [],
      finalValLoss: null,
    },
    run('moe', 0, [[5, 2]], { variantTarget: BUILTIN_SUITES.smoke.target as never }),
  ]

  it('renders report.md, results.json and the plots, and says what the seeds show', async () => {
    const out = mkdtempSync(join(dir, 'report-'))
    const suite = {
      ...resolveSuite(BUILTIN_SUITES.smoke, 'smoke'),
      seeds: 2,
      budgets: [1],
      scratchLrSweep: [1],
    }
    const src = { steps: 40, flops: 10, seconds: 9, valLoss: 3.1 }
    const results = await writeReport(out, suite, [src, src], runs)
    const md = readFileSync(join(out, 'report.md'), 'utf8')
    const rows = md.split('\n').filter((l) => /^\| (fast|slow) \| 100 %/.test(l))
    expect(rows.map((l) => l.split('|')[1].trim())).toEqual(['fast', 'slow'])
    // fast reaches scratch's 3.0 / 3.1 at 40 / 42 FLOPs against scratch's 100: 60 % and 58 %.
    expect(rows[0]).toMatch(/\| 59\.0 % ± 1\.4 \[/)
    expect(rows[0]).toMatch(/60\.0 \/ 58\.0/)
    expect(rows[1]).toMatch(/not reached/)
    expect(md).toMatch(/fast saves compute with 95 % confidence/)
    expect(md).toMatch(/slow: did not reach scratch's loss in every seed/)
    expect(md).toMatch(/\| moe \| .*variant with another target/)
    expect(md).toMatch(/\| nope \| skipped \| \| cannot grow width \|/)
    expect(md).toMatch(new RegExp(`${cpus().length} cores`))
    expect(md).toMatch(`backend \`${tf.getBackend()}\``)
    // Charging the source (10 FLOPs): 1 − 50/100 and 1 − 52/100.
    const fast = results.methods.find((m) => m.method === 'fast')!
    expect(fast.savings.includingSource.perSeed[0]).toBeCloseTo(0.5)
    expect(fast.savings.includingSource.perSeed[1]).toBeCloseTo(0.48)
    const svg = readFileSync(join(out, 'savings.svg'), 'utf8')
    expect(svg.startsWith('<svg')).toBe(true)
    expect(svg).toMatch(/fast/)
    const png = readFileSync(join(out, 'loss-vs-flops.png'))
    expect([...png.subarray(1, 4)].map((b) => String.fromCharCode(b)).join('')).toBe('PNG')
    const json = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
    expect(
      json.methods.find((m: { method: string }) => m.method === 'fast').savings.excludingSource.ci95,
    ).toHaveLength(2)
    expect(resultTable(results).join('\n')).toMatch(/nope +skipped: cannot grow width/)
  })
})
