/**
 * Speed and peak memory of reading, loading and writing a real-size checkpoint.
 *   npx sprout init --spec packages/core/bench/gpt2-small.json --out /tmp/gpt2s   # 124M parameters, 498 MB
 *   npx tsx packages/core/bench/safetensors-io.ts /tmp/gpt2s
 * Each operation runs in its own process so its peak RSS (getrusage maxrss) is its own;
 * "baseline" is the RSS of a process that only imported @sprout/core and tfjs.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  disposeModel,
  loadCheckpoint,
  paramTable,
  readCheckpointInfo,
  readSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from '../src/index.js'

const [dir, mode] = process.argv.slice(2)
if (!dir) throw new Error('usage: safetensors-io.ts CHECKPOINT_DIR')
const weights = join(dir, 'model.safetensors')
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`

function once(op: string): void {
  const start = performance.now()
  if (op === 'read') readSafetensors(weights)
  else if (op === 'load') disposeModel(loadCheckpoint(dir).model)
  else if (op === 'write') {
    // Tensors of the checkpoint's shapes made in memory (not read: reading's peak would hide writing's).
    const tensors = new Map<string, TensorToWrite>()
    for (const p of paramTable(readCheckpointInfo(dir).spec)) {
      const data = new Float32Array(p.shape.reduce((a, b) => a * b, 1))
      for (let i = 0; i < data.length; i++) data[i] = (i % 1000) * 1e-3
      tensors.set(p.name, { dtype: 'float32', shape: p.shape, data })
    }
    const out = mkdtempSync(join(tmpdir(), 'sprout-st-bench-'))
    const before = process.resourceUsage().maxRSS * 1024
    const s = performance.now()
    writeSafetensors(join(out, 'model.safetensors'), tensors)
    const seconds = (performance.now() - s) / 1000
    rmSync(out, { recursive: true, force: true })
    // Writing is timed alone; its extra memory is the peak above the tensors it writes.
    console.log(JSON.stringify({ seconds, peak: process.resourceUsage().maxRSS * 1024, before }))
    return
  }
  const seconds = (performance.now() - start) / 1000
  console.log(JSON.stringify({ seconds, peak: process.resourceUsage().maxRSS * 1024 }))
}

if (mode) {
  if (mode === 'baseline') console.log(JSON.stringify({ peak: process.resourceUsage().maxRSS * 1024 }))
  else once(mode)
} else {
  const run = (op: string) =>
    JSON.parse(
      execFileSync(process.execPath, [...process.execArgv, process.argv[1], dir, op], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .pop()!,
    ) as { seconds: number; peak: number; before?: number }
  const base = run('baseline').peak
  console.log(`${weights}: ${mb(statSync(weights).size)}; baseline RSS ${mb(base)}`)
  for (const op of ['read', 'load', 'write']) {
    const r = run(op)
    const extra = r.before === undefined ? r.peak - base : r.peak - r.before
    console.log(
      `${op.padEnd(5)} ${r.seconds.toFixed(2)} s, peak RSS ${mb(r.peak)} (+${mb(extra)} over ${r.before === undefined ? 'baseline' : 'the tensors it writes'})`,
    )
  }
}
