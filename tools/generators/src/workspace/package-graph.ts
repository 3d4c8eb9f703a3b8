import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'

/** One package naming another in a source file. */
export interface PackageEdge {
  from: string
  to: string
  /** The file, relative to the package's directory. */
  file: string
  /** False for tests, test utilities, bench scripts and fixtures, which only development loads. */
  runtime: boolean
}

const SKIP_DIRS = new Set(['node_modules', 'dist', 'build', 'native', 'files'])
const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/
const DEV_FILE = /(^|\/)(bench|fixtures|test|testing)\/|\.test\.ts$|\.test-d\.ts$|\.testutil\.ts$/
// A package named as a whole string literal: import ... from '@sprout/x', import('@sprout/x/sub'),
// require('@sprout/x'), or a module name kept in a constant (which is still a dependency).
const PACKAGE_LITERAL = /(['"`])(@sprout\/[a-z0-9-]+)(?:\/[^'"`\s]*)?\1/g

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    if (d.isDirectory()) return SKIP_DIRS.has(d.name) ? [] : sourceFiles(join(dir, d.name))
    return SOURCE.test(d.name) ? [join(dir, d.name)] : []
  })
}

/** Every mention of one workspace package by another, found by reading each package's sources. */
export function packageEdges(packages: { name: string; dir: string }[]): PackageEdge[] {
  const names = new Set(packages.map((p) => p.name))
  const edges: PackageEdge[] = []
  for (const { name, dir } of packages)
    for (const path of sourceFiles(dir)) {
      const file = relative(dir, path)
      const runtime = file.startsWith('src/') && !DEV_FILE.test(file)
      const seen = new Set<string>()
      for (const m of readFileSync(path, 'utf8').matchAll(PACKAGE_LITERAL)) {
        const to = m[2]
        if (to === name || !names.has(to) || seen.has(to)) continue
        seen.add(to)
        edges.push({ from: name, to, file, runtime })
      }
    }
  return edges
}

/** A cycle in the directed graph, as [a, b, ..., a], or null when there is none. */
export function findCycle(edges: { from: string; to: string }[]): string[] | null {
  const next = new Map<string, Set<string>>()
  for (const { from, to } of edges) {
    if (!next.has(from)) next.set(from, new Set())
    next.get(from)!.add(to)
  }
  const state = new Map<string, 'open' | 'done'>()
  const path: string[] = []
  const visit = (node: string): string[] | null => {
    if (state.get(node) === 'done') return null
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node]
    state.set(node, 'open')
    path.push(node)
    for (const to of [...(next.get(node) ?? [])].sort()) {
      const cycle = visit(to)
      if (cycle) return cycle
    }
    path.pop()
    state.set(node, 'done')
    return null
  }
  for (const node of [...next.keys()].sort()) {
    const cycle = visit(node)
    if (cycle) return cycle
  }
  return null
}
