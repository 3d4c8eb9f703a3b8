import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import lemon from '@sprout/lemon'
import stack from '@sprout/stack'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { type MethodRun, runBenchCompare, runBenchReport } from './compare.js'
import { summarise, writeReport } from './report.js'
import { firstReach, lossAt, savings } from './savings.js'
import { BUILTIN_SUITES, loadSuite, resolveSuite } from './suites.js'
import { runInWorkers } from './workers.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-bench-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const capture = () => {
  const out: string[] = []
  const err: string[] = []
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } }
}

describe('savings math', () => {
  const curve = [
    { flops: 10, seconds: 1, valLoss: 4 },
    { flops: 20, seconds: 2, valLoss: 3 },
    { flops: 40, seconds: 4, valLoss: 2 },
  ]
  it('interpolates where a curve first reaches the target', () => {
    expect(firstReach(curve, 3.5)).toEqual({ flops: 15, seconds: 1.5 })
    expect(firstReach(curve, 4.5)).toEqual({ flops: 10, seconds: 1 })
    expect(firstReach(curve, 2)).toEqual({ flops: 40, seconds: 4 })
    expect(firstReach(curve, 1.9)).toBeNull()
  })
  it('reads the loss at a FLOP count, and savings relative to scratch', () => {
    expect(lossAt(curve, 30)).toBeCloseTo(2.5)
    expect(lossAt(curve, 50)).toBeNull()
    expect(lossAt(curve, 5)).toBeNull()
    expect(savings(25, 100)).toBe(0.75)
    expect(savings(150, 100)).toBe(-0.5)
    expect(savings(null, 100)).toBeNull()
  })
})

describe('suites', () => {
  it('every built-in suite validates', () => {
    for (const name of Object.keys(BUILTIN_SUITES)) expect(loadSuite(name).name).toBe(name)
  })
  it('user suites are validated with errors naming the field', () => {
    const bad = { ...BUILTIN_SUITES.smoke, targetSteps: 0 }
    expect(() => resolveSuite(bad, 'my.json')).toThrow(/my.json.targetSteps/)
    expect(() =>
      resolveSuite(
        { ...BUILTIN_SUITES.smoke, target: { ...BUILTIN_SUITES.smoke.target, dModel: 65 } },
        'my.json',
      ),
    ).toThrow(/my.json.target: .*dModel 65 is not divisible by nHeads 4/)
    expect(() => resolveSuite({ ...BUILTIN_SUITES.smoke, colour: 'red' }, 'my.json')).toThrow(
      /unknown field\(s\) "colour"/,
    )
    expect(() => loadSuite('nope')).toThrow(
      /unknown suite "nope": choose smoke, quick, vit, paper or pass a suite JSON file/,
    )
  })
})

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
    variants: [] as unknown[],
  }
  suite.variants = [{ name: 'lemon-exact', method: 'lemon', target: suite.target, options: { noiseStd: 0 } }]

  it('runs scratch and methods, skips what cannot grow, writes every file, resumes and re-renders', async () => {
    const before = tf.memory().numTensors
    const suiteFile = join(dir, 'tiny.json')
    writeFileSync(suiteFile, JSON.stringify(suite))
    const out = join(dir, 'out')
    // Ctrl-C while scratch trains: nothing of scratch is kept, the source is.
    const cut = capture()
    const io = {
      out: cut.io.out,
      err: (l: string) => {
        cut.io.err(l)
        if (l.includes('scratch step 3/')) process.emit('SIGINT')
      },
    }
    await expect(runBenchCompare({ suite: suiteFile, out }, [lemon, stack], io)).rejects.toThrow(
      /interrupted; finished methods are saved in .*; continue with --resume/,
    )
    expect(existsSync(join(out, 'source', 'done.json'))).toBe(true)
    expect(existsSync(join(out, 'runs', 'scratch.json'))).toBe(false)
    expect(existsSync(join(out, 'report.md'))).toBe(false)
    const c = capture()
    await runBenchCompare({ suite: suiteFile, out, json: true, resume: true }, [lemon, stack], c.io)
    expect(c.err.join('\n')).toMatch(/reusing the pretrained source/)
    for (const f of [
      'results.json',
      'report.md',
      'machine.json',
      'loss-vs-flops.svg',
      'loss-vs-flops.png',
      'loss-vs-time.png',
      'savings.svg',
      'metrics/scratch.jsonl',
      'metrics/lemon.jsonl',
    ])
      expect(existsSync(join(out, f)), f).toBe(true)
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
    const byName = Object.fromEntries(results.methods.map((m: { name: string }) => [m.name, m]))
    expect(byName.scratch.savings).toBe(0)
    expect(byName.stack.status).toBe('skipped')
    expect(byName.stack.reason).toMatch(/dModel differs/)
    expect(byName.lemon.growthFlops).toBeGreaterThan(0)
    // Same target as the suite: measured like a method, not flagged as a variant.
    expect(byName['lemon-exact'].variant).toBe(false)
    expect(byName['lemon-exact'].finalValLoss).not.toBe(byName.lemon.finalValLoss)
    expect(cut.err.join('\n')).toMatch(/stack: skipped: stack grows depth only/)
    expect(JSON.parse(c.out.at(-1)!).suite).toBe('tiny')
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toMatch(/\| lemon \|/)

    const again = capture()
    await expect(runBenchCompare({ suite: suiteFile, out }, [lemon, stack], again.io)).rejects.toThrow(
      /pass --resume/,
    )
    rmSync(join(out, 'runs', 'lemon.json'))
    const resumed = capture()
    await runBenchCompare({ suite: suiteFile, out, resume: true }, [lemon, stack], resumed.io)
    expect(resumed.err.join('\n')).toMatch(/scratch: done earlier, kept/)
    expect(resumed.err.join('\n')).toMatch(/reusing the pretrained source/)
    expect(resumed.err.join('\n')).toMatch(/\[1\/1\] lemon\n/)
    expect(resumed.err.join('\n')).not.toMatch(/scratch step/)
    writeFileSync(suiteFile, JSON.stringify({ ...suite, name: 'other' }))
    await expect(
      runBenchCompare({ suite: suiteFile, out, resume: true }, [lemon], capture().io),
    ).rejects.toThrow(/different suite/)
    rmSync(join(out, 'report.md'))
    await runBenchReport({ dir: out }, capture().io)
    const started = JSON.parse(readFileSync(join(out, 'machine.json'), 'utf8')).date
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain(`started ${started}`)
    await expect(
      runBenchCompare(
        { suite: 'smoke', methods: 'scratch,warp', out: join(dir, 'x') },
        [lemon],
        capture().io,
      ),
    ).rejects.toThrow(/"warp" is not available; choose from scratch, lemon, upcycle-4x, stack-2x/)
    writeFileSync(suiteFile, JSON.stringify({ ...suite, methods: { lemon: { noiseStd: -1 } } }))
    await expect(
      runBenchCompare({ suite: suiteFile, out: join(dir, 'y') }, [lemon], capture().io),
    ).rejects.toThrow(/suite tiny: methods.lemon: method "lemon": option noiseStd/)
    expect(existsSync(join(dir, 'x'))).toBe(false)
    expect(existsSync(join(dir, 'y'))).toBe(false)
    expect(tf.memory().numTensors).toBe(before)
  })
  it('--jobs trains the methods in worker processes and reproduces the in-process losses', async () => {
    const suiteFile = join(dir, 'tiny-jobs.json')
    writeFileSync(suiteFile, JSON.stringify(suite))
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
    expect(c.err.join('\n')).toMatch(/\[lemon\] +lemon step 6\/6/)
    const parallel = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
    const serial = JSON.parse(readFileSync(join(dir, 'out', 'results.json'), 'utf8'))
    const loss = (r: { methods: { name: string; finalValLoss: number }[] }, n: string) =>
      r.methods.find((m) => m.name === n)!.finalValLoss
    expect(loss(parallel, 'scratch')).toBe(loss(serial, 'scratch'))
    expect(loss(parallel, 'lemon')).toBe(loss(serial, 'lemon'))
    await expect(
      runBenchCompare({ suite: suiteFile, out: join(dir, 'j0'), jobs: 0 }, [lemon], capture().io),
    ).rejects.toThrow(/--jobs must be a positive integer \(got 0\)/)
    expect(existsSync(join(dir, 'j0'))).toBe(false)
  }, 30_000)
})

describe('report', () => {
  const run = (name: string, points: [number, number][], extra: Partial<MethodRun> = {}): MethodRun => ({
    name,
    method: name,
    status: 'done',
    growthFlops: points[0][0],
    growthSeconds: 0,
    curve: points.map(([flops, valLoss], step) => ({ step, flops, seconds: flops / 10, valLoss })),
    finalValLoss: points.at(-1)![1],
    schedule: 'suite',
    ...extra,
  })
  const runs: MethodRun[] = [
    run('scratch', [
      [0, 5],
      [50, 4],
      [100, 3],
    ]),
    run('slow', [
      [10, 4],
      [110, 3.2],
    ]),
    run('fast', [
      [20, 3.5],
      [40, 3],
      [100, 2.5],
    ]),
    {
      ...run('nope', [[0, 9]]),
      status: 'skipped',
      reason: 'cannot grow width',
      curve: [],
      finalValLoss: null,
    },
    run('moe', [[5, 2]], { variantTarget: BUILTIN_SUITES.smoke.target as never }),
  ]

  it('measures every method against scratch and sorts by savings', () => {
    const r = summarise('t', { steps: 1, flops: 1, seconds: 1, valLoss: 3 }, runs)
    expect(r.target).toBe(3)
    expect(r.methods.map((m) => m.name)).toEqual(['fast', 'scratch', 'slow', 'moe', 'nope'])
    const fast = r.methods[0]
    expect(fast.flopsToTarget).toBe(40)
    expect(fast.secondsToTarget).toBe(4)
    expect(fast.savings).toBeCloseTo(0.6)
    expect(fast.lossAtEqualFlops).toBe(2.5)
    expect(fast.growthFlops).toBe(20)
    const slow = r.methods[2]
    expect(slow.savings).toBeNull()
    expect(slow.lossAtEqualFlops).toBeCloseTo(3.28)
    expect(r.methods[3].savings).toBeNull()
    expect(r.table.join('\n')).toMatch(/slow +savings +not reached/)
    expect(r.table.join('\n')).toMatch(/nope +skipped: cannot grow width/)
  })

  it('measures scratch to its first arrival at its final loss; no savings if it never improved', () => {
    const bumpy = [
      run('scratch', [
        [0, 5],
        [50, 2.5],
        [100, 3],
      ]),
      run('m', [
        [0, 4],
        [20, 3],
        [100, 2],
      ]),
    ]
    const r = summarise('t', { steps: 1, flops: 1, seconds: 1, valLoss: 3 }, bumpy)
    expect(r.methods.find((m) => m.name === 'scratch')!.flopsToTarget).toBe(40)
    expect(r.methods.find((m) => m.name === 'scratch')!.savings).toBe(0)
    expect(r.methods.find((m) => m.name === 'm')!.savings).toBeCloseTo(0.5)
    const flat = [
      run('scratch', [
        [0, 2.3],
        [100, 2.35],
      ]),
      run('m', [
        [0, 2.4],
        [100, 2.2],
      ]),
    ]
    const f = summarise('t', { steps: 1, flops: 1, seconds: 1, valLoss: 3 }, flat)
    expect(f.methods.every((m) => m.savings === null)).toBe(true)
    expect(f.table.join('\n')).toMatch(/scratch never improved on its initial loss/)
    expect(f.table.join('\n')).toMatch(/ m +savings +undefined/)
  })

  it('renders report.md, results.json and the plots', async () => {
    const out = mkdtempSync(join(dir, 'report-'))
    const suite = resolveSuite(BUILTIN_SUITES.smoke, 'smoke')
    await writeReport(out, suite, { steps: 40, flops: 1e9, seconds: 9, valLoss: 3.1 }, runs)
    const md = readFileSync(join(out, 'report.md'), 'utf8')
    const rows = md.split('\n').filter((l) => /^\| (fast|scratch|slow|moe|nope) \|/.test(l))
    expect(rows.map((l) => l.split('|')[1].trim())).toEqual(['fast', 'scratch', 'slow', 'moe', 'nope'])
    expect(rows[0]).toMatch(/\*\*60\.0%\*\*/)
    expect(rows[2]).toMatch(/not reached/)
    expect(rows[3]).toMatch(/variant with another target/)
    expect(md).toMatch(new RegExp(`${cpus().length} cores`))
    expect(md).toMatch(`backend \`${tf.getBackend()}\``)
    const svg = readFileSync(join(out, 'savings.svg'), 'utf8')
    expect(svg.startsWith('<svg')).toBe(true)
    expect(svg).toMatch(/fast/)
    const png = readFileSync(join(out, 'loss-vs-flops.png'))
    expect([...png.subarray(1, 4)].map((b) => String.fromCharCode(b)).join('')).toBe('PNG')
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
    expect(results.methods[0]).toMatchObject({ name: 'fast', flopsToTarget: 40 })
  })
})

describe('workers', () => {
  it('a stop reaches a worker whose loop never yields, and it exits cleanly', async () => {
    const stopFile = join(dir, 'STOP')
    const lines: string[] = []
    let stop = false
    const progress = {
      startRun() {},
      step() {},
      endRun() {},
      log: (l: string) => {
        lines.push(l)
        if (l === '[busy] ready') stop = true
      },
      stop() {},
    }
    const script = fileURLToPath(new URL('./testing/busy-worker.ts', import.meta.url))
    const failed = await runInWorkers(
      ['busy'],
      1,
      { script, args: [stopFile], execArgv: ['--import', 'tsx'] },
      progress,
      () => stop,
      stopFile,
    )
    expect(failed).toEqual([])
    expect(lines).toContain('[busy] stopped')
    expect(existsSync(stopFile)).toBe(false)
  }, 20_000)
})
