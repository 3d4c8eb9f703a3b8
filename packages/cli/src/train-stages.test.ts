import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { type Io, main } from './index.js'

// `sprout train --config` with growth stages, methods resolved by the CLI's own resolver.

const dir = mkdtempSync(join(tmpdir(), 'sprout-cli-stages-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const small = { family: 'decoder', vocabSize: 256, maxSeqLen: 8, dModel: 16, nLayers: 1, nHeads: 2, dFF: 32 }

async function run(...argv: string[]) {
  const stdout: string[] = []
  const stderr: string[] = []
  const io: Io = { out: (l) => stdout.push(l), err: (l) => stderr.push(l) }
  const code = await main(['--backend', 'cpu', ...argv], io)
  return { code, stdout, stderr }
}

function config(name: string, stages: unknown[]): string {
  writeFileSync(join(dir, 'two.json'), JSON.stringify({ ...small, nLayers: 2 }))
  const path = join(dir, name)
  writeFileSync(
    path,
    JSON.stringify({ spec: small, batchSize: 2, steps: 12, evalEvery: 4, evalBatches: 1, stages }),
  )
  return path
}

describe('sprout train --config with stages', () => {
  it('stack then lemon: trains, grows twice, ends with the final spec', async () => {
    const cfg = config('ok.json', [
      { atStep: 4, method: 'stack', target: 'two.json' },
      { atStep: 8, method: 'lemon', target: { ...small, nLayers: 4, dModel: 32, nHeads: 4, dFF: 64 } },
    ])
    const out = join(dir, 'ok')
    const r = await run('train', '--config', cfg, '--out', out, '--json')
    expect(r.code).toBe(0)
    const summary = JSON.parse(r.stdout.at(-1)!)
    expect([summary.step, summary.stage, summary.spec.nLayers, summary.spec.dModel]).toEqual([12, 2, 4, 32])
    const stages = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).stages
    expect(stages.map((s: { method: string; step: number }) => `${s.method}@${s.step}`)).toEqual([
      'stack@4',
      'lemon@8',
    ])
  })

  it('a bad stage: one line naming it, exit 1, nothing written', async () => {
    const cfg = config('bad.json', [{ atStep: 4, method: 'stack', target: { ...small, dModel: 32 } }])
    const out = join(dir, 'bad')
    const r = await run('train', '--config', cfg, '--out', out)
    expect(r.code).toBe(1)
    expect(r.stderr.join('\n')).toMatch(/stage 1 \(stack\): stack grows depth only/)
    expect(existsSync(out)).toBe(false)
  })
})
