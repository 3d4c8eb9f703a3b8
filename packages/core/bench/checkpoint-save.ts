/**
 * Seconds per saveCheckpoint of a 23.2 M-parameter decoder (93 MB of float32 weights): a first
 * write, then three replacements (the atomic swap of output-dir.ts), on the folder given (default:
 * a temporary folder under the current directory, so it is on the disk you run from).
 *
 *   npx tsx packages/core/bench/checkpoint-save.ts [parent-folder]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { countParams, disposeModel, initModel, parseSpec, saveCheckpoint } from '../src/index.js'

await tf.setBackend('cpu')
const spec = parseSpec({
  family: 'decoder',
  vocabSize: 8192,
  maxSeqLen: 256,
  dModel: 512,
  nLayers: 6,
  nHeads: 8,
  dFF: 2048,
})
const model = initModel(spec, 1)
const dir = mkdtempSync(join(process.argv[2] ?? process.cwd(), '.checkpoint-save-'))
const seconds: number[] = []
try {
  for (let i = 0; i < 4; i++) {
    const t = performance.now()
    await saveCheckpoint(join(dir, 'ckpt'), model, { meta: { i } })
    seconds.push((performance.now() - t) / 1000)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
  disposeModel(model)
}
console.log(
  `${countParams(spec).toLocaleString('en-US')} parameters; seconds per save (first, then 3 replacements): ${seconds.map((s) => s.toFixed(2)).join(' ')}; load average ${loadavg()[0].toFixed(1)}`,
)
