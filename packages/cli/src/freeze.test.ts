import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { disposeModel, loadCheckpoint, type Params, skipUnless } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Io, main } from './index.js'

// LLaMA Pro's recipe end to end: grow with block expansion, then train with "freeze": ["source"].
const dir = mkdtempSync(join(tmpdir(), 'sprout-freeze-cli-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const here = dirname(fileURLToPath(import.meta.url))
const bin = resolve(here, '../dist/bin.js')
const small = { family: 'decoder', vocabSize: 256, maxSeqLen: 16, dModel: 16, nLayers: 2, nHeads: 2, dFF: 32 }

async function run(...argv: string[]) {
  const stdout: string[] = []
  const stderr: string[] = []
  const io: Io = { out: (l) => stdout.push(l), err: (l) => stderr.push(l) }
  const code = await main(['--backend', 'cpu', ...argv], io)
  return { code, stdout, stderr: stderr.join('\n') }
}

function config(name: string, extra: Record<string, unknown>): string {
  const path = join(dir, name)
  writeFileSync(
    path,
    JSON.stringify({
      from: 'grown',
      batchSize: 2,
      seqLen: 8,
      evalEvery: 2,
      evalBatches: 1,
      steps: 4,
      ...extra,
    }),
  )
  return path
}

function weights(checkpoint: string): Record<string, number[]> {
  const { model, state } = loadCheckpoint(checkpoint)
  const out = Object.fromEntries(Object.entries(model.params).map(([n, t]) => [n, Array.from(t.dataSync())]))
  disposeModel(model)
  if (state) tf.dispose(Object.values(state as Params))
  return out
}

const inserted = (name: string) => /^layers\.(1|3)\./.test(name) // every=1: copies at 1 and 3

beforeAll(async () => {
  writeFileSync(join(dir, 'small.json'), JSON.stringify(small))
  writeFileSync(join(dir, 'deep.json'), JSON.stringify({ ...small, nLayers: 4 }))
  expect(
    (await run('init', '--spec', join(dir, 'small.json'), '--seed', '3', '--out', join(dir, 'src'))).code,
  ).toBe(0)
  const g = await run(
    'grow',
    '--method',
    'block-expansion',
    '--option',
    'every=1',
    '--from',
    join(dir, 'src'),
    '--target',
    join(dir, 'deep.json'),
    '--out',
    join(dir, 'grown'),
    '--verify',
    '--json',
  )
  expect(g.code, g.stderr).toBe(0)
  expect(JSON.parse(g.stdout.at(-1)!).maxAbsLogitDiff).toBe(0)
})

describe('block expansion + "freeze": ["source"]', () => {
  it('the grown checkpoint records exactly the inserted blocks as new', () => {
    const meta = JSON.parse(readFileSync(join(dir, 'grown', 'sprout.json'), 'utf8')).meta
    const names = Object.keys(weights(join(dir, 'grown')))
    expect([...meta.newParams].sort()).toEqual(names.filter(inserted).sort())
  })

  it('training changes only the new blocks: source weights stay bit-identical after N steps', async () => {
    const before = weights(join(dir, 'grown'))
    const out = join(dir, 'frozen')
    const r = await run('train', '--config', config('frozen.json', { freeze: ['source'] }), '--out', out)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/frozen: \d+ of \d+ parameters \(source\)/)
    const after = weights(join(out, 'checkpoint'))
    for (const [n, v] of Object.entries(before))
      if (inserted(n)) {
        if (/\.(weight)$/.test(n)) expect(after[n], n).not.toEqual(v)
      } else expect(after[n], n).toEqual(v)
    // The optimizer keeps moments for the new blocks only.
    const ckpt = loadCheckpoint(join(out, 'checkpoint'))
    const state = Object.keys(ckpt.state ?? {})
    disposeModel(ckpt.model)
    if (ckpt.state) tf.dispose(Object.values(ckpt.state))
    expect(state.length).toBeGreaterThan(0)
    expect(state.every((s) => inserted(s.replace(/^[mv]\./, '')))).toBe(true)
  })

  it('resumes a frozen run exactly: same losses as uninterrupted, source still untouched', async () => {
    const straight = join(dir, 'straight')
    // A constant schedule: the split run plans 2 steps, then 4, so a decaying one would differ.
    const cfg = config('resume.json', {
      freeze: ['source'],
      checkpointEvery: 2,
      schedule: { kind: 'constant' },
    })
    expect((await run('train', '--config', cfg, '--out', straight)).code).toBe(0)
    const split = join(dir, 'split')
    expect((await run('train', '--config', cfg, '--out', split, '--steps', '2')).code).toBe(0)
    const more = await run('train', '--resume', split, '--steps', '4')
    expect(more.code, more.stderr).toBe(0)
    const losses = (d: string) =>
      readFileSync(join(d, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).loss)
    expect(losses(split)).toEqual(losses(straight))
    const grown = weights(join(dir, 'grown'))
    const after = weights(join(split, 'checkpoint'))
    for (const n of Object.keys(grown).filter((n) => !inserted(n))) expect(after[n], n).toEqual(grown[n])
  })

  it('"source" on a checkpoint that does not record new parameters is an error naming the fix; nothing written', async () => {
    writeFileSync(join(dir, 'scratch.json'), JSON.stringify({ from: 'src', freeze: ['source'], steps: 1 }))
    const out = join(dir, 'no-record')
    const r = await run('train', '--config', join(dir, 'scratch.json'), '--out', out)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(
      /"source" needs the checkpoint to record which parameters are new.*block-expansion/,
    )
    expect(existsSync(out)).toBe(false)
  })

  it('a pattern that matches nothing is an error naming it; nothing written', async () => {
    const out = join(dir, 'typo')
    const r = await run(
      'train',
      '--config',
      config('typo.json', { freeze: ['layers.*.atn.*'] }),
      '--out',
      out,
    )
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/"layers\.\*\.atn\.\*" matches no parameter/)
    expect(existsSync(out)).toBe(false)
  })

  it.skipIf(skipUnless(existsSync(bin), 'the built sprout binary (npm run build)'))(
    'native backend (fused AdamW): source weights stay bit-identical',
    () => {
      const out = join(dir, 'native')
      const r = spawnSync(
        process.execPath,
        [
          bin,
          '--backend',
          'native',
          'train',
          '--config',
          config('native.json', { freeze: ['source'] }),
          '--out',
          out,
        ],
        { encoding: 'utf8' },
      )
      expect(r.status, r.stderr).toBe(0)
      expect(r.stderr).toMatch(/native/)
      const before = weights(join(dir, 'grown'))
      const after = weights(join(out, 'checkpoint'))
      let changed = 0
      for (const [n, v] of Object.entries(before))
        if (!inserted(n)) expect(after[n], n).toEqual(v)
        else if (JSON.stringify(after[n]) !== JSON.stringify(v)) changed++
      expect(changed).toBeGreaterThan(0)
    },
  )
})
