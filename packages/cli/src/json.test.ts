import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXIT, type Io, main } from './index.js'
import { tinySuite } from './testing/suite.testutil.js'

// `--json` promises one JSON document on stdout and nothing else, for results and for errors.
// Every command is run with it and ALL of its stdout is parsed (not "the last line").
const dir = mkdtempSync(join(tmpdir(), 'sprout-json-'))
const here = dirname(fileURLToPath(import.meta.url))
const spec = { family: 'decoder', vocabSize: 256, maxSeqLen: 16, dModel: 16, nLayers: 1, nHeads: 2, dFF: 32 }
const specPath = join(dir, 'spec.json')
const wide = join(dir, 'wide.json')
const src = join(dir, 'src')

async function run(...argv: string[]) {
  const stdout: string[] = []
  const stderr: string[] = []
  const io: Io = { out: (l) => stdout.push(l), err: (l) => stderr.push(l) }
  const code = await main(['--backend', 'cpu', ...argv], io)
  const text = stdout.join('\n')
  let doc: any
  try {
    doc = JSON.parse(text)
  } catch {
    throw new Error(`stdout of \`sprout ${argv.join(' ')}\` is not one JSON document:\n${text}`)
  }
  return { code, doc, stdout, stderr }
}

beforeAll(async () => {
  writeFileSync(specPath, JSON.stringify(spec))
  writeFileSync(wide, JSON.stringify({ ...spec, dModel: 32, nHeads: 4, dFF: 64 }))
  expect((await run('init', '--spec', specPath, '--out', src, '--json')).code).toBe(0)
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('--json prints exactly one JSON document on stdout', () => {
  it('init, grow, list, doctor', async () => {
    const init = await run('init', '--spec', specPath, '--out', join(dir, 'i2'), '--json')
    expect(init.doc).toMatchObject({ out: join(dir, 'i2'), parameters: expect.any(Number), seed: 1 })
    // The human line went to stderr instead.
    expect(init.stderr.join('\n')).toMatch(/^initialised /m)

    const before = tf.memory().numTensors
    const grow = await run(
      'grow',
      '--method',
      'lemon',
      '--from',
      src,
      '--target',
      wide,
      '--out',
      join(dir, 'g'),
      '--verify',
      '--json',
    )
    expect(grow.code).toBe(0)
    expect(grow.doc).toMatchObject({ method: 'lemon', out: join(dir, 'g') })
    expect(grow.doc.maxAbsLogitDiff).toBeLessThan(1e-4)
    expect(grow.stderr.join('\n')).toMatch(/^grew /m)
    expect(tf.memory().numTensors).toBe(before)

    const list = await run('list', '--json')
    expect(list.doc.map((m: { name: string }) => m.name)).toContain('lemon')

    const doctor = await run('doctor', '--json')
    expect(doctor.doc.backend.name).toBe('cpu') // --backend cpu forces it
    expect(doctor.doc.node.version).toBe(process.version)
  })

  it('train, eval, convert (both ways), forward', async () => {
    const cfg = join(dir, 'run.json')
    writeFileSync(
      cfg,
      JSON.stringify({
        spec: specPath,
        data: 'moby-dick',
        batchSize: 2,
        seqLen: 8,
        steps: 2,
        evalEvery: 2,
        evalBatches: 1,
      }),
    )
    const train = await run('train', '--config', cfg, '--out', join(dir, 'run'), '--json')
    expect(train.code).toBe(0)
    expect(train.doc).toMatchObject({ step: 2, trainLoss: expect.any(Number) })
    const ev = await run('eval', '--checkpoint', src, '--data', 'moby-dick', '--batches', '1', '--json')
    expect(ev.doc).toMatchObject({ valLoss: expect.any(Number), perplexity: expect.any(Number) })

    const hf = join(dir, 'hf')
    expect((await run('convert', '--to', 'hf', '--in', src, '--out', hf, '--json')).doc).toMatchObject({
      direction: 'to-hf',
      out: hf,
    })
    const back = await run('convert', '--from', 'hf', '--in', hf, '--out', join(dir, 'back'), '--json')
    expect(back.code).toBe(0)
    expect(back.doc.out).toBe(join(dir, 'back'))

    const tokens = join(dir, 'tokens.json')
    writeFileSync(tokens, JSON.stringify([[1, 2, 3]]))
    const fwd = await run(
      'forward',
      '--checkpoint',
      src,
      '--tokens',
      tokens,
      '--out',
      join(dir, 'l.safetensors'),
      '--json',
    )
    expect(fwd.doc).toEqual({ out: join(dir, 'l.safetensors'), shape: [1, 3, 256] })
  })

  it('bench compare and bench throughput', async () => {
    const suite = join(dir, 'suite.json')
    writeFileSync(suite, JSON.stringify(tinySuite))
    const cmp = await run(
      'bench',
      'compare',
      '--suite',
      suite,
      '--methods',
      'scratch,lemon',
      '--out',
      join(dir, 'cmp'),
      '--json',
    )
    expect(cmp.code).toBe(0)
    expect(cmp.doc.suite).toBe('tiny')
    // results.json: the grown methods, and scratch (the baseline) on its own.
    expect(cmp.doc.methods.map((m: { method: string }) => m.method)).toEqual(['lemon'])
    expect(cmp.doc.scratch.byBudget.map((b: { budget: number }) => b.budget)).toEqual([0.25, 0.5, 1])
    const tp = await run(
      'bench',
      'throughput',
      '--layers',
      '1',
      '--d-model',
      '16',
      '--seq-len',
      '8',
      '--batch',
      '2',
      '--steps',
      '1',
      '--json',
    )
    expect(tp.doc).toMatchObject({ backend: 'cpu', tokensPerSecond: expect.any(Number) })
  })

  it.each([
    [['grow', '--from', 'x', '--json'], EXIT.usage, 'USAGE', /required option '--method/],
    [['list', '--json', '--bogus'], EXIT.usage, 'USAGE', /unknown option '--bogus'/],
    [['bench', 'report', 'x', '--json'], EXIT.usage, 'USAGE', /unknown option '--json'/],
    [
      ['init', '--spec', 'nope.json', '--out', 'x', '--json'],
      EXIT.error,
      'INPUT_INVALID',
      /spec file nope.json does not exist/,
    ],
    [
      ['eval', '--checkpoint', 'nowhere', '--data', 'moby-dick', '--json'],
      EXIT.error,
      'CHECKPOINT_NOT_FOUND',
      /nowhere/,
    ],
    [['bench', 'compare', '--suite', 'nosuch', '--json'], EXIT.usage, 'USAGE', /nosuch/],
  ])('error %j: exit %i and {"error": {code, message}}', async (args, exit, code, message) => {
    const r = await run(...args)
    expect(r.code).toBe(exit)
    expect(Object.keys(r.doc)).toEqual(['error'])
    expect(r.doc.error.code).toEqual(code)
    expect(r.doc.error.message).toMatch(message)
    expect(r.doc.error.message).not.toMatch(/\n/)
  })

  it('an unknown --backend is a usage error (exit 2), a JSON error too', async () => {
    const stdout: string[] = []
    const code = await main(
      ['--backend', 'warp', 'init', '--spec', specPath, '--out', join(dir, 'w'), '--json'],
      {
        out: (l) => stdout.push(l),
        err: () => {},
      },
    )
    expect(code).toBe(EXIT.usage)
    expect(JSON.parse(stdout.join('\n')).error).toMatchObject({
      code: 'USAGE',
      message: expect.stringMatching(/unknown backend "warp"/),
    })
  })

  it('the built binary: real stdout is one JSON document, progress and notes on stderr (skipped until built)', () => {
    const bin = resolve(here, '../bin/sprout.js')
    if (!existsSync(resolve(here, '../dist/bin.js'))) {
      console.log('skipping: packages/cli/dist/bin.js not built (npm test builds it first)')
      return
    }
    const env = { ...process.env, SPROUT_BACKEND: 'cpu' }
    const ok = spawnSync(
      process.execPath,
      [bin, 'init', '--spec', specPath, '--out', join(dir, 'bin-init'), '--json'],
      { encoding: 'utf8', env },
    )
    expect(ok.status).toBe(0)
    expect(JSON.parse(ok.stdout).out).toBe(join(dir, 'bin-init'))
    expect(ok.stderr).toMatch(/sprout: backend: cpu/)
    const bad = spawnSync(
      process.execPath,
      [bin, 'init', '--spec', specPath, '--out', join(dir, 'bin-init'), '--json'],
      { encoding: 'utf8', env },
    )
    expect(bad.status).toBe(1)
    expect(JSON.parse(bad.stdout).error.code).toBe('IO')
    expect(bad.stderr).toMatch(/^sprout: error: --out .* already holds a checkpoint/m)
    const version = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8' })
    expect(version.stdout.trim()).toBe(
      JSON.parse(readFileSync(resolve(here, '../package.json'), 'utf8')).version,
    )
  })
})
