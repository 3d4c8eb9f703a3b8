/**
 * Runs tfjs-core's published test suite (Jasmine) against the `native` backend, or against
 * another backend with `--backend cpu` (to check that an exclusion also fails there).
 *
 *   npx tsx packages/backend-native/src/conformance/run.ts [--backend cpu] [--filter regex] [--verbose]
 *
 * tfjs-core ships its tests as ES modules with extension-less imports, which Node cannot load
 * as they are; esbuild bundles them with spec.ts into one CommonJS file, resolving every
 * @tensorflow package to its ES build so the tests, the kernels and the backend share one copy
 * of tfjs-core. Prints each failing spec, then one `SUITE {json}` summary line; exits 1 on any
 * failure or when no spec passed.
 */
import { mkdirSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import Jasmine, { type Expectation } from 'jasmine'

const here = dirname(fileURLToPath(import.meta.url))

export interface SuiteSummary {
  backend: string
  passed: number
  failed: number
  /** Specs filtered out (the exclusion list, --filter) or marked pending by tfjs itself. */
  skipped: number
  failures: { name: string; message: string }[]
  seconds: number
}

/**
 * Bundles spec.ts and the suite into the package's build/ directory (git-ignored, next to the
 * addon), so the bundled backend finds build/Release/sprout_native.node relative to itself and
 * node_modules resolve from there. One file per process: concurrent runs do not collide.
 */
async function bundle(): Promise<string> {
  const file = join(here, '..', '..', 'build', `tfjs-core-suite-${process.pid}.cjs`)
  mkdirSync(dirname(file), { recursive: true })
  await build({
    entryPoints: [join(here, 'spec.ts')],
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // The ES builds: the CommonJS `main` bundles would load a second tfjs-core beside dist/tests.
    mainFields: ['module', 'main'],
    // jasmine-core stays the installed one (tfjs's jasmine_util requires it at run time).
    external: ['jasmine-core'],
    // tfjs-core's package.json declares its test files free of side effects, which would let
    // the bundler drop every one of them.
    ignoreAnnotations: true,
    logLevel: 'error',
  })
  return file
}

const firstLines = (es: Expectation[]) => es.map((e) => e.message.split('\n')[0]).join('; ')

export async function runSuite(
  backend: string,
  options: { filter?: string; verbose?: boolean } = {},
): Promise<SuiteSummary> {
  const start = performance.now()
  const file = await bundle()
  process.env.SPROUT_SUITE_BACKEND = backend
  const summary: SuiteSummary = { backend, passed: 0, failed: 0, skipped: 0, failures: [], seconds: 0 }
  const fail = (name: string, message: string) => {
    summary.failed++
    summary.failures.push({ name, message })
    console.log(`FAILED ${name}\n  ${message.slice(0, 400)}`)
  }
  const runner = new Jasmine({})
  runner.exitOnCompletion = false
  runner.loadConfig({ spec_files: [file], jsLoader: 'require', random: false })
  runner.env.clearReporters()
  runner.env.addReporter({
    specDone(result) {
      if (options.verbose) console.log(result.status, result.fullName)
      if (result.status === 'passed') summary.passed++
      else if (result.status === 'failed') fail(result.fullName, firstLines(result.failedExpectations))
      else summary.skipped++
    },
    // An error thrown in a beforeAll/afterAll fails the suite, not a spec.
    suiteDone(result) {
      if (result.status === 'failed')
        fail(`(suite) ${result.fullName}`, firstLines(result.failedExpectations))
    },
    // Errors outside any spec (a test file that throws while loading, an unhandled rejection).
    jasmineDone(result) {
      for (const e of result.failedExpectations) fail('(global)', e.message.split('\n')[0])
    },
  })
  try {
    await runner.execute(undefined, options.filter)
  } finally {
    rmSync(file, { force: true })
  }
  summary.seconds = Math.round((performance.now() - start) / 100) / 10
  return summary
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i > 0 ? process.argv[i + 1] : undefined
  }
  const summary = await runSuite(arg('--backend') ?? 'native', {
    filter: arg('--filter'),
    verbose: process.argv.includes('--verbose'),
  })
  console.log(`SUITE ${JSON.stringify(summary)}`)
  process.exitCode = summary.failed > 0 || summary.passed === 0 ? 1 : 0
}
