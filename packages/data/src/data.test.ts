import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { parseSpec, SeededRandom, SproutError, skipUnless } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDataset, unigramEntropy } from './dataset.js'
import { FASHION_MNIST_DIR, loadFashionMnist, loadIdxPair, loadMnist, parseIdx } from './images.js'
import { loadText } from './text.js'
import { CausalBatches, maskSequence, splitTokens } from './textBatches.js'
import { byteTokenizer, charTokenizer, gpt2Tokenizer } from './tokenizers.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-data-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let tensorsBefore = 0
beforeAll(() => {
  tensorsBefore = tf.memory().numTensors
})
const decoder = parseSpec({
  family: 'decoder',
  vocabSize: 256,
  maxSeqLen: 16,
  dModel: 16,
  nLayers: 1,
  nHeads: 2,
  dFF: 32,
})

describe('text corpora', () => {
  it('reads Moby Dick and the State of the Union offline', () => {
    const moby = loadText('moby-dick')
    expect(moby.text.startsWith('CHAPTER 1. Loomings.')).toBe(true)
    expect(moby.text.length).toBeGreaterThan(1_000_000)
    const sotu = loadText('sotu')
    expect(sotu.files.length).toBeGreaterThan(200)
    expect(sotu.files[0]).toMatch(/1790_george_washington/)
    expect(sotu.text.length).toBeGreaterThan(9_000_000)
  })

  it('reads a folder in sorted order and refuses empty, missing and non-UTF-8 input', () => {
    mkdirSync(join(dir, 'folder'))
    writeFileSync(join(dir, 'folder', 'b.txt'), 'second')
    writeFileSync(join(dir, 'folder', 'a.txt'), 'first')
    expect(loadText(join(dir, 'folder')).text).toBe('first\n\nsecond')
    writeFileSync(join(dir, 'empty.txt'), '  \n')
    expect(() => loadText(join(dir, 'empty.txt'))).toThrow(/is empty/)
    writeFileSync(join(dir, 'latin1.txt'), Buffer.from([0x63, 0x61, 0x66, 0xe9]))
    expect(() => loadText(join(dir, 'latin1.txt'))).toThrow(/not valid UTF-8/)
    expect(() => loadText(join(dir, 'nope.txt'))).toThrow(/neither a built-in corpus .* nor an existing file/)
  })
})

describe('tokenizers', () => {
  it('byte and char tokenizers round-trip', () => {
    const text = 'Call me Ishmael — ’tis so.'
    const b = byteTokenizer()
    expect(b.decode(b.encode(text))).toBe(text)
    expect(Array.from(b.encode('Ab'))).toEqual([65, 98])
    const c = charTokenizer('abca')
    expect(c.vocabSize).toBe(3)
    expect(Array.from(c.encode('cab'))).toEqual([2, 0, 1])
    expect(() => c.encode('z')).toThrow(/not in the char tokenizer/)
  })

  it('GPT-2 BPE gives the published ids', async () => {
    const g = await gpt2Tokenizer()
    expect(Array.from(g.encode('hello world'))).toEqual([31373, 995])
    expect(g.decode(g.encode('Call me Ishmael.'))).toBe('Call me Ishmael.')
  })
})

describe('text batches', () => {
  const tokens = Int32Array.from({ length: 1000 }, (_, i) => i % 251)

  it('splits a fixed validation tail and refuses a corpus shorter than a sequence', () => {
    const s = splitTokens(tokens, 16)
    expect(s.val.length).toBe(100)
    expect(s.val[0]).toBe(tokens[900])
    expect(() => splitTokens(tokens.subarray(0, 20), 16)).toThrow(
      /fewer than one training and one validation sequence/,
    )
  })

  it('causal targets are inputs shifted by one; order is seeded and resumable from a cursor', () => {
    const before = tf.memory().numTensors
    const a = new CausalBatches(tokens, 4, 16, 7)
    const first = a.next()
    const x = first.inputs.arraySync() as number[][]
    const y = first.targets.arraySync() as number[][]
    for (let b = 0; b < 4; b++) expect(y[b].slice(0, 15)).toEqual(x[b].slice(1))
    tf.dispose([first.inputs, first.targets])
    for (let i = 0; i < 20; i++) tf.dispose(Object.values(a.next()))
    const cursor = a.cursor()
    const expected = a.next()
    const b = new CausalBatches(tokens, 4, 16, 7)
    b.seek(cursor)
    const resumed = b.next()
    expect(resumed.inputs.arraySync()).toEqual(expected.inputs.arraySync())
    const other = new CausalBatches(tokens, 4, 16, 8).next()
    const same = new CausalBatches(tokens, 4, 16, 7).next()
    expect(same.inputs.arraySync()).toEqual(x)
    expect(other.inputs.arraySync()).not.toEqual(x)
    tf.dispose([
      expected.inputs,
      expected.targets,
      resumed.inputs,
      resumed.targets,
      other.inputs,
      other.targets,
      same.inputs,
      same.targets,
    ])
    expect(tf.memory().numTensors).toBe(before)
  })

  it('refuses a cursor that does not fit the data with a SproutError', () => {
    const s = new CausalBatches(tokens.subarray(0, 16 * 10 + 1), 1, 16, 3)
    expect(() => s.seek({ epoch: 0, index: 11 })).toThrow(/does not fit a dataset of 10 examples/)
    expect(() => s.seek({ epoch: -1, index: 0 })).toThrow(SproutError)
    s.seek({ epoch: 2, index: 10 })
    expect(s.cursor()).toEqual({ epoch: 2, index: 10 })
  })

  it('visits every window once per epoch', () => {
    const s = new CausalBatches(tokens.subarray(0, 16 * 10 + 1), 1, 16, 3)
    const starts = new Set<number>()
    for (let i = 0; i < 10; i++) {
      const b = s.next()
      starts.add((b.inputs.arraySync() as number[][])[0][0])
      tf.dispose(Object.values(b))
    }
    expect(starts.size).toBe(10)
    expect(s.cursor()).toEqual({ epoch: 0, index: 10 })
  })

  it('BERT masking: 15% selected, of which 80% [MASK], 10% random, 10% kept', () => {
    const ids = Int32Array.from({ length: 200_000 }, (_, i) => i % 100)
    const m = maskSequence(ids, new SeededRandom(1), { maskId: 100, randomVocab: 100 })
    let selected = 0
    let masked = 0
    let kept = 0
    for (let i = 0; i < ids.length; i++) {
      if (m.weights[i] === 0) {
        expect(m.inputs[i]).toBe(ids[i])
        continue
      }
      selected++
      if (m.inputs[i] === 100) masked++
      else if (m.inputs[i] === ids[i]) kept++
    }
    expect(selected / ids.length).toBeCloseTo(0.15, 2)
    expect(masked / selected).toBeCloseTo(0.8, 2)
    // kept = the 10% unchanged plus random draws that hit the original id (1 in 100)
    expect(kept / selected).toBeCloseTo(0.1 + 0.1 / 100, 2)
  })

  it('opens Moby Dick for a decoder and an encoder, with the unigram entropy', async () => {
    const before = tf.memory().numTensors
    const d = await openDataset('moby-dick', decoder, { batchSize: 2, seed: 1 })
    expect(d.kind).toBe('causal')
    expect(d.unigramEntropy).toBeGreaterThan(2.5)
    expect(d.unigramEntropy).toBeLessThan(Math.log(256))
    const val = d.valBatches(3)
    expect(val).toHaveLength(3)
    expect(val[0].inputs.shape).toEqual([2, 16])
    tf.dispose(val.flatMap((b) => Object.values(b)))
    const enc = parseSpec({ ...decoder, family: 'encoder', vocabSize: 257 })
    const e = await openDataset('moby-dick', enc, { batchSize: 2, seed: 1 })
    const b = e.train.next()
    expect(b.weights!.shape).toEqual([2, 16])
    tf.dispose(Object.values(b))
    await expect(
      openDataset('moby-dick', { ...enc, vocabSize: 256 }, { batchSize: 2, seed: 1 }),
    ).rejects.toThrow(/needs a vocabulary of 257 \(its tokens plus \[MASK\]\)/)
    await expect(openDataset('mnist', decoder, { batchSize: 2, seed: 1 })).rejects.toThrow(/image data/)
    expect(tf.memory().numTensors).toBe(before)
  })

  it('entropy of a uniform distribution is log n', () => {
    expect(unigramEntropy(Int32Array.from([0, 1, 2, 3]))).toBeCloseTo(Math.log(4), 10)
  })
})

describe('images', () => {
  it('loads the MNIST digits and batches them for a ViT', async () => {
    const set = loadMnist()
    expect(set.count).toBeGreaterThan(9000)
    expect(new Set(set.labels).size).toBe(10)
    const vit = parseSpec({
      family: 'vit',
      vocabSize: 0,
      maxSeqLen: 17,
      dModel: 16,
      nLayers: 1,
      nHeads: 2,
      dFF: 32,
      image: { size: 28, patch: 7, channels: 1, classes: 10 },
    })
    const d = await openDataset('mnist', vit, { batchSize: 4, seed: 1 })
    const b = d.train.next()
    expect(b.inputs.shape).toEqual([4, 28, 28, 1])
    expect(b.targets.shape).toEqual([4])
    tf.dispose(Object.values(b))
    await expect(
      openDataset('mnist', { ...vit, image: { ...vit.image!, size: 32 } }, { batchSize: 4, seed: 1 }),
    ).rejects.toThrow(/images are 28×28×1 but the spec expects 32×32×1/)
  })

  it('parses IDX files (gzipped or not) and refuses a wrong magic number', () => {
    const images = new Uint8Array([
      0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 255, 128, 0, 1, 2, 3, 4,
    ])
    const labels = new Uint8Array([0, 0, 8, 1, 0, 0, 0, 2, 7, 3])
    writeFileSync(join(dir, 'img.gz'), gzipSync(images))
    writeFileSync(join(dir, 'lab'), labels)
    const set = loadIdxPair(join(dir, 'img.gz'), join(dir, 'lab'), 'tiny')
    expect(set.count).toBe(2)
    expect(Array.from(set.labels)).toEqual([7, 3])
    expect(set.images[1]).toBeCloseTo(1)
    expect(() => parseIdx(labels, 'labels-as-images', 3)).toThrow(
      /magic number 0x00000801, expected 0x00000803/,
    )
    expect(() => parseIdx(images.subarray(0, 20), 'cut', 3)).toThrow(/truncated/)
  })

  it("reads Fashion-MNIST from Debian's file layout and says how to install it when absent", () => {
    const fake = join(dir, 'fashion')
    mkdirSync(fake)
    expect(() => loadFashionMnist(fake)).toThrow(/apt-get install dataset-fashion-mnist/)
    const images = new Uint8Array([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 51])
    const labels = new Uint8Array([0, 0, 8, 1, 0, 0, 0, 1, 9])
    writeFileSync(join(fake, 't10k-images-idx3-ubyte.gz'), gzipSync(images))
    writeFileSync(join(fake, 't10k-labels-idx1-ubyte.gz'), gzipSync(labels))
    const set = loadFashionMnist(fake)
    expect([set.count, set.labels[0], set.name]).toEqual([1, 9, 'fashion-mnist'])
    expect(set.images[0]).toBeCloseTo(0.2)
  })

  it.skipIf(
    skipUnless(
      existsSync(FASHION_MNIST_DIR),
      `Fashion-MNIST in ${FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)`,
    ),
  )('loads the installed Fashion-MNIST test set (1000 per class)', () => {
    const set = loadFashionMnist()
    const perClass = new Array(10).fill(0)
    for (const l of set.labels) perClass[l]++
    expect(set.count).toBe(10000)
    expect(perClass).toEqual(new Array(10).fill(1000))
  })
})

describe('memory', () => {
  it('leaves no tensors behind', () => {
    expect(tf.memory().numTensors).toBe(tensorsBefore)
  })
})
