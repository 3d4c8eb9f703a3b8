/**
 * Runs the guide's two Python scripts (docs/huggingface.md) against a freshly grown model:
 * docs/examples/compare_logits.py loads the exported model with `transformers` and compares its
 * logits with Sprout's; docs/examples/continue_training.py must load and accept every flag the
 * guide's launch lines pass. They need transformers, safetensors, datasets and accelerate
 * (pip), which Debian does not ship, so the test suite checks the export in plain PyTorch instead
 * (src/guide.test.ts) and this script is run by hand where those packages are installed:
 *
 *   npm run build && npm run check:hf-examples -w @sprout/cli
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pythonWith, repoRoot, runGuide, runPython } from '../src/testing/guide-flow.js'

const py = pythonWith('torch', 'safetensors', 'transformers', 'datasets', 'accelerate')
if (!py) {
  console.error(
    'check-hf-examples: no python3 imports torch, safetensors, transformers, datasets and accelerate; install them (pip install transformers datasets accelerate safetensors) or set SPROUT_PYTHON',
  )
  process.exit(1)
}
const dir = mkdtempSync(join(tmpdir(), 'sprout-hf-examples-'))
const d = (f: string) => join(dir, f)
let failed = false
try {
  await runGuide(py, dir)
  const compare = runPython(py, [
    join(repoRoot, 'docs/examples/compare_logits.py'),
    d('gpt2-grown-hf'),
    d('tokens.json'),
    d('sprout-logits.safetensors'),
  ])
  const m = compare.match(/max \|Δ logits\| = (\S+)/)
  const diff = m ? Number(m[1]) : Number.NaN
  console.log(`compare_logits.py: max |Δ logits| = ${m ? m[1] : '(not printed)'}`)
  if (!(diff < 1e-4)) failed = true
  const help = runPython(py, [join(repoRoot, 'docs/examples/continue_training.py'), '--help'])
  // Every flag the guide's launch lines pass.
  const flags =
    '--model --tokenizer --out --bf16 --lr --schedule --max-steps --batch-size --seq-len --deepspeed --mlm'
  const missing = flags.split(' ').filter((f) => !help.includes(f))
  console.log(
    `continue_training.py --help: ${missing.length === 0 ? 'every guide flag accepted' : `missing ${missing.join(', ')}`}`,
  )
  if (missing.length > 0) failed = true
} finally {
  rmSync(dir, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
