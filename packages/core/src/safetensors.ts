import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { SproutError } from './errors.js'
import { writeFileAtomic } from './fsutil.js'

/** Dtypes we read. F16 and BF16 are widened to float32; F64 narrowed to float32. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64'
const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8 }
/** Refuse headers above 100 MB: real headers are kilobytes; a larger length is a corrupt or hostile file. */
export const MAX_HEADER_BYTES = 100_000_000

export interface RawTensor {
  dtype: 'float32' | 'int32'
  /** The dtype the file stores it as, before widening or narrowing to `dtype`. */
  storedAs: SafetensorsDtype
  shape: number[]
  data: Float32Array | Int32Array
}

export interface SafetensorsFile {
  tensors: Map<string, RawTensor>
  metadata: Record<string, string>
}

function bad(
  code: 'CHECKPOINT_HEADER' | 'CHECKPOINT_OFFSETS' | 'CHECKPOINT_DTYPE' | 'CHECKPOINT_TRUNCATED',
  file: string,
  msg: string,
): never {
  throw new SproutError(code, `${file}: ${msg}`)
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1
  const e = (h >> 10) & 0x1f
  const f = h & 0x3ff
  if (e === 0) return s * 2 ** -14 * (f / 1024)
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY
  return s * 2 ** (e - 15) * (1 + f / 1024)
}

/** Scratch views for float32 bit manipulation (no allocation per value). */
const SCRATCH_F32 = new Float32Array(1)
const SCRATCH_U32 = new Uint32Array(SCRATCH_F32.buffer)

function floatToHalf(v: number): number {
  SCRATCH_F32[0] = v
  const x = SCRATCH_U32[0]
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  let mant = x & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0)
  const e = exp - 127 + 15
  if (e >= 31) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    let half = mant >> shift
    if ((mant >> (shift - 1)) & 1 && (mant & ((1 << (shift - 1)) - 1) || half & 1)) half++
    return sign | half
  }
  let half = sign | (e << 10) | (mant >> 13)
  if (mant & 0x1000 && (mant & 0xfff || half & 1)) half++ // round to nearest even; may carry into the exponent
  return half
}

function decode(
  dtype: SafetensorsDtype,
  bytes: Uint8Array,
  count: number,
  file: string,
  name: string,
): RawTensor['data'] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(count)
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true)
      return out
    }
    case 'F64': {
      const out = new Float32Array(count)
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true)
      return out
    }
    case 'F16': {
      const out = new Float32Array(count)
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true))
      return out
    }
    case 'BF16': {
      const out = new Float32Array(count)
      const u = new Uint32Array(out.buffer)
      for (let i = 0; i < count; i++) u[i] = view.getUint16(i * 2, true) << 16
      return out
    }
    case 'I32': {
      const out = new Int32Array(count)
      for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4, true)
      return out
    }
    case 'I64': {
      const out = new Int32Array(count)
      for (let i = 0; i < count; i++) {
        const v = view.getBigInt64(i * 8, true)
        if (v > 2147483647n || v < -2147483648n)
          bad('CHECKPOINT_DTYPE', file, `tensor "${name}" holds an I64 value ${v} outside the int32 range`)
        out[i] = Number(v)
      }
      return out
    }
  }
}

/** Parses a safetensors buffer, validating every header entry against the data it claims. */
export function parseSafetensors(buf: Uint8Array, file = 'safetensors'): SafetensorsFile {
  if (buf.byteLength < 8)
    bad(
      'CHECKPOINT_TRUNCATED',
      file,
      `file is ${buf.byteLength} bytes, shorter than the 8-byte header length`,
    )
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const headerLen = view.getBigUint64(0, true)
  if (headerLen > BigInt(MAX_HEADER_BYTES))
    bad(
      'CHECKPOINT_HEADER',
      file,
      `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not safetensors`,
    )
  const n = Number(headerLen)
  if (8 + n > buf.byteLength)
    bad(
      'CHECKPOINT_TRUNCATED',
      file,
      `header claims ${n} bytes but the file has only ${buf.byteLength - 8} after the length; it is truncated`,
    )
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n)))
  } catch {
    bad('CHECKPOINT_HEADER', file, 'header is not valid UTF-8 JSON')
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    bad('CHECKPOINT_HEADER', file, 'header is not a JSON object')
  const data = buf.subarray(8 + n)
  const tensors = new Map<string, RawTensor>()
  let metadata: Record<string, string> = {}
  const ranges: [number, number, string][] = []
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (
        typeof entry !== 'object' ||
        entry === null ||
        Object.values(entry).some((v) => typeof v !== 'string')
      )
        bad('CHECKPOINT_HEADER', file, '__metadata__ must map strings to strings')
      metadata = entry as Record<string, string>
      continue
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
    if (typeof e !== 'object' || e === null)
      bad('CHECKPOINT_HEADER', file, `entry "${name}" is not an object`)
    if (typeof e.dtype !== 'string' || !(e.dtype in BYTES))
      bad(
        'CHECKPOINT_DTYPE',
        file,
        `tensor "${name}" has dtype ${JSON.stringify(e.dtype)}; supported: ${Object.keys(BYTES).join(', ')}`,
      )
    const dtype = e.dtype as SafetensorsDtype
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isInteger(d) || d < 0))
      bad('CHECKPOINT_HEADER', file, `tensor "${name}" has an invalid shape ${JSON.stringify(e.shape)}`)
    const offs = e.data_offsets
    if (!Array.isArray(offs) || offs.length !== 2 || offs.some((o) => !Number.isSafeInteger(o) || o < 0))
      bad('CHECKPOINT_OFFSETS', file, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offs)}`)
    const [begin, end] = offs as [number, number]
    const shape = e.shape as number[]
    const count = shape.reduce((a, b) => a * b, 1)
    if (end < begin || end - begin !== count * BYTES[dtype])
      bad(
        'CHECKPOINT_OFFSETS',
        file,
        `tensor "${name}": data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} [${shape}] needs ${count * BYTES[dtype]}`,
      )
    if (end > data.byteLength)
      bad(
        'CHECKPOINT_TRUNCATED',
        file,
        `tensor "${name}" ends at byte ${end} but the data section has only ${data.byteLength}; the file is truncated`,
      )
    ranges.push([begin, end, name])
    const isInt = dtype === 'I32' || dtype === 'I64'
    tensors.set(name, {
      dtype: isInt ? 'int32' : 'float32',
      storedAs: dtype,
      shape,
      data: decode(dtype, data.subarray(begin, end), count, file, name),
    })
  }
  ranges.sort((a, b) => a[0] - b[0])
  for (let i = 1; i < ranges.length; i++)
    if (ranges[i][0] < ranges[i - 1][1])
      bad('CHECKPOINT_OFFSETS', file, `tensors "${ranges[i - 1][2]}" and "${ranges[i][2]}" overlap`)
  return { tensors, metadata }
}

/** Reads a safetensors file from disk. */
export function readSafetensors(path: string): SafetensorsFile {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (e) {
    throw new SproutError(
      'CHECKPOINT_NOT_FOUND',
      `${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e})`,
    )
  }
  try {
    const size = fstatSync(fd).size
    const buf = new Uint8Array(size)
    let off = 0
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off)
      if (n === 0) break
      off += n
    }
    return parseSafetensors(buf.subarray(0, off), path)
  } finally {
    closeSync(fd)
  }
}

export interface TensorToWrite {
  dtype: 'float32' | 'int32'
  shape: number[]
  data: Float32Array | Int32Array
}

/** Serialises tensors (sorted by name) as safetensors; `float16`/`bfloat16` narrow float32 data. */
export function serializeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
  floatFormat: 'F32' | 'F16' | 'BF16' = 'F32',
): Uint8Array {
  const entries = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))].sort((a, b) =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0,
  )
  const header: Record<string, unknown> = {}
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata
  let offset = 0
  const layout: [string, TensorToWrite, SafetensorsDtype, number][] = []
  for (const [name, t] of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1)
    if (count !== t.data.length)
      throw new SproutError(
        'PARAMS_INVALID',
        `tensor "${name}": shape [${t.shape}] does not match ${t.data.length} values`,
      )
    const dtype: SafetensorsDtype = t.dtype === 'int32' ? 'I32' : floatFormat
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + count * BYTES[dtype]] }
    layout.push([name, t, dtype, offset])
    offset += count * BYTES[dtype]
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8) // align data to 8 bytes
  const headerBytes = new TextEncoder().encode(json)
  const out = new Uint8Array(8 + headerBytes.byteLength + offset)
  const view = new DataView(out.buffer)
  view.setBigUint64(0, BigInt(headerBytes.byteLength), true)
  out.set(headerBytes, 8)
  const base = 8 + headerBytes.byteLength
  for (const [, t, dtype, off] of layout) {
    const p = base + off
    const d = t.data
    for (let i = 0; i < d.length; i++) {
      if (dtype === 'F32') view.setFloat32(p + i * 4, d[i], true)
      else if (dtype === 'I32') view.setInt32(p + i * 4, d[i], true)
      else if (dtype === 'F16') view.setUint16(p + i * 2, floatToHalf(d[i]), true)
      else view.setUint16(p + i * 2, bf16(d[i]), true)
    }
  }
  return out
}

/** float32 -> bfloat16 with round-to-nearest-even. */
function bf16(v: number): number {
  SCRATCH_F32[0] = v
  const u = SCRATCH_U32[0]
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff
}

/** Writes safetensors atomically (temp file + rename). */
export function writeSafetensors(
  path: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
  floatFormat: 'F32' | 'F16' | 'BF16' = 'F32',
): void {
  writeFileAtomic(path, serializeSafetensors(tensors, metadata, floatFormat))
}
