import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs'
import { SproutError } from './errors.js'
import { replaceFile, writeFully } from './fsutil.js'
import { assertFitsMemory, formatBytes } from './limits.js'

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

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
/** Bytes moved per read or write call: large enough to be fast, small enough to stay out of the way. */
const CHUNK_BYTES = 8 * 2 ** 20
/** Node refuses single reads/writes above 2 GiB - 1. */
const MAX_IO = 2 ** 30

/** Decodes `count` stored values from `bytes` into `out` starting at `at`. */
function decodeInto(
  dtype: SafetensorsDtype,
  bytes: Uint8Array,
  count: number,
  out: RawTensor['data'],
  at: number,
  file: string,
  name: string,
): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < count; i++) out[at + i] = view.getFloat32(i * 4, true)
      return
    case 'F64':
      for (let i = 0; i < count; i++) out[at + i] = view.getFloat64(i * 8, true)
      return
    case 'F16':
      for (let i = 0; i < count; i++) out[at + i] = halfToFloat(view.getUint16(i * 2, true))
      return
    case 'BF16': {
      const u = new Uint32Array(out.buffer, out.byteOffset, out.length)
      for (let i = 0; i < count; i++) u[at + i] = view.getUint16(i * 2, true) << 16
      return
    }
    case 'I32':
      for (let i = 0; i < count; i++) out[at + i] = view.getInt32(i * 4, true)
      return
    case 'I64':
      for (let i = 0; i < count; i++) {
        const v = view.getBigInt64(i * 8, true)
        if (v > 2147483647n || v < -2147483648n)
          bad('CHECKPOINT_DTYPE', file, `tensor "${name}" holds an I64 value ${v} outside the int32 range`)
        out[at + i] = Number(v)
      }
      return
  }
}

/** One tensor as the header describes it; offsets are relative to the data section. */
export interface TensorEntry {
  name: string
  storedAs: SafetensorsDtype
  /** What it decodes to. */
  dtype: 'float32' | 'int32'
  shape: number[]
  /** Number of values. */
  count: number
  begin: number
  end: number
}

/** Bytes a tensor occupies once decoded to float32/int32 (what loading it costs in memory). */
export function decodedBytes(entry: Pick<TensorEntry, 'count'>): number {
  return entry.count * 4
}

interface ParsedHeader {
  tensors: Map<string, TensorEntry>
  metadata: Record<string, string>
  /** Byte where the data section starts: 8 + header length. */
  dataStart: number
}

/** Validates the 8-byte header length against the file size; returns the header's byte count. */
function headerLength(prefix: Uint8Array, fileBytes: number, file: string): number {
  if (fileBytes < 8)
    bad('CHECKPOINT_TRUNCATED', file, `file is ${fileBytes} bytes, shorter than the 8-byte header length`)
  const headerLen = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true)
  if (headerLen > BigInt(MAX_HEADER_BYTES))
    bad(
      'CHECKPOINT_HEADER',
      file,
      `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not safetensors`,
    )
  const n = Number(headerLen)
  if (8 + n > fileBytes)
    bad(
      'CHECKPOINT_TRUNCATED',
      file,
      `header claims ${n} bytes but the file has only ${fileBytes - 8} after the length; it is truncated`,
    )
  return n
}

/** Parses and validates the JSON header against a data section of `dataBytes` bytes. */
function parseHeader(json: Uint8Array, dataBytes: number, file: string): Omit<ParsedHeader, 'dataStart'> {
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json))
  } catch {
    bad('CHECKPOINT_HEADER', file, 'header is not valid UTF-8 JSON')
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    bad('CHECKPOINT_HEADER', file, 'header is not a JSON object')
  const tensors = new Map<string, TensorEntry>()
  let metadata: Record<string, string> = {}
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (
        typeof entry !== 'object' ||
        entry === null ||
        Array.isArray(entry) ||
        Object.values(entry).some((v) => typeof v !== 'string')
      )
        bad('CHECKPOINT_HEADER', file, '__metadata__ must map strings to strings')
      metadata = entry as Record<string, string>
      continue
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
    if (typeof e !== 'object' || e === null || Array.isArray(e))
      bad('CHECKPOINT_HEADER', file, `entry "${name}" is not an object`)
    if (typeof e.dtype !== 'string' || !Object.hasOwn(BYTES, e.dtype))
      bad(
        'CHECKPOINT_DTYPE',
        file,
        `tensor "${name}" has dtype ${JSON.stringify(e.dtype)}; supported: ${Object.keys(BYTES).join(', ')}`,
      )
    const dtype = e.dtype as SafetensorsDtype
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
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
    if (end > dataBytes)
      bad(
        'CHECKPOINT_TRUNCATED',
        file,
        `tensor "${name}" ends at byte ${end} but the data section has only ${dataBytes}; the file is truncated`,
      )
    const isInt = dtype === 'I32' || dtype === 'I64'
    tensors.set(name, { name, storedAs: dtype, dtype: isInt ? 'int32' : 'float32', shape, count, begin, end })
  }
  const ranges = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin)
  for (let i = 1; i < ranges.length; i++)
    if (ranges[i].begin < ranges[i - 1].end)
      bad('CHECKPOINT_OFFSETS', file, `tensors "${ranges[i - 1].name}" and "${ranges[i].name}" overlap`)
  return { tensors, metadata }
}

/** Allocates a tensor's output array, turning V8's RangeError into a SproutError naming the tensor. */
function allocate(e: TensorEntry, file: string): RawTensor['data'] {
  try {
    return e.dtype === 'int32' ? new Int32Array(e.count) : new Float32Array(e.count)
  } catch {
    throw new SproutError(
      'TOO_LARGE',
      `${file}: tensor "${e.name}" [${e.shape}] needs ${formatBytes(decodedBytes(e))} in one array, more than this process can allocate`,
    )
  }
}

/** Parses an in-memory safetensors buffer, validating every header entry against the data it claims. */
export function parseSafetensors(buf: Uint8Array, file = 'safetensors'): SafetensorsFile {
  const n = headerLength(buf, buf.byteLength, file)
  const data = buf.subarray(8 + n)
  const { tensors: entries, metadata } = parseHeader(buf.subarray(8, 8 + n), data.byteLength, file)
  const tensors = new Map<string, RawTensor>()
  for (const e of entries.values()) {
    const out = allocate(e, file)
    decodeInto(e.storedAs, data.subarray(e.begin, e.end), e.count, out, 0, file, e.name)
    tensors.set(e.name, { dtype: e.dtype, storedAs: e.storedAs, shape: e.shape, data: out })
  }
  return { tensors, metadata }
}

function openError(path: string, e: unknown): never {
  const code = (e as NodeJS.ErrnoException).code
  const why =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'it is a directory'
          : (code ?? String(e))
  throw new SproutError('CHECKPOINT_NOT_FOUND', `${path}: cannot open (${why})`)
}

function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a directory'
  if (st.isFIFO()) return 'a FIFO (named pipe)'
  if (st.isCharacterDevice()) return 'a character device'
  if (st.isBlockDevice()) return 'a block device'
  if (st.isSocket()) return 'a socket'
  return 'a special file'
}

/**
 * A safetensors file opened for positioned reads: the header is read and validated at open,
 * tensors are read one at a time on demand, so files of any size (also beyond 4 GiB) cost only
 * the memory of the tensors actually read. Only regular files are accepted: a FIFO or device is
 * refused at open (opened non-blocking, so a FIFO without a writer cannot hang us).
 * Call `close()` when done (`readSafetensors` does it for you).
 */
export class SafetensorsReader {
  readonly path: string
  /** File size in bytes. */
  readonly size: number
  readonly metadata: Record<string, string>
  /** Header entries by name, in the header's order. */
  readonly entries: ReadonlyMap<string, TensorEntry>
  private fd: number | null
  private readonly dataStart: number

  private constructor(path: string, fd: number, size: number, header: ParsedHeader) {
    this.path = path
    this.fd = fd
    this.size = size
    this.metadata = header.metadata
    this.entries = header.tensors
    this.dataStart = header.dataStart
  }

  static open(path: string): SafetensorsReader {
    let fd: number
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
    } catch (e) {
      openError(path, e)
    }
    try {
      const st = fstatSync(fd)
      if (!st.isFile())
        throw new SproutError(
          'CHECKPOINT_INVALID',
          `${path} is ${fileKind(st)}, not a regular file; weights must be a safetensors file on disk`,
        )
      const size = st.size
      const prefix = new Uint8Array(8)
      readFully(fd, prefix, 0, Math.min(8, size), path)
      const n = headerLength(prefix, size, path)
      const json = new Uint8Array(n)
      readFully(fd, json, 8, n, path)
      const header = parseHeader(json, size - 8 - n, path)
      return new SafetensorsReader(path, fd, size, { ...header, dataStart: 8 + n })
    } catch (e) {
      closeSync(fd)
      throw e
    }
  }

  /** Bytes needed to hold the named tensors decoded (all of them when `names` is omitted). */
  decodedBytes(names?: Iterable<string>): number {
    let total = 0
    for (const name of names ?? this.entries.keys()) {
      const e = this.entries.get(name)
      if (e) total += decodedBytes(e)
    }
    return total
  }

  /** Reads one tensor with positioned reads (F32/I32 straight into the result, others in chunks). */
  read(name: string): RawTensor {
    if (this.fd === null) throw new SproutError('IO', `${this.path}: reader is closed`)
    const e = this.entries.get(name)
    if (!e) throw new SproutError('CHECKPOINT_INVALID', `${this.path}: no tensor "${name}"`)
    const out = allocate(e, this.path)
    const at = this.dataStart + e.begin
    const per = BYTES[e.storedAs]
    if (LITTLE_ENDIAN && (e.storedAs === 'F32' || e.storedAs === 'I32')) {
      readFully(
        this.fd,
        new Uint8Array(out.buffer, out.byteOffset, out.byteLength),
        at,
        e.end - e.begin,
        this.path,
      )
    } else if (e.count > 0) {
      const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / per))
      const scratch = new Uint8Array(Math.min(e.count, perChunk) * per)
      for (let i = 0; i < e.count; i += perChunk) {
        const n = Math.min(perChunk, e.count - i)
        const bytes = scratch.subarray(0, n * per)
        readFully(this.fd, bytes, at + i * per, n * per, this.path)
        decodeInto(e.storedAs, bytes, n, out, i, this.path, name)
      }
    }
    return { dtype: e.dtype, storedAs: e.storedAs, shape: e.shape, data: out }
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd)
    this.fd = null
  }
}

/** Fills `buf[0, length)` from `position`; a short read means the file shrank under us. */
function readFully(fd: number, buf: Uint8Array, position: number, length: number, file: string): void {
  let done = 0
  while (done < length) {
    const n = readSync(fd, buf, done, Math.min(MAX_IO, length - done), position + done)
    if (n === 0)
      bad(
        'CHECKPOINT_TRUNCATED',
        file,
        `file ended at byte ${position + done} while reading; it is truncated`,
      )
    done += n
  }
}

/** Opens a safetensors file for tensor-by-tensor reading (see `SafetensorsReader`). */
export function openSafetensors(path: string): SafetensorsReader {
  return SafetensorsReader.open(path)
}

export interface ReadOptions {
  /** Read only the tensors whose name passes (default: all). */
  only?: (name: string) => boolean
}

/**
 * Reads a safetensors file tensor by tensor (never the whole file in one buffer), after checking
 * that the decoded tensors fit the memory limit (`assertFitsMemory`).
 */
export function readSafetensors(path: string, options: ReadOptions = {}): SafetensorsFile {
  const reader = SafetensorsReader.open(path)
  try {
    const names = [...reader.entries.keys()].filter((n) => options.only?.(n) ?? true)
    assertFitsMemory(reader.decodedBytes(names), `reading ${names.length} tensors of ${path}`)
    const tensors = new Map<string, RawTensor>()
    for (const name of names) tensors.set(name, reader.read(name))
    return { tensors, metadata: reader.metadata }
  } finally {
    reader.close()
  }
}

export interface TensorToWrite {
  dtype: 'float32' | 'int32'
  shape: number[]
  /**
   * The values, or a function computing them when the writer reaches this tensor: a writer given
   * functions holds one tensor's values at a time (an export does not copy the whole model).
   */
  data: Float32Array | Int32Array | (() => Float32Array | Int32Array)
}

/** A tensor's values, computed now if deferred, checked against its shape. */
function valuesOf(name: string, t: TensorToWrite): Float32Array | Int32Array {
  const data = typeof t.data === 'function' ? t.data() : t.data
  const count = t.shape.reduce((a, b) => a * b, 1)
  if (count !== data.length)
    throw new SproutError(
      'PARAMS_INVALID',
      `tensor "${name}": shape [${t.shape}] does not match ${data.length} values`,
    )
  return data
}

interface Layout {
  header: Uint8Array
  items: { name: string; t: TensorToWrite; dtype: SafetensorsDtype; offset: number; bytes: number }[]
  dataBytes: number
}

/** Header and byte layout of a file: tensors sorted by name, data 8-byte aligned. */
function layout(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string>,
  floatFormat: 'F32' | 'F16' | 'BF16',
): Layout {
  const entries = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))].sort((a, b) =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0,
  )
  const header: Record<string, unknown> = {}
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata
  let offset = 0
  const items: Layout['items'] = []
  for (const [name, t] of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1)
    if (typeof t.data !== 'function') valuesOf(name, t)
    const dtype: SafetensorsDtype = t.dtype === 'int32' ? 'I32' : floatFormat
    const bytes = count * BYTES[dtype]
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] }
    items.push({ name, t, dtype, offset, bytes })
    offset += bytes
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8) // align data to 8 bytes
  const headerBytes = new TextEncoder().encode(json)
  const out = new Uint8Array(8 + headerBytes.byteLength)
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true)
  out.set(headerBytes, 8)
  return { header: out, items, dataBytes: offset }
}

/** Encodes values [from, from + n) of `data` as `dtype` into `dest` (n × bytes-per-value long). */
function encodeInto(
  dtype: SafetensorsDtype,
  data: Float32Array | Int32Array,
  from: number,
  n: number,
  dest: Uint8Array,
): void {
  const view = new DataView(dest.buffer, dest.byteOffset, dest.byteLength)
  for (let i = 0; i < n; i++) {
    const v = data[from + i]
    if (dtype === 'F32') view.setFloat32(i * 4, v, true)
    else if (dtype === 'I32') view.setInt32(i * 4, v, true)
    else if (dtype === 'F16') view.setUint16(i * 2, floatToHalf(v), true)
    else view.setUint16(i * 2, bf16(v), true)
  }
}

/**
 * Yields a tensor's bytes in chunks: little-endian F32/I32 as views of the data itself (no copy),
 * other formats encoded into one reused scratch buffer (consume each chunk before the next).
 */
function* tensorChunks(item: Layout['items'][number], scratch: Uint8Array): Generator<Uint8Array> {
  const { dtype } = item
  const data = valuesOf(item.name, item.t)
  if (LITTLE_ENDIAN && (dtype === 'F32' || dtype === 'I32')) {
    const all = new Uint8Array(data.buffer, data.byteOffset, data.length * 4)
    for (let i = 0; i < all.byteLength; i += MAX_IO)
      yield all.subarray(i, Math.min(all.byteLength, i + MAX_IO))
    return
  }
  const per = BYTES[dtype]
  const perChunk = Math.floor(scratch.byteLength / per)
  for (let i = 0; i < data.length; i += perChunk) {
    const n = Math.min(perChunk, data.length - i)
    const dest = scratch.subarray(0, n * per)
    encodeInto(dtype, data, i, n, dest)
    yield dest
  }
}

/** Serialises tensors (sorted by name) as safetensors in memory; `F16`/`BF16` narrow float32 data. */
export function serializeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
  floatFormat: 'F32' | 'F16' | 'BF16' = 'F32',
): Uint8Array {
  const { header, items, dataBytes } = layout(tensors, metadata, floatFormat)
  const out = new Uint8Array(header.byteLength + dataBytes)
  out.set(header, 0)
  for (const item of items) {
    const p = header.byteLength + item.offset
    const data = valuesOf(item.name, item.t)
    encodeInto(item.dtype, data, 0, data.length, out.subarray(p, p + item.bytes))
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

/**
 * Writes safetensors tensor by tensor with positioned writes (never the whole file in one
 * buffer) to a temp file beside `path`, flushes it and renames it into place, so readers see
 * the old file or the complete new one.
 */
export function writeSafetensors(
  path: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
  floatFormat: 'F32' | 'F16' | 'BF16' = 'F32',
): void {
  const { header, items } = layout(tensors, metadata, floatFormat)
  try {
    replaceFile(path, (fd) => {
      writeFully(fd, header, 0)
      const scratch = new Uint8Array(CHUNK_BYTES)
      for (const item of items) {
        let at = header.byteLength + item.offset
        for (const chunk of tensorChunks(item, scratch)) {
          writeFully(fd, chunk, at)
          at += chunk.byteLength
        }
      }
    })
  } catch (e) {
    if (e instanceof SproutError) throw e
    // The cause is kept so a caller writing a folder can say it in terms of that folder (fsError).
    throw new SproutError('IO', `cannot write ${path}: ${(e as Error).message}`, { cause: e })
  }
}
