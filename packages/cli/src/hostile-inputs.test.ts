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

describe('size checks before allocation (the issue’s examples)', () => {
  const base = {
    family: 'decoder',
    vocabSize: 256,
    maxSeqLen: 64,
    dModel: 128,
    nLayers: 2,
    nHeads: 4,
    dFF: 512,
  }
  const specs: [string, Record<string, unknown>][] = [
    ['a dimension of 1e9', { ...base, dModel: 1e9, nHeads: 1 }],
    ['nLayers 1e6', { ...base, nLayers: 1e6 }],
    ['1e6 experts', { ...base, moe: { experts: 1e6, layers: [0] } }],
  ]
  it.each(specs)('init with %s is refused in under a second with the estimate', async (name, spec) => {
    const path = join(dir, `${name.replace(/\W/g, '-')}.json`)
    writeFileSync(path, JSON.stringify(spec))
    const out = join(dir, `init-${name.replace(/\W/g, '-')}`)
    const start = performance.now()
    const r = await run('init', '--spec', path, '--out', out)
    expect(performance.now() - start).toBeLessThan(1000)
    expect(r.code).toBe(1)
    expect(r.errors).toEqual([
      expect.stringMatching(
        /^sprout: error: a model of decoder .* needs about [\d.]+ [KMGTPE]iB \(.* parameters in float32\), above the memory limit of .*--memory-limit SIZE/,
      ),
    ])
    expect(existsSync(out)).toBe(false)
  })

  it('grow into a target with a dimension of 1e9 is refused in under a second with the estimate', async () => {
    const src = join(dir, 'small-src')
    const specPath = join(dir, 'small.json')
    writeFileSync(
      specPath,
      JSON.stringify({ ...base, vocabSize: 16, maxSeqLen: 8, dModel: 8, nHeads: 2, dFF: 16 }),
    )
    expect((await run('init', '--spec', specPath, '--out', src)).code).toBe(0)
    const target = join(dir, 'wide.json')
    writeFileSync(
      target,
      JSON.stringify({ ...base, vocabSize: 16, maxSeqLen: 8, dModel: 1e9, nHeads: 2, dFF: 16 }),
    )
    const start = performance.now()
    const r = await run(
      'grow',
      '--method',
      'lemon',
      '--from',
      src,
      '--target',
      target,
      '--out',
      join(dir, 'grown'),
    )
    expect(performance.now() - start).toBeLessThan(1000)
    expect(r.code).toBe(1)
    expect(r.errors).toEqual([
      expect.stringMatching(
        /growing into decoder L2 d1000000000 .* needs about .*source .* \+ target .* of float32 weights/,
      ),
    ])
    expect(existsSync(join(dir, 'grown'))).toBe(false)
  })

  it('train with batchSize 1e9 is refused in under a second, naming the activations', async () => {
    const config = join(dir, 'huge-batch.json')
    writeFileSync(config, JSON.stringify({ spec: base, data: 'moby-dick', batchSize: 1e9, steps: 1 }))
    const out = join(dir, 'huge-batch-run')
    const start = performance.now()
    const r = await run('train', '--config', config, '--out', out)
    expect(performance.now() - start).toBeLessThan(1000)
    expect(r.code).toBe(1)
    expect(r.errors).toEqual([
      expect.stringMatching(
        /^sprout: error: training decoder L2 d128 .* needs about .* of activations for batches of 1000000000 × 64\), above the memory limit/,
      ),
    ])
    expect(existsSync(out)).toBe(false)
  })

  it('--memory-limit lowers the limit for one command and says where it came from', async () => {
    const path = join(dir, 'base.json')
    writeFileSync(path, JSON.stringify(base))
    const r = await run('--memory-limit', '1M', 'init', '--spec', path, '--out', join(dir, 'limited'))
    expect(r.code).toBe(1)
    expect(r.errors[0]).toMatch(/above the memory limit of 1\.00 MiB \(--memory-limit\)/)
    expect((await run('--memory-limit', 'lots', 'init', '--spec', path, '--out', join(dir, 'x'))).code).toBe(
      2,
    )
    // The next command without the flag is back to the default.
    expect((await run('init', '--spec', path, '--out', join(dir, 'unlimited'))).code).toBe(0)
  })
})

describe('non-finite weights (the issue’s wrong diagnoses)', () => {
  const small = {
    family: 'decoder',
    vocabSize: 256,
    maxSeqLen: 16,
    dModel: 16,
    nLayers: 2,
    nHeads: 2,
    dFF: 32,
  }
  const ck = join(dir, 'nan-ck')
  const tokens = join(dir, 'tokens.json')
  const target = join(dir, 'nan-target.json')

  function poison(file: string, name: string, values: number[]): void {
    const buf = readFileSync(file)
    const n = Number(buf.readBigUInt64LE(0))
    const [begin] = JSON.parse(buf.subarray(8, 8 + n).toString())[name].data_offsets
    for (let i = 0; i < values.length; i++) buf.writeFloatLE(values[i], 8 + n + begin + 4 * i)
    writeFileSync(file, buf)
  }

  it('are refused at load by grow, eval, forward and convert, naming the tensor', async () => {
    const specPath = join(dir, 'nan-spec.json')
    writeFileSync(specPath, JSON.stringify(small))
    writeFileSync(target, JSON.stringify({ ...small, dModel: 32, nHeads: 4 }))
    writeFileSync(tokens, JSON.stringify([[1, 2, 3, 4]]))
    expect((await run('init', '--spec', specPath, '--out', ck)).code).toBe(0)
    poison(join(ck, 'model.safetensors'), 'layers.0.attn.q.weight', [Number.NaN, Number.NaN, Number.NaN])
    const why =
      /^sprout: error: .*model\.safetensors: tensor "layers\.0\.attn\.q\.weight" holds 3 NaN of 256 values; .*--allow-non-finite/
    for (const argv of [
      ['grow', '--method', 'lemon', '--from', ck, '--target', target, '--out', join(dir, 'nan-grown')],
      ['eval', '--checkpoint', ck, '--data', 'moby-dick', '--batches', '1'],
      ['forward', '--checkpoint', ck, '--tokens', tokens, '--out', join(dir, 'nan-logits.safetensors')],
      ['convert', '--to', 'hf', '--in', ck, '--out', join(dir, 'nan-hf')],
    ]) {
      const r = await run(...argv)
      expect(r.code, argv[0]).toBe(1)
      expect(r.errors, argv[0]).toEqual([expect.stringMatching(why)])
    }
    expect(existsSync(join(dir, 'nan-grown'))).toBe(false)
    expect(existsSync(join(dir, 'nan-logits.safetensors'))).toBe(false)
  })

  it('with --allow-non-finite: grow and eval say what is wrong (not "a bug", not a NaN loss), forward warns', async () => {
    const grow = await run(
      '--allow-non-finite',
      'grow',
      '--method',
      'lemon',
      '--from',
      ck,
      '--target',
      target,
      '--out',
      join(dir, 'nan-grown'),
    )
    expect(grow.code).toBe(1)
    expect(grow.errors.at(-1)).toMatch(
      /logits are not finite because the weights are not finite: tensor "layers\.0\.attn\.q\.weight" holds 3 NaN/,
    )
    expect(grow.errors.join('\n')).not.toMatch(/bug/)
    const evaluated = await run(
      '--allow-non-finite',
      'eval',
      '--checkpoint',
      ck,
      '--data',
      'moby-dick',
      '--batches',
      '1',
    )
    expect(evaluated.code).toBe(1)
    expect(evaluated.errors).toEqual([
      expect.stringMatching(
        /the validation loss is NaN because the weights are not finite: tensor "layers\.0\.attn\.q\.weight"/,
      ),
    ])
    const out = join(dir, 'nan-logits.safetensors')
    const fwd = await run(
      '--allow-non-finite',
      'forward',
      '--checkpoint',
      ck,
      '--tokens',
      tokens,
      '--out',
      out,
    )
    expect(fwd.code).toBe(0)
    expect(fwd.errors).toEqual([
      expect.stringMatching(
        /^warning: the logits hold 1024 NaN of 1024 values because the weights are not finite/,
      ),
    ])
    expect(existsSync(out)).toBe(true)
  })

  it('Hugging Face weights with Inf are refused at import, naming the Hugging Face tensor', async () => {
    const hf = join(dir, 'hf-inf')
    cpSync(GPT2, hf, { recursive: true })
    poison(join(hf, 'model.safetensors'), 'transformer.h.0.mlp.c_fc.weight', [Number.POSITIVE_INFINITY])
    const r = await run('convert', '--from', 'hf', '--in', hf, '--out', join(dir, 'hf-inf-out'))
    expect(r.code).toBe(1)
    expect(r.errors).toEqual([
      expect.stringMatching(/tensor "transformer\.h\.0\.mlp\.c_fc\.weight" holds 1 Inf of \d+ values/),
    ])
    expect(existsSync(join(dir, 'hf-inf-out'))).toBe(false)
  })
})
