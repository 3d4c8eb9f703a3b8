import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { SproutError } from './errors.js'
import { fsError } from './output-dir.js'

/** Writes a file so that readers see either the old content or the complete new one, never a prefix. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  try {
    const fd = openSync(tmp, 'w')
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
      let off = 0
      while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
  } catch (e) {
    rmSync(tmp, { force: true })
    throw (
      fsError(e, path) ?? new SproutError('IO', `cannot write ${path}: ${(e as Error).message}`, { cause: e })
    )
  }
}
