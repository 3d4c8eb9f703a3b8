import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readSafetensors, skipUnless } from '@sprout/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pythonWith, runGuide, runPython, TORCH_REFERENCE } from './testing/guide-flow.js'

// docs/huggingface.md, run (testing/guide-flow.ts) and checked in plain PyTorch (interop's
// torch_reference.py, no `transformers`). The guide's own scripts need transformers, datasets and
// accelerate, which Debian does not ship: `npm run check:hf-examples -w @sprout/cli` runs them
// where they are installed (scripts/check-hf-examples.ts).
const torchPython = pythonWith('torch', 'numpy')

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
  beforeAll(() => runGuide(torchPython!, dir))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  const sproutLogits = () => {
    const t = readSafetensors(d('sprout-logits.safetensors')).tensors.get('logits')!
    return Float32Array.from(t.data as Float32Array)
  }

  it("plain PyTorch (no transformers) on the exported grown model gives Sprout's logits and the source's", () => {
    runPython(torchPython!, [
      TORCH_REFERENCE,
      'forward',
      d('gpt2-grown-hf'),
      d('tokens.json'),
      d('torch-grown.json'),
    ])
    runPython(torchPython!, [
      TORCH_REFERENCE,
      'forward',
      d('gpt2-hf'),
      d('tokens.json'),
      d('torch-source.json'),
    ])
    const grown = JSON.parse(readFileSync(d('torch-grown.json'), 'utf8'))
    const source = JSON.parse(readFileSync(d('torch-source.json'), 'utf8'))
    expect(grown.shape).toEqual(source.shape)
    // Exported weights run in PyTorch exactly as in Sprout...
    expect(maxAbsDiff(grown.logits, sproutLogits())).toBeLessThan(1e-4)
    // ...and, LEMON being lossless, exactly as the original Hugging Face model.
    expect(maxAbsDiff(grown.logits, source.logits)).toBeLessThan(1e-4)
  })
})
