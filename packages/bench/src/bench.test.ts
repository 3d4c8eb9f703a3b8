import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { firstReach, lossAt, savings } from './savings.js'
import { BUILTIN_SUITES, loadSuite, resolveSuite } from './suites.js'
import { runInWorkers } from './workers.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-bench-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

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
      /unknown suite "nope": choose smoke, quick, text, vit, paper or pass a suite JSON file/,
    )
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
