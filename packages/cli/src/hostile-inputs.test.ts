import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { CommandIo } from '@sprout/core'
import { afterAll, describe, expect, it } from 'vitest'
import { main } from './index.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-cli-hostile-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const GPT2 = resolve(import.meta.dirname, '../../interop/fixtures/hf/gpt2')

async function run(...argv: string[]) {
  const stdout: string[] = []
  const stderr: string[] = []
  const io: CommandIo = { out: (l) => stdout.push(l), err: (l) => stderr.push(l) }
  const code = await main(['--backend', 'cpu', ...argv], io)
  // The backend line is information, not part of the error.
  return { code, stdout, errors: stderr.filter((l) => !l.startsWith('sprout: backend:')) }
}

function header(length: bigint, body: string): Buffer {
  const b = Buffer.alloc(8 + body.length)
  b.writeBigUInt64LE(length, 0)
  b.write(body, 8)
  return b
}

describe('corrupt Hugging Face weights', () => {
  const cases: [string, Buffer, RegExp][] = [
    ['an empty file', Buffer.alloc(0), /file is 0 bytes, shorter than the 8-byte header length/],
    ['a header length beyond the file', header(4096n, '{}'), /header claims 4096 bytes .* truncated/],
    ['a non-JSON header', header(6n, '{nope}'), /header is not valid UTF-8 JSON/],
    [
      'random bytes',
      Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 97 + 13) % 256)),
      /model\.safetensors: header length \d+ exceeds/,
    ],
  ]
  it.each(cases)('convert --from hf with %s: one line, exit 1, nothing written', async (_, bytes, why) => {
    const hf = join(dir, `hf-${bytes.length}-${why.source.length}`)
    cpSync(GPT2, hf, { recursive: true })
    writeFileSync(join(hf, 'model.safetensors'), bytes)
    const out = join(dir, `out-${bytes.length}-${why.source.length}`)
    const r = await run('convert', '--from', 'hf', '--in', hf, '--out', out)
    expect(r.code).toBe(1)
    expect(r.errors).toHaveLength(1)
    expect(r.errors[0]).toMatch(/^sprout: error: .*model\.safetensors: /)
    expect(r.errors[0]).toMatch(why)
    expect(existsSync(out)).toBe(false)
  })

  it('a FIFO in place of the weights is refused at once', async () => {
    const hf = join(dir, 'hf-fifo')
    cpSync(GPT2, hf, { recursive: true })
    rmSync(join(hf, 'model.safetensors'))
    const { execFileSync } = await import('node:child_process')
    execFileSync('mkfifo', [join(hf, 'model.safetensors')])
    const r = await run('convert', '--from', 'hf', '--in', hf, '--out', join(dir, 'out-fifo'))
    expect(r.code).toBe(1)
    expect(r.errors).toEqual([
      expect.stringMatching(/model\.safetensors is a FIFO \(named pipe\), not a regular file/),
    ])
  })

  it('the fixture itself still converts (the corruptions above are what fails)', async () => {
    const r = await run('convert', '--from', 'hf', '--in', GPT2, '--out', join(dir, 'ok'))
    expect(r.code).toBe(0)
    expect(JSON.parse(readFileSync(join(dir, 'ok', 'sprout.json'), 'utf8')).format).toBe('sprout-checkpoint')
  })
})
