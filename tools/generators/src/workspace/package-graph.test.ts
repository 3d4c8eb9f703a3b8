import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { root, workspacePackages } from '../../scripts/workspace-packages.mjs'
import { findCycle, type PackageEdge, packageEdges } from './package-graph.js'

const packages = workspacePackages().map(({ dir, pkg }) => ({ dir, name: pkg.name, pkg }))
const edges = packageEdges(packages)

// Dependencies known to close a cycle, each with the issue that removes it. The test fails when
// one disappears, so the exception is deleted together with the cycle.
const KNOWN: { from: string; to: string; why: string }[] = []
const isKnown = (e: { from: string; to: string }) => KNOWN.some((k) => k.from === e.from && k.to === e.to)

function describeCycle(cycle: string[], all: PackageEdge[]): string {
  return cycle
    .slice(1)
    .map((to, i) => {
      const from = cycle[i]
      const files = all.filter((e) => e.from === from && e.to === to).map((e) => e.file)
      return `${from} -> ${to} (${files.join(', ')})`
    })
    .join('; ')
}

describe('package graph', () => {
  it('finds the packages and the edges everyone knows about', () => {
    expect(packages.length).toBeGreaterThan(10)
    expect(edges).toContainEqual({
      from: '@sprout/lemon',
      to: '@sprout/core',
      file: 'src/index.ts',
      runtime: true,
    })
  })

  it('has no import cycle between packages, counting tests, bench scripts and module names in strings', () => {
    const cycle = findCycle(edges.filter((e) => !isKnown(e)))
    expect(cycle && describeCycle(cycle, edges)).toBeNull()
  })

  it('still has each known exception (delete it from KNOWN once its cycle is gone)', () => {
    for (const k of KNOWN)
      expect(
        edges.some((e) => e.from === k.from && e.to === k.to),
        k.why,
      ).toBe(true)
  })

  it('declares every package a runtime file names (dependencies or peerDependencies)', () => {
    const undeclared = edges
      .filter((e) => e.runtime && !isKnown(e))
      .filter((e) => {
        const pkg = packages.find((p) => p.name === e.from)!.pkg as {
          dependencies?: Record<string, string>
          peerDependencies?: Record<string, string>
        }
        return !(e.to in (pkg.dependencies ?? {})) && !(e.to in (pkg.peerDependencies ?? {}))
      })
      .map((e) => `${e.from} ${e.file} -> ${e.to}`)
    expect(undeclared).toEqual([])
  })

  it('is the graph docs/ARCHITECTURE.md draws (runtime imports, known exceptions left out)', () => {
    const doc = readFileSync(join(root, 'docs/ARCHITECTURE.md'), 'utf8')
    const block = /```mermaid\n([\s\S]*?)```/.exec(doc)![1]
    const drawn = [...block.matchAll(/^\s*([\w-]+) --> ([\w-]+)$/gm)].map((m) => `${m[1]} -> ${m[2]}`)
    const short = (name: string) => name.replace('@sprout/', '')
    const actual = new Set(
      edges.filter((e) => e.runtime && !isKnown(e)).map((e) => `${short(e.from)} -> ${short(e.to)}`),
    )
    expect(drawn.sort()).toEqual([...actual].sort())
  })

  it('findCycle finds a cycle and its path, and accepts a diamond', () => {
    const diamond = [
      { from: 'a', to: 'b' },
      { from: 'a', to: 'c' },
      { from: 'b', to: 'd' },
      { from: 'c', to: 'd' },
    ]
    expect(findCycle(diamond)).toBeNull()
    expect(findCycle([...diamond, { from: 'd', to: 'b' }])).toEqual(['b', 'd', 'b'])
    expect(findCycle([{ from: 'x', to: 'x' }])).toEqual(['x', 'x'])
  })
})
