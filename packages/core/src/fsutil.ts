import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { SproutError } from './errors.js'
import { fsError } from './output-dir.js'

/**
 * Replaces `path` so that readers see either the old content or the complete new one, never a
 * prefix: `write(fd)` fills a temporary file beside it, which is flushed and renamed into place.
 * On any failure the temporary file is removed and the error rethrown as it was.
 */
export function replaceFile(path: string, write: (fd: number) => void): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  try {
    const fd = openSync(tmp, 'w')
    try {
      write(fd)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
  } catch (e) {
    rmSync(tmp, { force: true })
    throw e
  }
}

/** Writes all of `bytes` at `position` (a short write continues where it stopped). */
export function writeFully(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done, position + done)
}

/** Writes a file so that readers see either the old content or the complete new one, never a prefix. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  try {
    replaceFile(path, (fd) => writeFully(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, 0))
  } catch (e) {
    throw (
      fsError(e, path) ?? new SproutError('IO', `cannot write ${path}: ${(e as Error).message}`, { cause: e })
    )
  }
}
