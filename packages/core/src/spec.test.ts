import { describe, expect, it } from 'vitest'
import { exampleFlops, FlopMeter } from './flops.js'
import { countParams, paramTable } from './params.js'
import { parseSpec } from './spec.js'

const gpt = { family: 'decoder', vocabSize: 256, maxSeqLen: 64, dModel: 128, nLayers: 2, nHeads: 4, dFF: 512 }

describe('parseSpec', () => {
  it('fills defaults', () => {
    expect(parseSpec(gpt)).toMatchObject({
      headDim: 32,
      norm: 'layernorm',
      normPlacement: 'pre',
      activation: 'gelu',
      bias: true,
      tieEmbeddings: true,
      normEps: 1e-5,
    })
    const vit = parseSpec({
      family: 'vit',
      image: { size: 28, patch: 7, channels: 1, classes: 10 },
      dModel: 64,
      nLayers: 2,
      nHeads: 4,
      dFF: 128,
    })
    expect(vit.maxSeqLen).toBe(17)
    expect(vit.tieEmbeddings).toBe(false)
  })
  it('keeps moe.expertDFF only when experts are narrower or wider than dFF', () => {
    const fine = parseSpec({ ...gpt, moe: { experts: 4, layers: [0], expertDFF: 64 } })
    expect(fine.moe!.expertDFF).toBe(64)
    const same = parseSpec({ ...gpt, moe: { experts: 4, layers: [0], expertDFF: gpt.dFF } })
    expect('expertDFF' in same.moe!).toBe(false)
  })
  it.each([
    [{ ...gpt, dModel: 100, nHeads: 3 }, /dModel 100 is not divisible by nHeads 3/],
    [{ ...gpt, nLayers: 0 }, /spec\.nLayers/],
    [{ ...gpt, nLayers: 2.5 }, /spec\.nLayers.*2\.5/],
    [{ ...gpt, family: 'gpt' }, /spec\.family: "gpt" is not one of "decoder", "encoder", "vit"/],
    [{ ...gpt, activation: 'tanh' }, /spec\.activation/],
    [{ ...gpt, dmodel: 3 }, /unknown field\(s\) "dmodel"/],
    [{ ...gpt, vocabSize: undefined }, /spec\.vocabSize/],
    [{ ...gpt, maxSeqLen: undefined }, /spec\.maxSeqLen: required/],
    [{ ...gpt, moe: { experts: 2, topK: 3, layers: [0] } }, /spec\.moe\.topK: 3 exceeds the 2 experts/],
    [{ ...gpt, moe: { experts: 4, layers: [5] } }, /layer 5 does not exist/],
    [{ ...gpt, moe: { experts: 4, layers: [0], expertDFF: 0 } }, /spec\.moe\.expertDFF/],
    [{ family: 'vit', dModel: 8, nLayers: 1, nHeads: 2, dFF: 8 }, /spec\.image: required/],
    [
      {
        family: 'vit',
        image: { size: 10, patch: 3, channels: 1, classes: 2 },
        dModel: 8,
        nLayers: 1,
        nHeads: 2,
        dFF: 8,
      },
      /size 10 is not divisible by patch 3/,
    ],
    [
      {
        family: 'vit',
        image: { size: 4, patch: 2, channels: 1, classes: 2 },
        dModel: 8,
        nLayers: 1,
        nHeads: 2,
        dFF: 8,
        tieEmbeddings: true,
      },
      /cannot be tied/,
    ],
    [[1, 2], /expected a JSON object/],
  ])('rejects %j', (input, message) => {
    expect(() => parseSpec(input)).toThrow(message)
  })
})

describe('role table and FLOPs', () => {
  it('counts GPT parameters like the closed form', () => {
    const s = parseSpec(gpt)
    // embeddings V·D + T·D, per layer 4(D²+D) + 2D (2 LN) ·2 + D·F + F + F·D + D, final LN 2D
    const D = 128,
      F = 512,
      L = 2
    const perLayer = 4 * (D * D + D) + 4 * D + D * F + F + F * D + D
    expect(countParams(s)).toBe(256 * D + 64 * D + L * perLayer + 2 * D)
  })
  it('gives every axis a role and every linear an [in, out] layout', () => {
    const s = parseSpec({ ...gpt, activation: 'swiglu', tieEmbeddings: false, nHeads: 8, headDim: 8 })
    const q = paramTable(s).find((p) => p.name === 'layers.1.attn.q.weight')!
    expect(q).toMatchObject({ shape: [128, 64], axes: ['residual', 'attn'], module: 'attn.q', layer: 1 })
    expect(paramTable(s).find((p) => p.name === 'layers.0.mlp.gate.weight')!.axes).toEqual([
      'residual',
      'ffn',
    ])
    expect(paramTable(s).find((p) => p.name === 'head.weight')!.axes).toEqual(['residual', 'vocab'])
    for (const p of paramTable(s)) expect(p.axes.length).toBe(p.shape.length)
  })
  it('computes forward FLOPs by hand for a tiny model', () => {
    const s = parseSpec({
      family: 'decoder',
      vocabSize: 10,
      maxSeqLen: 4,
      dModel: 2,
      nLayers: 1,
      nHeads: 1,
      dFF: 3,
    })
    const T = 4
    const expected = 2 * T * (3 * 4 + 4) + 4 * T * T * 2 + 2 * T * 2 * 2 * 3 + 2 * T * 2 * 10
    const f = exampleFlops(s, T)
    expect(f.forward).toBe(expected)
    expect(f.total).toBe(3 * expected)
    const moe = parseSpec({
      family: 'decoder',
      vocabSize: 10,
      maxSeqLen: 4,
      dModel: 2,
      nLayers: 1,
      nHeads: 1,
      dFF: 3,
      moe: { experts: 4, topK: 2, layers: [0] },
    })
    expect(exampleFlops(moe, T).forward).toBe(expected + 2 * T * 2 * 2 * 3 + 2 * T * 2 * 4)
  })
  it('meters FLOPs by label and refuses nonsense', () => {
    const m = new FlopMeter()
    m.add(10, 'fit')
    m.add(5, 'fit')
    m.add(1)
    expect(m.total).toBe(16)
    expect(m.breakdown()).toEqual({ fit: 15, other: 1 })
    expect(() => m.add(Number.NaN)).toThrow(RangeError)
  })
})
