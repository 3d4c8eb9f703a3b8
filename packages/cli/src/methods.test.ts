import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { OperatorRegistry, SproutError } from '@sprout/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from './main.js'
import { builtinRegistry, registerMethods, resolveMethod } from './methods.js'

// A minimal operator as plain ESM, without imports: loading does not depend on @sprout/core being resolvable.
const operatorSource = (name: string) => `{
  name: '${name}',
  description: 'a tiny test operator',
  options: { safeParse: (v) => ({ success: true, data: v }), parse: (v) => v },
  capabilities: { width: true, depth: false, heads: false, ffn: false, moe: false, learned: false, functionPreserving: false },
  check() {},
  async grow() { throw new Error('not used') },
}`

let dir: string
const write = (path: string, text: string) => {
  mkdirSync(resolve(dir, path, '..'), { recursive: true })
  writeFileSync(join(dir, path), text)
}
const registry = new OperatorRegistry()
const load = (ref: string) => resolveMethod(ref, registry, dir)
const failure = async (ref: string): Promise<SproutError> => {
  try {
    await load(ref)
  } catch (e) {
    expect(e).toBeInstanceOf(SproutError)
    return e as SproutError
  }
  throw new Error(`${ref} loaded`)
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sprout-methods-'))
  write('file-op.mjs', `export default ${operatorSource('file-op')}`)
  write(
    'folder-op/package.json',
    JSON.stringify({
      name: 'folder-op',
      type: 'module',
      exports: {
        '.': {
          import: { types: './dist/index.d.ts', default: './dist/index.js' },
          require: './dist/index.cjs',
        },
      },
    }),
  )
  write('folder-op/dist/index.js', `export default ${operatorSource('folder-op')}`)
  write(
    'node_modules/sprout-installed-op/package.json',
    JSON.stringify({ name: 'sprout-installed-op', type: 'module', main: 'main.js' }),
  )
  write('node_modules/sprout-installed-op/main.js', `export default ${operatorSource('installed-op')}`)
  write(
    'node_modules/@acme/grow/package.json',
    JSON.stringify({ name: '@acme/grow', type: 'module', exports: './index.js' }),
  )
  write('node_modules/@acme/grow/index.js', `const op = ${operatorSource('acme-grow')}\nexport default op`)
  write(
    'cjs-op.cjs',
    `Object.defineProperty(exports, '__esModule', { value: true })\nexports.default = ${operatorSource('cjs-op')}`,
  )
  write('named-only.mjs', `export const myMethod = ${operatorSource('named')}`)
  write('not-an-operator.mjs', `export default { name: 'Not An Operator', grow: 1 }`)
  write('broken.mjs', `export default {{`)
  write('source.ts', `export default {}`)
  // A working plugin in plain ESM: copies the model (tensor.clone() needs no import).
  write(
    'copy-op/index.mjs',
    `export default {
  ...${operatorSource('copy-op')},
  capabilities: { width: false, depth: false, heads: false, ffn: false, moe: false, learned: false, functionPreserving: true },
  async grow(source, target) {
    const params = Object.fromEntries(Object.entries(source.params).map(([n, t]) => [n, t.clone()]))
    const report = { method: 'copy-op', growthFlops: 0, steps: 0, seconds: 0, functionPreserving: true, maxAbsLogitDiff: null, details: {} }
    return { model: { spec: target, params }, report }
  },
}`,
  )
  write('copy-op/package.json', JSON.stringify({ name: 'copy-op', type: 'module', main: 'index.mjs' }))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('resolveMethod', () => {
  it('returns built-in methods by name', async () => {
    const builtins = builtinRegistry()
    expect((await resolveMethod('lemon', builtins)).name).toBe('lemon')
  })

  it('loads a module file, a plugin folder (package.json exports), and packages installed where the user runs sprout', async () => {
    expect((await load('./file-op.mjs')).name).toBe('file-op')
    expect((await load(join(dir, 'file-op.mjs'))).name).toBe('file-op')
    expect((await load('./folder-op')).name).toBe('folder-op')
    expect((await load('sprout-installed-op')).name).toBe('installed-op')
    expect((await load('@acme/grow')).name).toBe('acme-grow')
    expect((await load('./cjs-op.cjs')).name).toBe('cjs-op')
  })

  it('loads a real built plugin from its folder and the operator grows', async () => {
    const op = await resolveMethod(resolve(import.meta.dirname, '../../../plugins/identity'), registry)
    expect(op.name).toBe('identity')
    expect(op.capabilities.functionPreserving).toBe(true)
  })

  it('a module that does not default-export an operator gets an error naming the module and what to export', async () => {
    const named = await failure('./named-only.mjs')
    expect(named.code).toBe('METHOD_INVALID')
    expect(named.message).toMatch(
      /\.\/named-only\.mjs has no default export \(it exports myMethod\); it must default-export a GrowthOperator/,
    )
    const invalid = await failure('./not-an-operator.mjs')
    expect(invalid.code).toBe('METHOD_INVALID')
    expect(invalid.message).toMatch(
      /the default export of \.\/not-an-operator\.mjs is not a GrowthOperator: "name" must be a lower-case identifier/,
    )
    expect(invalid.message).toMatch(/"check" must be a function.*must default-export a GrowthOperator/)
  })

  it('missing paths, unknown packages, broken modules and TypeScript sources are explained', async () => {
    expect((await failure('./nowhere.mjs')).message).toBe('method path ./nowhere.mjs does not exist')
    const unknown = await failure('sprout-method-that-is-not-installed')
    expect(unknown.code).toBe('METHOD_UNKNOWN')
    expect(unknown.message).toMatch(
      /no package of that name is installed \(npm i sprout-method-that-is-not-installed\)/,
    )
    expect((await failure('./broken.mjs')).message).toMatch(/^cannot load method module \.\/broken\.mjs: /)
    expect((await failure('./source.ts')).message).toMatch(/TypeScript source.*build it/)
    expect((await failure('Not A Name!')).code).toBe('METHOD_UNKNOWN')
  })

  it('registerMethods adds loaded plugins to a registry under their own names', async () => {
    const reg = builtinRegistry()
    const names = await registerMethods(
      ['scratch', 'lemon', './file-op.mjs', 'sprout-installed-op'],
      reg,
      new Set(['scratch']),
      dir,
    )
    expect(names).toEqual(['scratch', 'lemon', 'file-op', 'installed-op'])
    expect(reg.get('file-op').name).toBe('file-op')
    await expect(registerMethods(['./named-only.mjs'], reg, new Set(), dir)).rejects.toThrow(
      /must default-export a GrowthOperator/,
    )
  })

  it('sprout grow --method <folder> grows with the loaded plugin; a bad module fails with the message, no stack', async () => {
    const io = () => {
      const lines: string[] = []
      return { lines, out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) }
    }
    const spec = join(dir, 'spec.json')
    writeFileSync(
      spec,
      JSON.stringify({
        family: 'decoder',
        vocabSize: 16,
        maxSeqLen: 8,
        dModel: 8,
        nLayers: 1,
        nHeads: 2,
        dFF: 16,
      }),
    )
    const init = io()
    expect(await main(['--backend', 'cpu', 'init', '--spec', spec, '--out', join(dir, 'small')], init)).toBe(
      0,
    )
    const grow = io()
    const args = ['--from', join(dir, 'small'), '--target', spec, '--verify', '--json']
    const code = await main(
      ['--backend', 'cpu', 'grow', '--method', join(dir, 'copy-op'), ...args, '--out', join(dir, 'grown')],
      grow,
    )
    expect(code, grow.lines.join('\n')).toBe(0)
    expect(JSON.parse(grow.lines.at(-1)!)).toMatchObject({ method: 'copy-op', maxAbsLogitDiff: 0 })
    const bad = io()
    expect(
      await main(
        [
          '--backend',
          'cpu',
          'grow',
          '--method',
          join(dir, 'named-only.mjs'),
          ...args,
          '--out',
          join(dir, 'x'),
        ],
        bad,
      ),
    ).not.toBe(0)
    expect(bad.lines.join('\n')).toMatch(
      /named-only\.mjs has no default export .* must default-export a GrowthOperator/,
    )
    expect(bad.lines.join('\n')).not.toMatch(/\n\s+at /)
  })
})
