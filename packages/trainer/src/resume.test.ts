import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { runTrain } from './commands.js'
import { tinyDecoder } from './testing/specs.testutil.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../../..')
// The child process runs the built packages: `npm test` builds first (a plain `vitest run`
// without a build fails here, naming the fix, rather than skipping).
const built = existsSync(join(root, 'packages/trainer/dist/index.js'))
function requireBuild() {
  if (!built) throw new Error('these tests spawn the built @sprout/trainer: run `npm run build` first')
}
const dir = mkdtempSync(join(tmpdir(), 'sprout-resume-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const quiet = { out: () => {}, err: () => {} }

const losses = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; loss: number; valLoss: number | null })

function writeConfig(name: string, config: Record<string, unknown>): string {
  const path = join(dir, name)
  writeFileSync(path, JSON.stringify({ spec: tinyDecoder, batchSize: 2, evalBatches: 1, ...config }))
  return path
}

type Exit = { code: number | null; signal: NodeJS.Signals | null }

/** `sprout train` in a child process, once it has logged more than `lines` metrics rows. */
async function startedRun(
  config: string,
  out: string,
  lines: number,
): Promise<{ child: ChildProcess; exited: Promise<Exit> }> {
  // One process (node --import tsx), not the tsx CLI, which would run the script in a grandchild.
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(here, 'testing/train-driver.ts'), config, out],
    {
      cwd: root,
      stdio: 'ignore',
    },
  )
  // Listen before waiting, so an early exit is not missed.
  const exited = new Promise<Exit>((r) => child.on('exit', (code, signal) => r({ code, signal })))
  const metrics = join(out, 'metrics.jsonl')
  for (let i = 0; i < 1000; i++) {
    if (existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > lines) break
    await new Promise((r) => setTimeout(r, 20))
  }
  return { child, exited }
}

describe('kill and resume', () => {
  it('a run killed with SIGKILL and resumed reproduces the uninterrupted losses exactly', async () => {
    requireBuild()
    const steps = 120
    const config = writeConfig('run.json', {
      data: 'moby-dick',
      steps,
      evalEvery: 10,
      checkpointEvery: 5,
      schedule: { kind: 'cosine', warmupSteps: 5 },
    })
    const killed = join(dir, 'killed')
    const { child, exited } = await startedRun(config, killed, 23)
    child.kill('SIGKILL')
    expect((await exited).signal).toBe('SIGKILL')
    const atKill = losses(killed).at(-1)!.step
    expect(atKill).toBeGreaterThan(5)
    expect(atKill).toBeLessThan(steps)

    await runTrain({ resume: killed, progress: false }, quiet)
    const reference = join(dir, 'reference')
    await runTrain({ config, out: reference, progress: false }, quiet)
    const a = losses(killed)
    const b = losses(reference)
    expect(a.map((r) => r.step)).toEqual(b.map((r) => r.step))
    expect(a.map((r) => r.loss)).toEqual(b.map((r) => r.loss))
    expect(a.map((r) => r.valLoss)).toEqual(b.map((r) => r.valLoss))
  })

  it('Ctrl-C (SIGINT) stops after the current step and writes a checkpoint there', async () => {
    requireBuild()
    const config = writeConfig('run-int.json', { steps: 5000, evalEvery: 100 })
    const out = join(dir, 'interrupted')
    const { child, exited } = await startedRun(config, out, 10)
    child.kill('SIGINT')
    expect((await exited).code).toBe(0)
    const last = losses(out).at(-1)!.step
    expect(last).toBeLessThan(5000)
    const meta = JSON.parse(readFileSync(join(out, 'checkpoint', 'sprout.json'), 'utf8')).meta
    expect(meta.trainer.step).toBe(last)
  })
})
