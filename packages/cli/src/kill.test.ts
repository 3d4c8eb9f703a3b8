import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { canMountTmpfs, disposeModel, loadCheckpoint, skipUnless } from '@sprout/core'
import { importHuggingFace } from '@sprout/interop'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXIT, main } from './main.js'
import { tinyDecoder, twoLayers } from './testing/stages.testutil.js'

// SIGKILL `sprout grow`, `grow --force`, `convert --to hf` (and --force) and `train` at each step
// of their output writes (core's SPROUT_TEST_HOOK), then check: the output does not exist or is
// complete and loadable, a plain re-run succeeds without manual cleanup, and nothing hidden is
// left beside it. The killed commands are child processes running the built packages.

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../../..')
const built = ['packages/core', 'packages/trainer', 'packages/interop', 'packages/bench'].every((p) =>
  existsSync(join(root, p, 'dist/index.js')),
)
function requireBuild() {
  if (!built) throw new Error('these tests spawn the built packages: run `npm run build` first')
}
const dir = mkdtempSync(join(tmpdir(), 'sprout-kill-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

type Exit = { code: number | null; signal: NodeJS.Signals | null; stderr: string; pid: number }

/** `sprout ARGS` in a child process; `hook` is SPROUT_TEST_HOOK (e.g. "hidden:kill"). */
function child(args: string[], hook = ''): { pid: number; exited: Promise<Exit> } {
  const p = spawn(process.execPath, ['--import', 'tsx', join(here, 'testing/cli-driver.ts'), ...args], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SPROUT_TEST_HOOK: hook },
  })
  let stderr = ''
  p.stderr!.on('data', (d) => {
    stderr += d
  })
  const exited = new Promise<Exit>((r) =>
    p.on('exit', (code, signal) => r({ code, signal, stderr, pid: p.pid! })),
  )
  return { pid: p.pid!, exited }
}

/** `sprout ARGS` in this process. */
async function sprout(args: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await main(['--backend', 'cpu', ...args], {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
  })
  return { code, out, err }
}

/** Hidden entries (temporary, moved-aside, lock) beside an output: must be none after a re-run. */
const debris = (out: string) => readdirSync(dirname(out)).filter((n) => n.startsWith('.'))

function checkpointAbsentOrComplete(out: string): boolean {
  if (!existsSync(out)) return false
  const { model, state } = loadCheckpoint(out)
  disposeModel(model)
  if (state) tf.dispose(Object.values(state))
  return true
}

function hfAbsentOrComplete(out: string): boolean {
  if (!existsSync(out)) return false
  expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors'])
  disposeModel(importHuggingFace(out).model)
  return true
}

const source = join(dir, 'source')
const target = join(dir, 'target.json')
beforeAll(async () => {
  writeFileSync(join(dir, 'spec.json'), JSON.stringify(tinyDecoder))
  writeFileSync(target, JSON.stringify(twoLayers))
  expect((await sprout(['init', '--spec', join(dir, 'spec.json'), '--out', source])).code).toBe(0)
})

const grow = (out: string, ...extra: string[]) => [
  'grow',
  '--method',
  'stack',
  '--from',
  source,
  '--target',
  target,
  '--out',
  out,
  ...extra,
]
const toHf = (out: string, ...extra: string[]) => [
  'convert',
  '--to',
  'hf',
  '--in',
  source,
  '--out',
  out,
  ...extra,
]

// Where a kill leaves the output: absent before a first write is in place; the old one while
// replacing, until the new one takes its name (between the two renames the name is empty and the
// next command restores the old one).
const cases: {
  name: string
  args: (out: string, ...extra: string[]) => string[]
  ok: (out: string) => boolean
}[] = [
  { name: 'grow', args: grow, ok: checkpointAbsentOrComplete },
  { name: 'convert --to hf', args: toHf, ok: hfAbsentOrComplete },
]

describe('SIGKILL at each step of an output write', () => {
  for (const c of cases) {
    for (const point of ['locked', 'written', 'ready', 'placed'])
      it(`${c.name} killed at "${point}": absent or complete; a plain re-run succeeds, nothing left over`, async () => {
        requireBuild()
        const out = join(dir, `${c.name.replace(/\W+/g, '-')}-${point}`, 'out')
        mkdirSync(dirname(out), { recursive: true })
        const killed = await child(c.args(out), `${point}:kill`).exited
        expect(killed.signal).toBe('SIGKILL')
        const exists = c.ok(out)
        expect(exists).toBe(point === 'placed')
        const again = await sprout(c.args(out, ...(exists ? ['--force'] : [])))
        expect(again.code).toBe(EXIT.ok)
        expect(again.err.filter((l) => l.includes('recovered') || l.includes('took over'))).toHaveLength(1)
        expect(c.ok(out)).toBe(true)
        expect(debris(out)).toEqual([])
      })
    for (const point of ['written', 'ready', 'hidden', 'placed', 'cleaned'])
      it(`${c.name} --force killed at "${point}": old or new complete; a re-run succeeds, nothing left over`, async () => {
        requireBuild()
        const out = join(dir, `${c.name.replace(/\W+/g, '-')}-force-${point}`, 'out')
        mkdirSync(dirname(out), { recursive: true })
        expect((await sprout(c.args(out))).code).toBe(EXIT.ok)
        const killed = await child(c.args(out, '--force'), `${point}:kill`).exited
        expect(killed.signal).toBe('SIGKILL')
        // Between the two renames of the swap the name is empty; any reader or writer puts it back.
        expect(c.ok(out)).toBe(point !== 'hidden')
        const again = await sprout(c.args(out, '--force'))
        expect(again.code).toBe(EXIT.ok)
        const notes = again.err.filter((l) => l.includes('recovered') || l.includes('took over'))
        expect(notes).toEqual([
          expect.stringMatching(
            /out: (recovered from an interrupted write: )?took over the lock of process \d+/,
          ),
        ])
        if (point === 'hidden') expect(notes[0]).toMatch(/restored the previous version/)
        expect(c.ok(out)).toBe(true)
        expect(debris(out)).toEqual([])
      })
  }

  it('a reader of a checkpoint killed mid-swap finds the previous version', async () => {
    requireBuild()
    const out = join(dir, 'reader', 'out')
    mkdirSync(dirname(out), { recursive: true })
    expect((await sprout(grow(out))).code).toBe(EXIT.ok)
    expect((await child(grow(out, '--force'), 'hidden:kill').exited).signal).toBe('SIGKILL')
    expect(existsSync(out)).toBe(false)
    const evalRun = await sprout(['convert', '--to', 'hf', '--in', out, '--out', join(dir, 'reader', 'hf')])
    expect(evalRun.code).toBe(EXIT.ok)
    expect(checkpointAbsentOrComplete(out)).toBe(true)
    expect(debris(out)).toEqual([])
  })
})

const trainConfig = (name: string, steps: number, checkpointEvery: number, evalEvery = 5) => {
  const path = join(dir, `${name}.json`)
  writeFileSync(
    path,
    JSON.stringify({
      spec: tinyDecoder,
      data: 'moby-dick',
      batchSize: 2,
      steps,
      evalEvery,
      evalBatches: 1,
      checkpointEvery,
      optimizer: { kind: 'adamw', lr: 0.003 },
    }),
  )
  return path
}
const trainedStep = (out: string) =>
  JSON.parse(readFileSync(join(out, 'checkpoint', 'sprout.json'), 'utf8')).meta.trainer.step as number

describe('training runs killed at any point can be resumed or restarted', () => {
  it('killed before its first checkpoint: --config into its folder restarts it, and so does --resume', async () => {
    requireBuild()
    const config = trainConfig('early', 10, 5)
    for (const how of ['config', 'resume'] as const) {
      const out = join(dir, `early-${how}`, 'run')
      mkdirSync(dirname(out), { recursive: true })
      const killed = await child(['train', '--config', config, '--out', out], 'written:kill').exited
      expect(killed.signal).toBe('SIGKILL')
      expect(existsSync(join(out, 'run.json'))).toBe(true)
      expect(existsSync(join(out, 'checkpoint'))).toBe(false)
      const again = await sprout(
        how === 'config' ? ['train', '--config', config, '--out', out] : ['train', '--resume', out],
      )
      expect(again.code).toBe(EXIT.ok)
      expect(again.err.join('\n')).toMatch(
        how === 'config'
          ? /holds a run that stopped before its first checkpoint: starting it again/
          : /has no checkpoint yet .*restarting it from step 0 with its recorded config/,
      )
      expect(trainedStep(out)).toBe(10)
      const rows = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')
      expect(rows.map((r) => JSON.parse(r).step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      expect(readdirSync(out).sort()).toEqual(['checkpoint', 'metrics.jsonl', 'run.json'])
      expect(debris(out)).toEqual([])
    }
  })

  it('killed between the renames of a checkpoint swap: --resume recovers the hidden checkpoint', async () => {
    requireBuild()
    const config = trainConfig('swap', 12, 4)
    const out = join(dir, 'swap', 'run')
    mkdirSync(dirname(out), { recursive: true })
    // The second checkpoint (step 8) replaces the first (step 4): killed with step 4 moved aside.
    const killed = await child(['train', '--config', config, '--out', out], 'hidden:kill').exited
    expect(killed.signal).toBe('SIGKILL')
    expect(existsSync(join(out, 'checkpoint'))).toBe(false)
    expect(readdirSync(out).some((n) => n.startsWith('.checkpoint.old-'))).toBe(true)
    const resumed = await sprout(['train', '--resume', out])
    expect(resumed.code).toBe(EXIT.ok)
    const log = resumed.err.join('\n')
    expect(log).toMatch(/checkpoint: recovered from an interrupted write: .*restored the previous version/)
    expect(log).toMatch(/resuming .* at step 4/)
    expect(trainedStep(out)).toBe(12)
    expect(readdirSync(out).sort()).toEqual(['checkpoint', 'metrics.jsonl', 'run.json'])
    expect(debris(out)).toEqual([])
  })

  it('two runs into one --out: exactly one trains, the other exits 1 naming its PID', async () => {
    requireBuild()
    const config = trainConfig('race', 400, 100, 100)
    const out = join(dir, 'race', 'run')
    mkdirSync(dirname(out), { recursive: true })
    const a = child(['train', '--config', config, '--out', out])
    const b = child(['train', '--config', config, '--out', out])
    const [ra, rb] = await Promise.all([a.exited, b.exited])
    const [winner, loser] = ra.code === 0 ? [ra, rb] : [rb, ra]
    expect(winner.code).toBe(0)
    expect(loser.code).toBe(EXIT.error)
    const lines = loser.stderr.split('\n').filter((l) => l.startsWith('sprout: error'))
    expect(lines).toEqual([
      expect.stringMatching(
        new RegExp(`^sprout: error: .*run is being written by process ${winner.pid} \\(lock `),
      ),
    ])
    expect(trainedStep(out)).toBe(400)
    const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((r) => JSON.parse(r).step)
    expect(steps).toEqual(Array.from({ length: 400 }, (_, i) => i + 1))
    expect(debris(out)).toEqual([])
  })

  it('a writer stopped while holding the lock blocks a second grow; killed, its lock is taken over', async () => {
    requireBuild()
    const out = join(dir, 'stopped', 'out')
    mkdirSync(dirname(out), { recursive: true })
    const first = child(grow(out), 'written:stop')
    // Wait until it has stopped itself with its temporary folder written.
    for (let i = 0; i < 1500 && !readdirSync(dirname(out)).some((n) => n.startsWith('.out.tmp-')); i++)
      await new Promise((r) => setTimeout(r, 20))
    const second = await sprout(grow(out))
    expect(second.code).toBe(EXIT.error)
    expect(second.err.filter((l) => l.startsWith('sprout: error'))).toEqual([
      expect.stringMatching(
        new RegExp(`^sprout: error: .*out is being written by process ${first.pid} \\(lock `),
      ),
    ])
    process.kill(first.pid, 'SIGKILL')
    expect((await first.exited).signal).toBe('SIGKILL')
    const third = await sprout(grow(out))
    expect(third.code).toBe(EXIT.ok)
    expect(third.err.join('\n')).toMatch(
      new RegExp(
        `took over the lock of process ${first.pid}, which is no longer running; removed the unfinished write`,
      ),
    )
    expect(checkpointAbsentOrComplete(out)).toBe(true)
    expect(debris(out)).toEqual([])
  })
})

// A real read-only and a real full file system need a tmpfs mount (root); skipped elsewhere.
const canMount = !skipUnless(canMountTmpfs(), 'root and tmpfs mounts (CI runs the tests as root)')

describe('file-system errors are one line naming the path and the cause, exit 1', () => {
  it.skipIf(!canMount)('read-only and full file systems (tmpfs mounts)', async () => {
    for (const [opts, args, cause] of [
      [
        'ro,size=64k',
        (m: string) => grow(join(m, 'a', 'b')),
        /cannot write .*\/a\/b: the file system is read-only$/,
      ],
      [
        'size=16k',
        (m: string) => grow(join(m, 'grown')),
        /cannot write .*\/grown: no space left on the device \(disk full\)$/,
      ],
      [
        'size=16k',
        (m: string) => toHf(join(m, 'hf')),
        /cannot write .*\/hf: no space left on the device \(disk full\)$/,
      ],
    ] as const) {
      const mnt = mkdtempSync(join(tmpdir(), 'sprout-mnt-'))
      execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', mnt])
      try {
        const r = await sprout(args(mnt))
        expect(r.code).toBe(EXIT.error)
        expect(r.err.filter((l) => l.startsWith('sprout: error'))).toEqual([expect.stringMatching(cause)])
        expect(readdirSync(mnt)).toEqual([])
      } finally {
        execFileSync('umount', [mnt])
        rmSync(mnt, { recursive: true, force: true })
      }
    }
  })
})
