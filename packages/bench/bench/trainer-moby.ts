/**
 * The "done when" measurement: train examples/moby-char.json (2-layer d=128 byte-level GPT on
 * Moby Dick) from scratch through `runTrain` — the code path of `sprout train` — and print the
 * validation loss at each evaluation next to the unigram entropy of the training bytes.
 *
 *   npx tsx packages/bench/bench/trainer-moby.ts [--steps N] [--backend cpu|native]
 *   (default: the config's 300 steps on the tfjs cpu backend; --out DIR keeps the run)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { describeBackend, initModel, parseSpec } from '@sprout/core'
import { openDataset } from '@sprout/data'
import { type MetricsRow, readRunConfig, runTrain } from '@sprout/trainer'
import { benchBackend } from './setup.js'

const here = dirname(fileURLToPath(import.meta.url))
const configPath = resolve(here, '../../../examples/moby-char.json')
const { values } = parseArgs({
  options: {
    steps: { type: 'string' },
    backend: { type: 'string', default: 'cpu' },
    out: { type: 'string' },
  },
})
console.log(describeBackend(await benchBackend(values.backend)))

const config = readRunConfig(configPath)
const spec = parseSpec(JSON.parse(readFileSync(config.spec as string, 'utf8')))
const probe = initModel(spec, 0)
const params = Object.values(probe.params).reduce((n, t) => n + t.size, 0)
const data = await openDataset(config.data, probe.spec, {
  batchSize: config.batchSize,
  seqLen: config.seqLen,
  seed: config.seed,
})
for (const t of Object.values(probe.params)) t.dispose()
const entropy = data.unigramEntropy!

const work = values.out ?? mkdtempSync(join(tmpdir(), 'sprout-moby-bench-'))
const out = values.out ?? join(work, 'run')
const lines: string[] = []
await runTrain(
  {
    config: configPath,
    out,
    steps: values.steps ? Number(values.steps) : undefined,
    json: true,
    progress: false,
  },
  { out: (l) => lines.push(l), err: (l) => console.error(l) },
)
const rows = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as MetricsRow)
if (!values.out) rmSync(work, { recursive: true, force: true })

console.log(`\n${data.describe}; ${params.toLocaleString('en-US')} parameters`)
console.log(
  `batch ${config.batchSize} x ${config.seqLen ?? spec.maxSeqLen} tokens, lr ${config.optimizer.lr}`,
)
console.log('| step | train loss | val loss | seconds |')
console.log('| --- | --- | --- | --- |')
for (const r of rows.filter((r) => r.valLoss !== null))
  console.log(`| ${r.step} | ${r.loss.toFixed(3)} | ${r.valLoss!.toFixed(3)} | ${r.seconds.toFixed(0)} |`)
const last = JSON.parse(lines.at(-1)!) as { valLoss: number; seconds: number; tokens: number }
console.log(`unigram entropy of the training bytes: ${entropy.toFixed(3)} nats/token`)
console.log(
  `final validation loss: ${last.valLoss.toFixed(3)} nats/token (${(entropy - last.valLoss).toFixed(3)} below the unigram entropy)`,
)
console.log(
  `throughput: ${(last.tokens / last.seconds).toFixed(0)} tokens/s over ${last.seconds.toFixed(0)} s`,
)
