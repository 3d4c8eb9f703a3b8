import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { type Io, main } from '../index.js'

// docs/huggingface.md as code: a Hugging Face GPT-2 comes in, grows with LEMON and goes back out.
// Shared by guide.test.ts (checked in plain PyTorch) and scripts/check-hf-examples.ts (the guide's
// own `transformers` scripts, which need packages Debian does not ship).
export const repoRoot = resolve(import.meta.dirname, '../../../..')
export const TORCH_REFERENCE = join(repoRoot, 'packages/interop/fixtures/torch_reference.py')

/** The first python3 that imports every module, or null. */
export function pythonWith(...modules: string[]): string | null {
  for (const py of [process.env.SPROUT_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[]) {
    const r = spawnSync(py, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8' })
    if (r.status === 0) return py
  }
  return null
}

export function runPython(py: string, args: string[]): string {
  const r = spawnSync(py, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${py} ${args.join(' ')} failed:\n${r.stderr}`)
  return r.stdout
}

async function sprout(...argv: string[]): Promise<unknown> {
  const stdout: string[] = []
  const stderr: string[] = []
  const io: Io = { out: (l) => stdout.push(l), err: (l) => stderr.push(l) }
  const code = await main(['--backend', 'cpu', ...argv, '--json'], io)
  if (code !== 0) throw new Error(`sprout ${argv.join(' ')} exited ${code}: ${stderr.join('\n')}`)
  return JSON.parse(stdout.join('\n'))
}

/**
 * Runs the guide in `dir`: a random GPT2LMHeadModel in the Hub layout written by PyTorch
 * (gpt2-hf), imported (gpt2-sprout), grown to twice the width and depth with LEMON (gpt2-grown),
 * exported (gpt2-grown-hf), and run in Sprout on tokens.json (sprout-logits.safetensors).
 */
export async function runGuide(torchPython: string, dir: string): Promise<void> {
  const d = (f: string) => join(dir, f)
  runPython(torchPython, [TORCH_REFERENCE, 'make', 'gpt2', d('gpt2-hf')])
  const tokens = JSON.parse(readFileSync(d('gpt2-hf/reference.json'), 'utf8')).inputs
  writeFileSync(d('tokens.json'), JSON.stringify(tokens))
  await sprout('convert', '--from', 'hf', '--in', d('gpt2-hf'), '--out', d('gpt2-sprout'))
  const spec = JSON.parse(readFileSync(d('gpt2-sprout/sprout.json'), 'utf8')).spec
  const twice = {
    dModel: spec.dModel * 2,
    nHeads: spec.nHeads * 2,
    nLayers: spec.nLayers * 2,
    dFF: spec.dFF * 2,
  }
  writeFileSync(d('target.json'), JSON.stringify({ ...spec, ...twice }))
  const grown = d('gpt2-grown')
  await sprout(
    'grow',
    '--method',
    'lemon',
    '--from',
    d('gpt2-sprout'),
    '--target',
    d('target.json'),
    '--out',
    grown,
    '--verify',
  )
  await sprout('convert', '--to', 'hf', '--in', grown, '--out', d('gpt2-grown-hf'))
  await sprout(
    'forward',
    '--checkpoint',
    grown,
    '--tokens',
    d('tokens.json'),
    '--out',
    d('sprout-logits.safetensors'),
  )
}
