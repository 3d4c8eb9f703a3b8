import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import lemon from '@sprout/lemon'
import stack from '@sprout/stack'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { runBenchCompare, runBenchReport } from './compare.js'
import { firstReach, lossAt, savings } from './savings.js'
import { BUILTIN_SUITES, loadSuite, resolveSuite } from './suites.js'

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
    variants: [],
  }

  it('runs scratch and methods, skips what cannot grow, writes every file, resumes and re-renders', async () => {
    const before = tf.memory().numTensors
    const suiteFile = join(dir, 'tiny.json')
    writeFileSync(suiteFile, JSON.stringify(suite))
    const out = join(dir, 'out')
    const c = capture()
    await runBenchCompare({ suite: suiteFile, out, json: true }, [lemon, stack], c.io)
    for (const f of [
      'results.json',
      'report.md',
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
    expect(c.err.join('\n')).toMatch(/stack: skipped/)
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
    expect(resumed.err.join('\n')).toMatch(/\[2\/3\] lemon\n/)
    writeFileSync(suiteFile, JSON.stringify({ ...suite, name: 'other' }))
    await expect(
      runBenchCompare({ suite: suiteFile, out, resume: true }, [lemon], capture().io),
    ).rejects.toThrow(/different suite/)
    rmSync(join(out, 'report.md'))
    await runBenchReport({ dir: out }, capture().io)
    expect(existsSync(join(out, 'report.md'))).toBe(true)
    await expect(
      runBenchCompare(
        { suite: 'smoke', methods: 'scratch,warp', out: join(dir, 'x') },
        [lemon],
        capture().io,
      ),
    ).rejects.toThrow(/"warp" is not available; choose from scratch, lemon, upcycle-4x/)
    expect(tf.memory().numTensors).toBe(before)
  })
})
