import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { createTreeWithEmptyWorkspace } from '@nx/devkit/testing'
import { FsTree, flushChanges } from 'nx/src/generators/tree'
import { afterAll, describe, expect, it } from 'vitest'
import { methodGenerator } from './generator.js'

const workspace = resolve(import.meta.dirname, '../../../..')
// A unique plugin under plugins/ so the root vitest config discovers it exactly as it would a real one.
const name = `zz-gen-test-${process.pid}`
const pluginDir = join(workspace, 'plugins', name)
const changeset = join(workspace, '.changeset', `${name}-initial.md`)

afterAll(() => {
  rmSync(pluginDir, { recursive: true, force: true })
  rmSync(changeset, { force: true })
})

function withoutColor(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { FORCE_COLOR: _f, ...rest } = env
  return rest
}

function run(command: string, args: string[], cwd = workspace) {
  const r = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    env: { ...withoutColor(process.env), CI: '1', NO_COLOR: '1' },
  })
  return { status: r.status, output: `${r.stdout}\n${r.stderr}` }
}
const vitest = () => run('npx', ['vitest', 'run', '--project', `@sprout/${name}`])

// The 20-line example a contributor writes: widen dModel by zero-padding every tensor.
const exampleOperator = `import { assertNoShrink, defineOperator, GrowthError, type Params, paramTable, type TransformerSpec, z } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

function check(source: TransformerSpec, target: TransformerSpec): void {
  assertNoShrink(source, target, '${name}')
  for (const k of ['nLayers', 'nHeads', 'headDim', 'dFF'] as const)
    if (target[k] !== source[k]) throw new GrowthError(\`${name}: only dModel can grow, not \${k}\`)
  if (source.moe || target.moe) throw new GrowthError('${name}: mixture-of-experts is not supported')
}

export default defineOperator({
  name: '${name}',
  description: 'Widens dModel by zero-padding every tensor',
  options: z.strictObject({}),
  capabilities: { width: true, depth: false, heads: false, ffn: false, moe: false, learned: false, functionPreserving: false },
  check,
  async grow(source, target) {
    check(source.spec, target)
    const params = tf.tidy(() => {
      const out: Params = {}
      for (const p of paramTable(target)) {
        const s = source.params[p.name]
        out[p.name] = tf.pad(s, p.shape.map((d, i) => [0, d - s.shape[i]] as [number, number]))
      }
      return out
    })
    const report = { method: '${name}', growthFlops: 0, steps: 0, seconds: 0, functionPreserving: false, maxAbsLogitDiff: null, details: {} }
    return { model: { spec: structuredClone(target), params }, report }
  },
})
`

describe('method generator', () => {
  it('scaffolds a plugin whose conformance suite fails honestly, then passes once a 20-line operator is written, and builds', async () => {
    const tree = new FsTree(workspace, false)
    const done = await methodGenerator(tree, { name, description: "Zero-pads: it's an example" })
    flushChanges(workspace, tree.listChanges())
    done()
    for (const f of [
      'package.json',
      'tsup.config.ts',
      'tsconfig.json',
      'README.md',
      'src/index.ts',
      'src/conformance.test.ts',
      'LICENSE',
    ])
      expect(existsSync(join(pluginDir, f)), f).toBe(true)
    const pkg = JSON.parse(readFileSync(join(pluginDir, 'package.json'), 'utf8'))
    expect(pkg).toMatchObject({
      name: `@sprout/${name}`,
      sideEffects: false,
      peerDependencies: { '@sprout/core': '^0.1.0' },
      devDependencies: { '@sprout/testkit': '^0.1.0' },
      repository: { directory: `plugins/${name}` },
      engines: { node: '>=20.19' },
    })
    expect(pkg.files).toContain('LICENSE')
    expect(pkg.exports['.'].require.types).toBe('./dist/index.d.cts')
    expect(readFileSync(changeset, 'utf8')).toContain(`"@sprout/${name}": minor`)
    expect(readFileSync(join(pluginDir, 'src/index.ts'), 'utf8')).toContain(
      "description: 'Zero-pads: it\\'s an example'",
    )

    const skeleton = vitest()
    expect(skeleton.status).not.toBe(0)
    expect(skeleton.output).toContain('grow() is not implemented yet')

    writeFileSync(join(pluginDir, 'src/index.ts'), exampleOperator)
    const implemented = vitest()
    expect(implemented.output).toMatch(/Tests\s+\d+ passed/)
    expect(implemented.status, implemented.output).toBe(0)

    const build = run('npx', ['tsup'], pluginDir)
    expect(build.status, build.output).toBe(0)
    for (const f of ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts'])
      expect(existsSync(join(pluginDir, 'dist', f)), f).toBe(true)
  })

  it('refuses bad names and existing folders', async () => {
    const tree = createTreeWithEmptyWorkspace()
    const rootPkg = JSON.parse(tree.read('package.json', 'utf-8')!)
    tree.write(
      'package.json',
      JSON.stringify({ ...rootPkg, repository: { type: 'git', url: 'git+https://example.com/x.git' } }),
    )
    await expect(methodGenerator(tree, { name: 'My Method' })).rejects.toThrow(
      /lower-case letters, digits and dashes/,
    )
    tree.write('plugins/taken/package.json', '{}')
    await expect(methodGenerator(tree, { name: 'taken' })).rejects.toThrow(/plugins\/taken already exists/)
    await methodGenerator(tree, { name: 'fresh', directory: 'methods' })
    expect(tree.read('methods/fresh/tsconfig.json', 'utf-8')).toContain(
      '"extends": "../../tsconfig.base.json"',
    )
    expect(tree.read('methods/fresh/src/conformance.test.ts', 'utf-8')).toContain(
      'describeGrowthOperator(fresh)',
    )
  })
})
