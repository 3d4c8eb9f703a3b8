import { describe, expect, it } from 'vitest'
import { assertGrowthOperator, capabilities, type GrowthOperator, OperatorRegistry, z } from './growth.js'
import { formatPaper, type OperatorMeta } from './operator-meta.js'

const paper = {
  title: 'Learning to Grow Pretrained Models for Efficient Transformer Training',
  authors: 'Wang et al.',
  venue: 'ICLR',
  year: 2023,
  url: 'https://arxiv.org/abs/2303.00980',
}

function operator(meta: unknown): GrowthOperator {
  return {
    name: 'toy',
    description: 'test operator',
    meta: meta as OperatorMeta,
    options: z.strictObject({}),
    capabilities: capabilities('width'),
    check: () => {},
    grow: async () => {
      throw new Error('unused')
    },
  }
}

describe('operator meta', () => {
  it('is optional, and a well-formed one is kept as data by the registry', () => {
    expect(() => assertGrowthOperator(operator(undefined), 'toy')).not.toThrow()
    const meta = { displayName: 'LiGO', papers: [paper] }
    expect(new OperatorRegistry().register(operator(meta)).get('toy').meta).toEqual(meta)
  })

  it('refuses malformed meta, naming each bad field', () => {
    expect(() => assertGrowthOperator(operator('LiGO (2023)'), 'toy')).toThrow(/"meta" must be an object/)
    expect(() => assertGrowthOperator(operator({ displayName: '', papers: [] }), 'toy')).toThrow(
      /"meta.displayName" must be a non-empty string/,
    )
    const bad = { displayName: 'LiGO', papers: [{ ...paper, year: 23, url: 'arxiv.org/abs/2303.00980' }] }
    expect(() => assertGrowthOperator(operator(bad), './ligo.js')).toThrow(
      /\.\/ligo\.js is not a GrowthOperator: "meta.papers\[0\]".year must be a year like 2023; "meta.papers\[0\]".url must be an https:\/\/ link/,
    )
  })

  it('formats a paper as one citation line', () => {
    expect(formatPaper(paper)).toBe(
      'Learning to Grow Pretrained Models for Efficient Transformer Training (Wang et al., ICLR 2023) https://arxiv.org/abs/2303.00980',
    )
  })
})
