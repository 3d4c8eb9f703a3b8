import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { disposeModel, SeededRandom, SproutError, setRuntimeLimits } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { importHuggingFace } from './hf.js'

const FIXTURES = join(import.meta.dirname, '../fixtures/hf')
const tmp = mkdtempSync(join(tmpdir(), 'sprout-hf-fuzz-'))
afterAll(() => {
  setRuntimeLimits({})
  rmSync(tmp, { recursive: true, force: true })
})

const rng = new SeededRandom(21)
const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]
const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => rng.int(256))

/** The four malformed headers the issue reports, then random mutations. */
function corrupt(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes)
  const view = new DataView(out.buffer)
  switch (rng.int(7)) {
    case 0:
      return new Uint8Array(0)
    case 1: // header length beyond the file
      view.setBigUint64(0, BigInt(out.length + 1 + rng.int(1000)), true)
      return out
    case 2: // not JSON
      out[8 + rng.int(Math.min(40, out.length - 8))] = pick([0x00, 0x7b, 0x22, 0xff, 0x5d])
      return out
    case 3:
      return randomBytes(rng.int(200))
    case 4: // truncated anywhere
      return out.subarray(0, rng.int(out.length))
    case 5: // any bytes of the header overwritten
      for (let k = 1 + rng.int(3); k > 0; k--) out[rng.int(Math.min(out.length, 300))] = rng.int(256)
      return out
    default: // a data byte set to all-ones: a NaN in F32 (0xff in the exponent's top byte), or a valid value
      out[out.length - 1 - rng.int(64)] = 0xff
      return out
  }
}

describe('Hugging Face import under fuzzing', () => {
  it('turns 300 corrupted directories (single file and shards) into one-line SproutErrors, never an internal error', () => {
    setRuntimeLimits({ memoryLimit: 2 ** 30 })
    const base = tf.memory().numTensors
    let refused = 0
    for (let i = 0; i < 300; i++) {
      const fixture = pick(['gpt2', 'gpt2-legacy-f16', 'llama-gqa-bf16-sharded', 'bert'])
      const dir = join(tmp, `case-${i}`)
      cpSync(join(FIXTURES, fixture), dir, { recursive: true })
      const files = readdirSync(dir).filter(
        (f) => f.endsWith('.safetensors') || (rng.int(4) === 0 && f.endsWith('.json')),
      )
      const victim = pick(files)
      const bytes = readFileSync(join(dir, victim))
      writeFileSync(
        join(dir, victim),
        victim.endsWith('.json') ? bytes.subarray(0, rng.int(bytes.length)) : corrupt(bytes),
      )
      try {
        disposeModel(importHuggingFace(dir).model)
      } catch (e) {
        if (!(e instanceof SproutError))
          throw new Error(`case ${i} (${fixture}/${victim}): ${String(e)} is not a SproutError`)
        expect(e.message).not.toContain('\n')
        refused++
      }
      rmSync(dir, { recursive: true, force: true })
    }
    expect(refused).toBeGreaterThan(250)
    expect(tf.memory().numTensors).toBe(base)
  })
})
