import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  MAX_HEADER_BYTES,
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
} from './safetensors.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-st-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Builds a file by hand: 8-byte LE length, JSON header, raw bytes. */
function handMade(header: unknown, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header))
  const out = new Uint8Array(8 + json.length + data.length)
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true)
  out.set(json, 8)
  out.set(data, 8 + json.length)
  return out
}

describe('safetensors', () => {
  it('reads a hand-made little-endian file', () => {
    const data = new Uint8Array(new Float32Array([1.5, -2, 0.25]).buffer)
    const f = parseSafetensors(
      handMade({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] }, __metadata__: { k: 'v' } }, data),
    )
    expect(Array.from(f.tensors.get('a')!.data)).toEqual([1.5, -2, 0.25])
    expect(f.metadata).toEqual({ k: 'v' })
  })
  it('round-trips float32 and int32 exactly and writes a header whose data starts 8-byte aligned', () => {
    const path = join(dir, 'rt.safetensors')
    const w = new Float32Array([0.1, -3.5, 1e-8, 65504, Number.MIN_VALUE])
    writeSafetensors(path, {
      w: { dtype: 'float32', shape: [5], data: w },
      ids: { dtype: 'int32', shape: [2, 1], data: new Int32Array([7, -9]) },
    })
    const raw = readFileSync(path)
    const n = Number(new DataView(raw.buffer, raw.byteOffset).getBigUint64(0, true))
    expect((8 + n) % 8).toBe(0)
    const f = readSafetensors(path)
    expect(f.tensors.get('w')!.data).toEqual(w)
    expect(Array.from(f.tensors.get('ids')!.data)).toEqual([7, -9])
    expect(f.tensors.get('ids')!.shape).toEqual([2, 1])
  })
  it('writes and reads float16 and bfloat16 with the expected rounding', () => {
    const values = new Float32Array([1, -2.5, 0.1, 1000.5, 6e-8])
    for (const fmt of ['F16', 'BF16'] as const) {
      const buf = serializeSafetensors({ x: { dtype: 'float32', shape: [5], data: values } }, {}, fmt)
      const back = parseSafetensors(buf).tensors.get('x')!.data
      const rel = fmt === 'F16' ? 1e-3 : 8e-3
      for (let i = 0; i < 4; i++)
        expect(Math.abs(back[i] - values[i])).toBeLessThanOrEqual(Math.abs(values[i]) * rel)
    }
    // F16 bit patterns: 1.0 = 0x3c00, -2.5 = 0xc100; BF16 1.0 = 0x3f80
    const h = serializeSafetensors(
      { x: { dtype: 'float32', shape: [2], data: new Float32Array([1, -2.5]) } },
      {},
      'F16',
    )
    expect(Array.from(h.slice(h.length - 4))).toEqual([0x00, 0x3c, 0x00, 0xc1])
    const b = serializeSafetensors(
      { x: { dtype: 'float32', shape: [1], data: new Float32Array([1]) } },
      {},
      'BF16',
    )
    expect(Array.from(b.slice(b.length - 2))).toEqual([0x80, 0x3f])
  })
  it('refuses a file shorter than its length prefix', () => {
    expect(() => parseSafetensors(new Uint8Array(5))).toThrow(
      expect.objectContaining({ code: 'CHECKPOINT_TRUNCATED' }),
    )
  })
  it('refuses a truncated data section', () => {
    const data = new Uint8Array(new Float32Array([1, 2]).buffer)
    const full = handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data)
    expect(() => parseSafetensors(full.subarray(0, full.length - 3))).toThrow(/truncated/)
    expect(() => parseSafetensors(full.subarray(0, 20))).toThrow(
      expect.objectContaining({ code: 'CHECKPOINT_TRUNCATED' }),
    )
  })
  it('refuses offsets that lie about the tensor size or overlap', () => {
    const data = new Uint8Array(16)
    expect(() =>
      parseSafetensors(handMade({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data)),
    ).toThrow(
      expect.objectContaining({
        code: 'CHECKPOINT_OFFSETS',
        message: expect.stringMatching(/"a".*needs 12/),
      }),
    )
    expect(() =>
      parseSafetensors(handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, data)),
    ).toThrow(/data_offsets/)
    const overlap = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }
    expect(() => parseSafetensors(handMade(overlap, data))).toThrow(/overlap/)
  })
  it('refuses an oversized header length without allocating it', () => {
    const f = handMade({}, new Uint8Array(0), BigInt(MAX_HEADER_BYTES) + 1n)
    expect(() => parseSafetensors(f)).toThrow(expect.objectContaining({ code: 'CHECKPOINT_HEADER' }))
    expect(() => parseSafetensors(handMade({}, new Uint8Array(0), 2n ** 63n))).toThrow(/exceeds/)
  })
  it('refuses unsupported dtypes and malformed headers', () => {
    expect(() =>
      parseSafetensors(
        handMade({ a: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
      ),
    ).toThrow(
      expect.objectContaining({
        code: 'CHECKPOINT_DTYPE',
        message: expect.stringMatching(/"C64".*supported/),
      }),
    )
    const bad = new Uint8Array(12)
    new DataView(bad.buffer).setBigUint64(0, 4n, true)
    bad.set(new TextEncoder().encode('{no}'), 8)
    expect(() => parseSafetensors(bad)).toThrow(/not valid UTF-8 JSON/)
    expect(() =>
      parseSafetensors(
        handMade({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, new Uint8Array(0)),
      ),
    ).toThrow(/invalid shape/)
  })
  it('reports a missing file clearly', () => {
    expect(() => readSafetensors(join(dir, 'nope.safetensors'))).toThrow(
      expect.objectContaining({ code: 'CHECKPOINT_NOT_FOUND' }),
    )
  })
  it('reads I64 within int32 range and refuses values outside it', () => {
    const ok = new Uint8Array(new BigInt64Array([5n, -3n]).buffer)
    expect(
      Array.from(
        parseSafetensors(
          handMade({ i: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, ok),
        ).tensors.get('i')!.data,
      ),
    ).toEqual([5, -3])
    const big = new Uint8Array(new BigInt64Array([2n ** 40n]).buffer)
    expect(() =>
      parseSafetensors(handMade({ i: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, big)),
    ).toThrow(/int32 range/)
  })
  it('atomic write leaves no temp file behind', () => {
    const path = join(dir, 'atomic.safetensors')
    writeFileSync(path, 'old')
    writeSafetensors(path, { a: { dtype: 'float32', shape: [1], data: new Float32Array([1]) } })
    expect(readSafetensors(path).tensors.get('a')!.data[0]).toBe(1)
    expect(
      require('node:fs')
        .readdirSync(dir)
        .filter((f: string) => f.includes('.tmp-')),
    ).toEqual([])
  })
  it('computes deferred tensors one at a time, in write order, and writes the same bytes as eager ones', () => {
    const a = new Float32Array([1, 2, 3, 4])
    const b = new Float32Array([-0.5, 7])
    const order: string[] = []
    const deferred = (name: string, v: Float32Array) => () => {
      order.push(name)
      return v
    }
    const eager = serializeSafetensors(
      { b: { dtype: 'float32', shape: [2], data: b }, a: { dtype: 'float32', shape: [2, 2], data: a } },
      {},
      'BF16',
    )
    const path = join(dir, 'deferred.safetensors')
    writeSafetensors(
      path,
      {
        b: { dtype: 'float32', shape: [2], data: deferred('b', b) },
        a: { dtype: 'float32', shape: [2, 2], data: deferred('a', a) },
      },
      {},
      'BF16',
    )
    expect(order).toEqual(['a', 'b'])
    expect(new Uint8Array(readFileSync(path))).toEqual(eager)
  })
  it('refuses a deferred tensor whose values do not fit its shape, leaving no file', () => {
    const path = join(dir, 'short.safetensors')
    expect(() =>
      writeSafetensors(path, { a: { dtype: 'float32', shape: [3], data: () => new Float32Array(2) } }),
    ).toThrow(/tensor "a": shape \[3\] does not match 2 values/)
    expect(
      require('node:fs')
        .readdirSync(dir)
        .filter((f: string) => f.startsWith('short')),
    ).toEqual([])
  })
})
