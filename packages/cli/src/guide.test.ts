import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { readSafetensors, skipUnless } from '@sprout/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Io, main } from './index.js'

// docs/huggingface.md, run: a Hugging Face GPT-2 comes in, grows with LEMON, goes back out and
// is checked in PyTorch. The plain-PyTorch check (interop's torch_reference.py, no
// `transformers`) runs wherever python3 has torch; the guide's own scripts run where their
// Python dependencies are installed, and say why they are skipped otherwise (transformers,
// datasets and accelerate are not in Debian's archive, so CI cannot run those two).
const root = resolve(import.meta.dirname, '../../..')
const REFERENCE = join(root, 'packages/interop/fixtures/torch_reference.py')
const COMPARE = join(root, 'docs/examples/compare_logits.py')
const TRAIN = join(root, 'docs/examples/continue_training.py')

function pythonWith(...modules: string[]): string | null {
  for (const py of [process.env.SPROUT_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[]) {
    const r = spawnSync(py, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8' })
    if (r.status === 0) return py
  }
  return null
}

const torchPython = pythonWith('torch', 'numpy')
const comparePython = pythonWith('torch', 'safetensors', 'transformers')
const trainPython = pythonWith('torch', 'transformers', 'datasets', 'accelerate')
for (const [py, what] of [
  [
    torchPython,
    'the plain-PyTorch check of the guide: no python3 with torch and numpy (Debian: python3-torch)',
  ],
  [comparePython, 'docs/examples/compare_logits.py: no python3 with torch, safetensors and transformers'],
  [
    trainPython,
    'docs/examples/continue_training.py: no python3 with torch, transformers, datasets and accelerate',
  ],
] as const)
  if (!py) console.log(`skipping ${what}`)

async function sprout(...argv: string[]): Promise<unknown> {
  const stdout: string[] = []
  const stderr: string[] = []
  const io: Io = { out: (l) => stdout.push(l), err: (l) => stderr.push(l) }
  const code = await main(['--backend', 'cpu', ...argv, '--json'], io)
  if (code !== 0) throw new Error(`sprout ${argv.join(' ')} exited ${code}: ${stderr.join('\n')}`)
  return JSON.parse(stdout.join('\n'))
}

function run(py: string, args: string[]) {
  const r = spawnSync(py, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${py} ${args.join(' ')} failed:\n${r.stderr}`)
  return r.stdout
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

describe.skipIf(
  skipUnless(torchPython !== null, 'python3 with torch and numpy (apt-get install python3-torch)'),
)('docs/huggingface.md end to end', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sprout-guide-'))
  const d = (f: string) => join(dir, f)
  let tokens: number[][]
  beforeAll(async () => {
    // 1. Bring a model in: a random GPT2LMHeadModel in the Hub layout, written by PyTorch.
    run(torchPython!, [REFERENCE, 'make', 'gpt2', d('gpt2-hf')])
    tokens = JSON.parse(readFileSync(d('gpt2-hf/reference.json'), 'utf8')).inputs
    writeFileSync(d('tokens.json'), JSON.stringify(tokens))
    await sprout('convert', '--from', 'hf', '--in', d('gpt2-hf'), '--out', d('gpt2-sprout'))
    // 2. Grow it (twice the width and depth, LEMON: lossless), 3. export it, run it in Sprout.
    const spec = JSON.parse(readFileSync(d('gpt2-sprout/sprout.json'), 'utf8')).spec
    writeFileSync(
      d('target.json'),
      JSON.stringify({
        ...spec,
        dModel: spec.dModel * 2,
        nHeads: spec.nHeads * 2,
        nLayers: spec.nLayers * 2,
        dFF: spec.dFF * 2,
      }),
    )
    await sprout(
      'grow',
      '--method',
      'lemon',
      '--from',
      d('gpt2-sprout'),
      '--target',
      d('target.json'),
      '--out',
      d('gpt2-grown'),
      '--verify',
    )
    await sprout('convert', '--to', 'hf', '--in', d('gpt2-grown'), '--out', d('gpt2-grown-hf'))
    await sprout(
      'forward',
      '--checkpoint',
      d('gpt2-grown'),
      '--tokens',
      d('tokens.json'),
      '--out',
      d('sprout-logits.safetensors'),
    )
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  const sproutLogits = () => {
    const t = readSafetensors(d('sprout-logits.safetensors')).tensors.get('logits')!
    return Float32Array.from(t.data as Float32Array)
  }

  it("plain PyTorch (no transformers) on the exported grown model gives Sprout's logits and the source's", () => {
    run(torchPython!, [REFERENCE, 'forward', d('gpt2-grown-hf'), d('tokens.json'), d('torch-grown.json')])
    run(torchPython!, [REFERENCE, 'forward', d('gpt2-hf'), d('tokens.json'), d('torch-source.json')])
    const grown = JSON.parse(readFileSync(d('torch-grown.json'), 'utf8'))
    const source = JSON.parse(readFileSync(d('torch-source.json'), 'utf8'))
    expect(grown.shape).toEqual(source.shape)
    // Exported weights run in PyTorch exactly as in Sprout...
    expect(maxAbsDiff(grown.logits, sproutLogits())).toBeLessThan(1e-4)
    // ...and, LEMON being lossless, exactly as the original Hugging Face model.
    expect(maxAbsDiff(grown.logits, source.logits)).toBeLessThan(1e-4)
  })

  it.skipIf(!comparePython)('docs/examples/compare_logits.py (transformers) agrees', () => {
    const out = run(comparePython!, [
      COMPARE,
      d('gpt2-grown-hf'),
      d('tokens.json'),
      d('sprout-logits.safetensors'),
    ])
    const m = out.match(/max \|Δ logits\| = (\S+)/)
    expect(m, out).not.toBeNull()
    expect(Number(m![1])).toBeLessThan(1e-4)
  })

  // Training needs a tokenizer and a dataset from the Hub; offline, the script's imports and its
  // command line (every flag the guide's launch lines pass) are what can be checked.
  it.skipIf(!trainPython)("docs/examples/continue_training.py loads and accepts the guide's flags", () => {
    const help = run(trainPython!, [TRAIN, '--help'])
    for (const flag of [
      '--model',
      '--tokenizer',
      '--out',
      '--bf16',
      '--lr',
      '--schedule',
      '--max-steps',
      '--batch-size',
      '--seq-len',
      '--deepspeed',
      '--mlm',
    ])
      expect(help).toContain(flag)
  })
})
