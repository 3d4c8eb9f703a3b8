import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { SproutError } from './errors.js'
import { replaceFile, writeFileAtomic, writeFully } from './fsutil.js'

const dirs: string[] = []
function folder(): string {
  const d = mkdtempSync(join(tmpdir(), 'sprout-fsutil-'))
  dirs.push(d)
  return d
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

describe('replaceFile', () => {
  it('replaces the file with what write() put at each position, and leaves no temporary file', () => {
    const dir = folder()
    const path = join(dir, 'f.bin')
    writeFileSync(path, 'old content that is longer')
    replaceFile(path, (fd) => {
      writeFully(fd, Uint8Array.from([3, 4]), 2)
      writeFully(fd, Uint8Array.from([1, 2]), 0)
    })
    expect([...readFileSync(path)]).toEqual([1, 2, 3, 4])
    expect(readdirSync(dir)).toEqual(['f.bin'])
  })

  it('keeps the old file and removes the temporary one when write() throws, rethrowing its error', () => {
    const dir = folder()
    const path = join(dir, 'f.txt')
    writeFileSync(path, 'old')
    const failure = new SproutError('WEIGHTS_NON_FINITE', 'tensor x has NaN')
    expect(() =>
      replaceFile(path, (fd) => {
        writeFully(fd, Buffer.from('half'), 0)
        throw failure
      }),
    ).toThrow(failure)
    expect(readFileSync(path, 'utf8')).toBe('old')
    expect(readdirSync(dir)).toEqual(['f.txt'])
  })
})

describe('writeFileAtomic', () => {
  it('writes strings as UTF-8 and bytes as they are', () => {
    const dir = folder()
    writeFileAtomic(join(dir, 'a.txt'), 'größe')
    writeFileAtomic(join(dir, 'b.bin'), Uint8Array.from([0, 255]))
    expect(readFileSync(join(dir, 'a.txt'), 'utf8')).toBe('größe')
    expect([...readFileSync(join(dir, 'b.bin'))]).toEqual([0, 255])
  })

  it('names the path in one IO error when its folder does not exist', () => {
    const path = join(folder(), 'missing', 'f.txt')
    let error: unknown
    try {
      writeFileAtomic(path, 'x')
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(SproutError)
    expect((error as SproutError).code).toBe('IO')
    expect((error as SproutError).message).toContain(`cannot write ${path}`)
  })
})
