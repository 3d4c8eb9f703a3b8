import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { SproutError } from './errors.js'
import { SeededRandom } from './random.js'
import { parseSafetensors, readSafetensors, serializeSafetensors } from './safetensors.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-st-fuzz-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const rng = new SeededRandom(2024)
const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]
const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => rng.int(256))

function validFile(): Uint8Array {
  return serializeSafetensors(
    {
      'a.weight': { dtype: 'float32', shape: [3, 4], data: rng.normals(12) },
      b: { dtype: 'int32', shape: [2], data: new Int32Array([5, -7]) },
      c: { dtype: 'float32', shape: [], data: new Float32Array([2]) },
    },
    { format: 'pt' },
    pick(['F32', 'F16', 'BF16'] as const),
  )
}

function withHeader(header: unknown, data: Uint8Array, declared?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header))
  const out = new Uint8Array(8 + json.length + data.length)
  new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(json.length), true)
  out.set(json, 8)
  out.set(data, 8 + json.length)
  return out
}

const WEIRD = [0, -1, 1.5, 2 ** 53, 2 ** 64, 1e300, Number.NaN, null, 'x', [], {}, true]
function randomEntry(): unknown {
  const r = rng.int(6)
  if (r === 0) return pick(WEIRD)
  const dims = Array.from({ length: rng.int(4) }, () => (rng.int(5) === 0 ? pick(WEIRD) : rng.int(6)))
  const begin = rng.int(5) === 0 ? pick(WEIRD) : rng.int(64)
  const end = rng.int(5) === 0 ? pick(WEIRD) : (begin as number) + rng.int(64)
  return {
    dtype: pick(['F32', 'F16', 'BF16', 'F64', 'I32', 'I64', 'U8', 'C64', 3, null]),
    shape: rng.int(8) === 0 ? pick(WEIRD) : dims,
    data_offsets: rng.int(8) === 0 ? pick(WEIRD) : [begin, end],
  }
}

/** One hostile file: a valid one mangled, a random header, or random bytes. */
function hostile(): Uint8Array {
  const base = validFile()
  switch (rng.int(6)) {
    case 0: // truncated anywhere, including inside the length prefix
      return base.subarray(0, rng.int(base.length))
    case 1: {
      // random bytes flipped, most in the header
      const out = Uint8Array.from(base)
      for (let k = 1 + rng.int(4); k > 0; k--)
        out[rng.int(Math.min(out.length, 8 + rng.int(200)))] = rng.int(256)
      return out
    }
    case 2: // a header length that lies
      return withHeader(
        { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } },
        new Uint8Array(4),
        pick([0n, 1n, 7n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n, BigInt(rng.int(100))]),
      )
    case 3: {
      // a random JSON header over random data
      const header: Record<string, unknown> = {}
      for (let k = rng.int(5); k > 0; k--) header[pick(['a', 'b', '__metadata__', '', 'x.y'])] = randomEntry()
      return withHeader(
        rng.int(10) === 0 ? pick(['[]', 'null', '"s"', '{', '\u00ff']) : header,
        randomBytes(rng.int(80)),
      )
    }
    case 4: // random bytes
      return randomBytes(rng.int(64))
    default: // empty
      return new Uint8Array(0)
  }
}

describe('safetensors reader under fuzzing', () => {
  it('turns 400 hostile files into SproutErrors of one line, never an internal error', () => {
    let refused = 0
    for (let i = 0; i < 400; i++) {
      const bytes = hostile()
      const path = join(dir, `case-${i}.safetensors`)
      writeFileSync(path, bytes)
      for (const read of [() => readSafetensors(path), () => parseSafetensors(bytes, path)]) {
        try {
          read()
        } catch (e) {
          if (!(e instanceof SproutError)) throw new Error(`case ${i}: ${String(e)} (not a SproutError)`)
          expect(e.message).not.toContain('\n')
          refused++
        }
      }
    }
    // Most hostile files are refused; the rest happen to be valid files and were read.
    expect(refused).toBeGreaterThan(400)
  })
})
