/**
 * HyperCloning at real size, end to end through the CLI: a GPT-2-small-shaped Hugging Face
 * checkpoint (12 layers, d768, vocabulary 50257, random weights) is imported, cloned to d1536
 * (heads 12 -> 24, FFN 3072 -> 6144: n = 2) and exported back to Hugging Face. Each step runs as
 * its own child process under /usr/bin/time, which reports its wall time and peak RSS.
 *
 *   npm run build && npx tsx plugins/hypercloning/bench/real-size.ts [layers=12] [n=2] [noise]
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { countParams, parseSpec, SeededRandom, serializeSafetensors, type TensorToWrite } from '@sprout/core'

const L = Number(process.argv[2] ?? 12)
const n = Number(process.argv[3] ?? 2)
const noise = process.argv[4]
const V = 50257
const P = 1024
const D = 768
const here = dirname(fileURLToPath(import.meta.url))
const cli = join(here, '../../../packages/cli/dist/bin.js')

function writeGpt2(dir: string): void {
  const rng = new SeededRandom(1)
  const t = new Map<string, TensorToWrite>()
  const put = (name: string, shape: number[]) => {
    const size = shape.reduce((a, b) => a * b, 1)
    const data = new Float32Array(size)
    for (let i = 0; i < size; i++) data[i] = (rng.uniform() - 0.5) * 0.1
    t.set(name, { dtype: 'float32', shape, data })
  }
  put('transformer.wte.weight', [V, D])
  put('transformer.wpe.weight', [P, D])
  for (let l = 0; l < L; l++)
    for (const [name, shape] of [
      ['ln_1.weight', [D]],
      ['ln_1.bias', [D]],
      ['attn.c_attn.weight', [D, 3 * D]],
      ['attn.c_attn.bias', [3 * D]],
      ['attn.c_proj.weight', [D, D]],
      ['attn.c_proj.bias', [D]],
      ['ln_2.weight', [D]],
      ['ln_2.bias', [D]],
      ['mlp.c_fc.weight', [D, 4 * D]],
      ['mlp.c_fc.bias', [4 * D]],
      ['mlp.c_proj.weight', [4 * D, D]],
      ['mlp.c_proj.bias', [D]],
    ] as const)
      put(`transformer.h.${l}.${name}`, [...shape])
  put('transformer.ln_f.weight', [D])
  put('transformer.ln_f.bias', [D])
  mkdirSync(dir)
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['GPT2LMHeadModel'],
      n_embd: D,
      n_layer: L,
      n_head: 12,
      n_positions: P,
      vocab_size: V,
    }),
  )
  writeFileSync(join(dir, 'model.safetensors'), serializeSafetensors(t))
}

interface Step {
  label: string
  seconds: number
  /** User + system CPU seconds: on a shared machine the wall time mostly measures the load. */
  cpuSeconds: number
  peakGB: number
}

/** Runs the CLI in a child process under /usr/bin/time: wall seconds and max RSS. */
function step(label: string, args: string[], root: string): Step {
  const stats = join(root, 'time.txt')
  const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M', '-o', stats, process.execPath, cli, ...args], {
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}):\n${r.stdout}\n${r.stderr}`)
  const [seconds, user, system, kb] = readFileSync(stats, 'utf8').trim().split(/\s+/).slice(-4).map(Number)
  const s = { label, seconds, cpuSeconds: user + system, peakGB: (kb * 1024) / 1e9 }
  console.log(
    `${label}: ${s.seconds.toFixed(1)} s wall, ${s.cpuSeconds.toFixed(1)} s CPU, peak RSS ${s.peakGB.toFixed(2)} GB`,
  )
  console.log(`  ${r.stdout.trim().split('\n').slice(-3).join('\n  ')}`)
  return s
}

const root = mkdtempSync(join(tmpdir(), 'sprout-hypercloning-'))
try {
  const hf = join(root, 'gpt2-hf')
  writeGpt2(hf)
  console.log(
    `machine: ${cpus().length} cores, load average ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')} (other jobs share it)`,
  )
  const steps: Step[] = []
  steps.push(
    step('convert --from hf', ['convert', '--from', 'hf', '--in', hf, '--out', join(root, 'small')], root),
  )
  const small = parseSpec(JSON.parse(readFileSync(join(root, 'small', 'sprout.json'), 'utf8')).spec)
  const big = parseSpec({ ...small, dModel: small.dModel * n, nHeads: small.nHeads * n, dFF: small.dFF * n })
  writeFileSync(join(root, 'big.json'), JSON.stringify(big))
  const option = noise === undefined ? [] : ['--option', `noise=${noise}`]
  steps.push(
    step(
      `grow --method hypercloning (n=${n}${noise === undefined ? '' : `, noise ${noise} dB`})`,
      [
        'grow',
        '--method',
        'hypercloning',
        '--from',
        join(root, 'small'),
        '--target',
        join(root, 'big.json'),
        '--out',
        join(root, 'big'),
        ...option,
      ],
      root,
    ),
  )
  steps.push(
    step(
      'convert --to hf',
      ['convert', '--to', 'hf', '--in', join(root, 'big'), '--out', join(root, 'big-hf')],
      root,
    ),
  )
  const f32 = (spec: typeof small) => (countParams(spec) * 4) / 1e9
  const larger = f32(big)
  console.log(
    `\nsource ${countParams(small).toLocaleString()} params (${f32(small).toFixed(2)} GB f32), grown ${countParams(big).toLocaleString()} params (${larger.toFixed(2)} GB f32)`,
  )
  console.log('\n| step | time | peak RSS | × grown f32 size |\n| --- | --- | --- | --- |')
  for (const s of steps)
    console.log(
      `| \`${s.label}\` | ${s.seconds.toFixed(1)} s | ${s.peakGB.toFixed(2)} GB | ${(s.peakGB / larger).toFixed(2)}× |`,
    )
  console.log(
    `load average after: ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  )
} finally {
  rmSync(root, { recursive: true, force: true })
}
