import { execFileSync } from 'node:child_process'
import {
  closeSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { setRuntimeLimits } from './limits.js'
import { SeededRandom } from './random.js'
import {
  openSafetensors,
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from './safetensors.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-st-stream-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
afterEach(() => setRuntimeLimits({}))

/** 8-byte LE length + JSON header (padded to 8) — the layout written by hand, not by the code under test. */
function headerBytes(header: unknown): Uint8Array {
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8)
  const out = new Uint8Array(8 + json.length)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(new TextEncoder().encode(json), 8)
  return out
}

describe('streaming safetensors', () => {
  it('accepts only regular files: a FIFO, a device and a directory are refused at once', () => {
    const fifo = join(dir, 'weights.fifo')
    execFileSync('mkfifo', [fifo])
    const start = performance.now()
    // Without a writer, a blocking open of a FIFO would wait for ever.
    expect(() => readSafetensors(fifo)).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/FIFO.*not a regular file/) }),
    )
    expect(performance.now() - start).toBeLessThan(1000)
    expect(() => readSafetensors('/dev/zero')).toThrow(/a character device, not a regular file/)
    expect(() => openSafetensors(dir)).toThrow(/a directory, not a regular file/)
  })

  it('writes chunk by chunk exactly the bytes of the in-memory serialiser, and reads them back', () => {
    const rng = new SeededRandom(3)
    // 5M F16 values are 10 MB: more than one 8 MiB chunk on both the write and the read path.
    const big = rng.normals(5_000_000)
    const tensors: Record<string, TensorToWrite> = {
      big: { dtype: 'float32', shape: [1000, 5000], data: big },
      ids: { dtype: 'int32', shape: [3], data: new Int32Array([1, -2, 2147483647]) },
      small: { dtype: 'float32', shape: [2, 2], data: new Float32Array([0.5, -1, 3, 65504]) },
    }
    for (const fmt of ['F32', 'F16', 'BF16'] as const) {
      const path = join(dir, `chunks-${fmt}.safetensors`)
      writeSafetensors(path, tensors, { format: 'pt' }, fmt)
      const inMemory = serializeSafetensors(tensors, { format: 'pt' }, fmt)
      expect(Buffer.compare(readFileSync(path), inMemory)).toBe(0)
      const streamed = readSafetensors(path)
      const whole = parseSafetensors(inMemory)
      for (const name of Object.keys(tensors)) {
        const a = streamed.tensors.get(name)!
        expect(a.shape).toEqual(tensors[name].shape)
        expect(
          Buffer.compare(Buffer.from(a.data.buffer), Buffer.from(whole.tensors.get(name)!.data.buffer)),
        ).toBe(0)
      }
      // F32 is stored as is: the values come back bit for bit (Buffer.compare: toEqual is slow on 5M values).
      if (fmt === 'F32')
        expect(
          Buffer.compare(Buffer.from(streamed.tensors.get('big')!.data.buffer), Buffer.from(big.buffer)),
        ).toBe(0)
      expect(streamed.metadata).toEqual({ format: 'pt' })
    }
  })

  it('reads tensors beyond 4 GiB of a sparse file one by one, and refuses only what exceeds the memory limit', () => {
    const path = join(dir, 'huge.safetensors')
    const GiB = 2 ** 30
    const padBytes = 4.5 * GiB // one F32 tensor of 4.5 GiB that is never read (a hole in the file)
    const tail = new Float32Array(1000).map((_, i) => Math.sin(i) * 1e3)
    const half = [1, -2.5, 0.0999755859375, 65504] // exactly representable in F16
    const halfBits = [0x3c00, 0xc100, 0x2e66, 0x7bff]
    const header = headerBytes({
      pad: { dtype: 'F32', shape: [padBytes / 4], data_offsets: [0, padBytes] },
      tail: { dtype: 'F32', shape: [1000], data_offsets: [padBytes, padBytes + 4000] },
      half: { dtype: 'F16', shape: [4], data_offsets: [padBytes + 4000, padBytes + 4008] },
    })
    const size = header.byteLength + padBytes + 4008
    const fd = openSync(path, 'w')
    try {
      writeSync(fd, header, 0, header.byteLength, 0)
      ftruncateSync(fd, size) // sparse: the pad takes no disk space
      const tailBytes = Buffer.alloc(4008)
      for (let i = 0; i < tail.length; i++) tailBytes.writeFloatLE(tail[i], i * 4)
      for (let i = 0; i < halfBits.length; i++) tailBytes.writeUInt16LE(halfBits[i], 4000 + i * 2)
      writeSync(fd, tailBytes, 0, tailBytes.byteLength, header.byteLength + padBytes)
    } finally {
      closeSync(fd)
    }
    expect(statSync(path).size).toBeGreaterThan(4 * GiB)
    try {
      setRuntimeLimits({ memoryLimit: GiB })
      const reader = openSafetensors(path)
      try {
        expect(reader.size).toBe(size)
        expect(reader.decodedBytes()).toBe(padBytes + 4000 + 16)
        expect(reader.read('tail').data).toEqual(tail)
        expect(Array.from(reader.read('half').data)).toEqual(half)
      } finally {
        reader.close()
      }
      const needed = readSafetensors(path, { only: (n) => n !== 'pad' })
      expect(needed.tensors.get('tail')!.data).toEqual(tail)
      expect([...needed.tensors.keys()].sort()).toEqual(['half', 'tail'])
      expect(() => readSafetensors(path)).toThrow(
        expect.objectContaining({
          code: 'TOO_LARGE',
          message: expect.stringMatching(
            /reading 3 tensors of .*huge\.safetensors needs about 4\.50 GiB.*limit of 1\.00 GiB \(--memory-limit\)/,
          ),
        }),
      )
    } finally {
      rmSync(path, { force: true })
    }
  })

  it('refuses a file that shrank after its header was read', () => {
    const path = join(dir, 'shrinks.safetensors')
    writeSafetensors(path, { a: { dtype: 'float32', shape: [1000], data: new Float32Array(1000) } })
    const reader = openSafetensors(path)
    try {
      writeFileSync(path, readFileSync(path).subarray(0, 100))
      expect(() => reader.read('a')).toThrow(expect.objectContaining({ code: 'CHECKPOINT_TRUNCATED' }))
    } finally {
      reader.close()
    }
  })
})
