/**
 * Real-size growth end to end, as a user runs it on a Hugging Face checkpoint, for every method
 * issue 17 names (LEMON, block expansion, depth up-scaling, HyperCloning) at GPT-2-small and
 * LLaMA (GQA) shapes: `sprout convert --from hf` → `sprout grow` → `sprout convert --to hf`, each
 * step a child process under /usr/bin/time, printing its wall time, CPU time and peak resident
 * memory (max RSS) next to the float32 size of the larger model. Random weights: a source is made
 * once with `sprout init` and exported with `sprout convert --to hf` (not measured).
 *
 *   npm run build   # the CLI in packages/cli/dist
 *   npx tsx packages/bench/bench/real-size.ts [--only gpt2-be,llama-hc] [--work /tmp/dir] [--keep] [--reuse]
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { countParams, parseSpec, specSummary } from '@sprout/core'

const root = resolve(import.meta.dirname, '../../..')
const bin = join(root, 'packages/cli/dist/bin.js')
const arg = (name: string) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const work = resolve(arg('--work') ?? '/tmp/sprout-real-size')
const only = arg('--only')?.split(',')
const keep = process.argv.includes('--keep')
// Reuse a source already imported into --work by an earlier run (its import is then not re-measured).
const reuse = process.argv.includes('--reuse')

const gpt2Small = {
  family: 'decoder',
  vocabSize: 50257,
  maxSeqLen: 1024,
  dModel: 768,
  nLayers: 12,
  nHeads: 12,
  dFF: 3072,
  activation: 'gelu_tanh',
  normEps: 1e-5,
}
// LLaMA-shaped: RMSNorm, SwiGLU, rotary, grouped-query attention (12 query heads, 4 key/value heads).
const llama = {
  family: 'decoder',
  vocabSize: 32000,
  maxSeqLen: 2048,
  dModel: 768,
  nLayers: 12,
  nHeads: 12,
  nKVHeads: 4,
  dFF: 2048,
  norm: 'rmsnorm',
  activation: 'swiglu',
  positional: 'rotary',
  ropeTheta: 10000,
  bias: false,
  tieEmbeddings: false,
  normEps: 1e-5,
}

interface Case {
  name: string
  source: 'gpt2' | 'llama'
  target: Record<string, unknown>
  method: string
  options: string[]
}
const sources = { gpt2: gpt2Small, llama }
const cases: Case[] = [
  {
    name: 'gpt2-be',
    source: 'gpt2',
    target: { ...gpt2Small, nLayers: 24 },
    method: 'block-expansion',
    options: ['every=1'],
  },
  // SOLAR's proportions (drop a quarter of the layers from each copy): 0-8 and 3-11 → 18 layers.
  {
    name: 'gpt2-dus',
    source: 'gpt2',
    target: { ...gpt2Small, nLayers: 18 },
    method: 'stack',
    options: ['layers=0-8,3-11'],
  },
  // HyperCloning n = 2: width, heads and FFN doubled, head size kept.
  {
    name: 'gpt2-hc',
    source: 'gpt2',
    target: { ...gpt2Small, dModel: 1536, nHeads: 24, dFF: 6144 },
    method: 'hypercloning',
    options: [],
  },
  {
    name: 'gpt2-lemon',
    source: 'gpt2',
    target: { ...gpt2Small, nLayers: 24, dModel: 1024, nHeads: 16, dFF: 4096, normEps: (1e-5 * 768) / 1024 },
    method: 'lemon',
    options: [],
  },
  // LLaMA Pro's proportion (one new block per 4 layers would give 15; every=2 gives 18).
  {
    name: 'llama-be',
    source: 'llama',
    target: { ...llama, nLayers: 18 },
    method: 'block-expansion',
    options: ['every=2'],
  },
  {
    name: 'llama-dus',
    source: 'llama',
    target: { ...llama, nLayers: 18 },
    method: 'stack',
    options: ['layers=0-8,3-11'],
  },
  // Query and key/value heads both doubled (12/4 → 24/8), so the GQA group size is kept.
  {
    name: 'llama-hc',
    source: 'llama',
    target: { ...llama, dModel: 1536, nHeads: 24, nKVHeads: 8, dFF: 4096 },
    method: 'hypercloning',
    options: ['noise=20'],
  },
  {
    name: 'llama-lemon',
    source: 'llama',
    target: { ...llama, nLayers: 24, dModel: 1024, nHeads: 16, nKVHeads: 4, dFF: 2816 },
    method: 'lemon',
    options: [],
  },
]

interface Measured {
  seconds: number
  /** User + system CPU seconds: on a shared machine the wall time mostly measures the load. */
  cpuSeconds: number
  maxRssMiB: number
}

/** Runs `sprout ...args` under /usr/bin/time; throws with its stderr if it fails. */
function sprout(args: string[]): Measured {
  const stats = join(work, 'time.txt')
  const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M', '-o', stats, process.execPath, bin, ...args], {
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(`sprout ${args.join(' ')} failed (${r.status}):\n${r.stderr}`)
  const [seconds, user, system, kb] = readFileSync(stats, 'utf8').trim().split(/\s+/).slice(-4).map(Number)
  return { seconds, cpuSeconds: user + system, maxRssMiB: kb / 1024 }
}

const mib = (spec: Record<string, unknown>) => (countParams(parseSpec(spec)) * 4) / 2 ** 20

if (!existsSync(bin)) throw new Error(`${bin} is missing: run npm run build first`)
mkdirSync(work, { recursive: true })
console.log(
  `machine: ${cpus().length} cores, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} at start`,
)
const rows: string[] = []
const imported = new Map<string, Measured>()
for (const c of cases.filter((c) => !only || only.includes(c.name))) {
  const src = sources[c.source]
  const hf = join(work, `${c.source}-hf`)
  const ckpt = join(work, `${c.source}-sprout`)
  if (!imported.has(c.source) && reuse && existsSync(join(ckpt, 'sprout.json')))
    imported.set(c.source, { seconds: Number.NaN, cpuSeconds: Number.NaN, maxRssMiB: Number.NaN })
  if (!imported.has(c.source)) {
    // Make the random source once and export it: the "Hugging Face checkpoint" users start from.
    const specPath = join(work, `${c.source}.json`)
    writeFileSync(specPath, JSON.stringify(src))
    for (const d of [hf, ckpt, join(work, `${c.source}-init`)]) rmSync(d, { recursive: true, force: true })
    sprout(['init', '--spec', specPath, '--seed', '1', '--out', join(work, `${c.source}-init`)])
    sprout(['convert', '--to', 'hf', '--in', join(work, `${c.source}-init`), '--out', hf])
    rmSync(join(work, `${c.source}-init`), { recursive: true, force: true })
    imported.set(c.source, sprout(['convert', '--from', 'hf', '--in', hf, '--out', ckpt]))
  }
  const targetPath = join(work, `${c.name}-target.json`)
  writeFileSync(targetPath, JSON.stringify(c.target))
  const grown = join(work, `${c.name}-grown`)
  const out = join(work, `${c.name}-hf`)
  for (const d of [grown, out]) rmSync(d, { recursive: true, force: true })
  const options = c.options.flatMap((o) => ['--option', o])
  const grow = sprout([
    'grow',
    '--method',
    c.method,
    ...options,
    '--from',
    ckpt,
    '--target',
    targetPath,
    '--out',
    grown,
  ])
  const exp = sprout(['convert', '--to', 'hf', '--in', grown, '--out', out])
  const larger = Math.max(mib(src), mib(c.target))
  const cell = (m: Measured) =>
    Number.isNaN(m.seconds)
      ? 'reused'
      : `${m.seconds.toFixed(1)} s (${m.cpuSeconds.toFixed(1)} s CPU) / ${m.maxRssMiB.toFixed(0)} MiB (${(m.maxRssMiB / larger).toFixed(2)}×)`
  const line = `| ${c.name} | ${specSummary(parseSpec(src))} → ${specSummary(parseSpec(c.target))} | ${c.method} ${c.options.join(' ')} | ${larger.toFixed(0)} MiB | ${cell(imported.get(c.source)!)} | ${cell(grow)} | ${cell(exp)} |`
  console.log(line)
  rows.push(line)
  if (!keep) for (const d of [grown, out]) rmSync(d, { recursive: true, force: true })
}
console.log(
  `load average at end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
)
console.log('\n| case | growth | method | larger model (f32) | convert --from hf | grow | convert --to hf |')
console.log('| --- | --- | --- | --- | --- | --- | --- |')
for (const r of rows) console.log(r)
console.log('\ncells: wall time (CPU time) / peak RSS (peak RSS ÷ the larger model’s float32 size)')
