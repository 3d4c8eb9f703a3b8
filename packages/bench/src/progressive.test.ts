import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exampleFlops, parseSpec } from '@sprout/core'
import lemon from '@sprout/lemon'
import stack from '@sprout/stack'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { runBenchCompare } from './compare.js'
import { sameComparison } from './layout.js'
import type { MethodRun } from './records.js'
import { BUILTIN_SUITES, resolveSuite } from './suites.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-progressive-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const quiet = { out: () => {}, err: () => {} }

const small = { family: 'decoder', vocabSize: 256, maxSeqLen: 8, dModel: 8, nLayers: 1, nHeads: 2, dFF: 16 }
const deep = { ...small, nLayers: 2 }
const target = { ...small, nLayers: 2, dModel: 16, nHeads: 4, dFF: 32 }
const suite = {
  name: 'tiny-progressive',
  data: 'moby-dick',
  batchSize: 2,
  seqLen: 8,
  source: small,
  target,
  sourceSteps: 2,
  targetSteps: 8,
  evalEvery: 2,
  evalBatches: 1,
  seeds: 1,
  budgets: [0.5, 1],
  scratchLrSweep: [1],
  progressive: [
    {
      name: 'prog',
      stages: [
        { at: 0.25, method: 'stack', target: deep },
        { at: 0.5, method: 'lemon', options: { noiseStd: 0 } },
      ],
    },
  ],
}

describe('progressive lines in a comparison', () => {
  it('train from scratch at the start spec, grow at fractions of each budget, and charge every FLOP', async () => {
    const before = tf.memory().numTensors
    const file = join(dir, 'suite.json')
    writeFileSync(file, JSON.stringify(suite))
    const out = join(dir, 'out')
    await runBenchCompare({ suite: file, out, methods: 'prog' }, [lemon, stack], quiet)
    expect(tf.memory().numTensors).toBe(before)
    const run = (key: string) =>
      JSON.parse(readFileSync(join(out, 'runs', `${key}.json`), 'utf8')) as MethodRun
    const half = run('s0-prog-b0.5')
    const full = run('s0-prog-b1')
    // Stages at 25 % and 50 % of 4 and of 8 steps.
    expect(half.stages!.map((s) => `${s.method}@${s.step}`)).toEqual(['stack@1', 'lemon@2'])
    expect(full.stages!.map((s) => `${s.method}@${s.step}`)).toEqual(['stack@2', 'lemon@4'])
    // Every FLOP: 2 steps at 1L d8, 2 at 2L d8, 4 at the target (core's training FLOPs of an
    // example of 8 tokens, batch 2), plus the growths' own FLOPs.
    const perStep = (raw: typeof small) => exampleFlops(parseSpec(raw), 8).total * 2
    const trained = 2 * perStep(small) + 2 * perStep(deep) + 4 * perStep(target)
    const growth = full.stages!.reduce((n, s) => n + s.growthFlops, 0)
    expect(full.growthFlops).toBe(growth)
    expect(full.curve.at(-1)!.flops).toBeCloseTo(trained + growth, -2)
    const scratch = run('s0-scratch-b1-lr1')
    expect(full.curve.at(-1)!.flops).toBeLessThan(scratch.curve.at(-1)!.flops)
    // No source: the two accountings are the same number.
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
    const prog = results.methods.find((m: { method: string }) => m.method === 'prog')
    for (const b of prog.byBudget) expect(b.savings.includingSource).toEqual(b.savings.excludingSource)
    // The report says what each method implements, from the operators' meta.
    expect(Object.keys(results.papers).sort()).toEqual(['lemon', 'stack'])
    expect(results.papers.lemon.displayName).toBe(lemon.meta!.displayName)
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain(
      `**${lemon.meta!.displayName}** (\`lemon\`): ${lemon.meta!.papers[0].title}`,
    )
  })

  it('a recorded comparison accepts added lines and learning rates but not changed ones', () => {
    const before = resolveSuite(suite)
    const added = resolveSuite({ ...suite, variants: [{ name: 'lemon-exact', method: 'lemon' }] })
    expect(sameComparison(before, added)).toBe(true)
    const moved = resolveSuite({
      ...suite,
      progressive: [{ ...suite.progressive[0], stages: [{ at: 0.5, method: 'lemon' }] }],
    })
    expect(sameComparison(before, moved)).toBe(false)
    expect(sameComparison(before, resolveSuite({ ...suite, targetSteps: 9 }))).toBe(false)
    // Scratch's learning-rate sweep may widen, not lose a rate it ran.
    const sweep = before.scratchLrSweep
    expect(sameComparison(before, resolveSuite({ ...suite, scratchLrSweep: [0.125, ...sweep] }))).toBe(true)
    expect(sameComparison(before, resolveSuite({ ...suite, scratchLrSweep: [...sweep.slice(1), 8] }))).toBe(
      false,
    )
  })

  it('refuses a last stage that does not reach the target, and duplicate names', async () => {
    expect(() =>
      resolveSuite({
        ...suite,
        progressive: [{ name: 'p', stages: [{ at: 0.5, method: 'stack', target: deep }] }],
      }),
    ).toThrow(/progressive\.0 \(p\): the last stage must grow into the suite's target/)
    const file = join(dir, 'dup.json')
    writeFileSync(file, JSON.stringify({ ...suite, variants: [{ name: 'prog', method: 'lemon' }] }))
    await expect(
      runBenchCompare({ suite: file, out: join(dir, 'dup') }, [lemon, stack], quiet),
    ).rejects.toThrow(/two lines are named "prog"/)
  })

  it('the built-in suites with progressive lines and LLM recipes resolve', () => {
    for (const name of ['quick', 'text']) {
      const s = resolveSuite(BUILTIN_SUITES[name], name)
      expect(s.progressive.map((p) => p.name)).toEqual(['prog-lemon', 'prog-stack', 'prog-gstack'])
      expect(s.variants.map((v) => v.name)).toContain('hypercloning+block-expansion')
    }
  })
})
