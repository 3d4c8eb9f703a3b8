#!/usr/bin/env node
// Builds the native addon (build/Release/sprout_native.node) with node-gyp against the running
// Node's own headers, never downloading them. Two ways in:
//   install (npm's install step): a failure is reported in one line and the install succeeds,
//     because Sprout then runs on the slower cpu backend and says how to build later;
//   `npx @sprout/backend-native build`: the same build, with the compiler's output and exit 1 on
//     failure.
// Plain CommonJS with no dependencies: it runs before anything is built (in a source checkout
// `npm install` runs it before tsup has made dist/). The package's doctor reuses the checks.
'use strict'
const { spawnSync } = require('node:child_process')
const { existsSync, mkdirSync, readFileSync, writeFileSync, openSync, closeSync } = require('node:fs')
const { delimiter, dirname, join } = require('node:path')
const os = require('node:os')

const PKG_DIR = join(__dirname, '..')
const ADDON = join(PKG_DIR, 'build', 'Release', 'sprout_native.node')
/** Where the outcome of the last build attempt is kept, for the backend's messages and the doctor. */
const STATUS_FILE = join(PKG_DIR, 'build', 'sprout-build.json')
const BUILD_COMMAND = 'npx @sprout/backend-native build'
const LOG_FILE = join(os.tmpdir(), 'sprout-backend-native-build.log')

function onPath(command) {
  if (command.includes('/')) return existsSync(command) ? command : null
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    const full = join(dir, command)
    if (dir && existsSync(full)) return full
  }
  return null
}

/** Directories holding include/node/node_api.h for this Node: npm's nodedir, then the install prefix. */
function nodeHeaderDirs() {
  const dirs = []
  if (process.env.npm_config_nodedir) dirs.push(process.env.npm_config_nodedir)
  dirs.push(dirname(dirname(process.execPath))) // /usr for Debian's nodejs, the tarball's root otherwise
  const cache = join(os.homedir(), '.cache', 'node-gyp', process.versions.node) // a previous node-gyp download
  dirs.push(cache)
  return dirs
}

function findNodeDir() {
  return nodeHeaderDirs().find((d) => existsSync(join(d, 'include', 'node', 'node_api.h'))) || null
}

const BLAS_INCLUDE_DIRS = [
  '/usr/include/openblas',
  `/usr/include/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`,
  '/usr/include',
  '/usr/local/include',
  '/opt/homebrew/opt/openblas/include',
  '/usr/local/opt/openblas/include',
]
const BLAS_LIB_DIRS = [
  `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`,
  `/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`,
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/lib',
  '/opt/homebrew/opt/openblas/lib',
  '/usr/local/opt/openblas/lib',
]

/** OpenBLAS's header and linkable library: under SPROUT_OPENBLAS_DIR if set, else the usual places. */
function findOpenBlas() {
  const prefix = process.env.SPROUT_OPENBLAS_DIR
  const includeDirs = prefix
    ? [join(prefix, 'include'), join(prefix, 'include', 'openblas')]
    : BLAS_INCLUDE_DIRS
  const libDirs = prefix ? [join(prefix, 'lib')] : BLAS_LIB_DIRS
  const libNames = process.platform === 'darwin' ? ['libopenblas.dylib'] : ['libopenblas.so']
  const header = includeDirs.map((d) => join(d, 'cblas.h')).find((f) => existsSync(f)) || null
  const library = libDirs.flatMap((d) => libNames.map((n) => join(d, n))).find((f) => existsSync(f)) || null
  return { prefix: prefix || null, header, library, includeDirs, libDirs }
}

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    // npm bundles node-gyp next to itself.
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
    join(dirname(process.execPath), '..', 'share', 'nodejs', 'node-gyp', 'bin', 'node-gyp.js'),
    '/usr/share/nodejs/node-gyp/bin/node-gyp.js',
  ]
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'))
  } catch {}
  const script = candidates.find((f) => f && existsSync(f))
  if (script) return { command: process.execPath, args: [script] }
  const bin = onPath('node-gyp')
  return bin ? { command: bin, args: [] } : null
}

/**
 * Everything the build needs, each `{ what, ok, found?, missing? }`; `missing` says what to
 * install. No check runs the compiler.
 */
function checkPrerequisites() {
  const checks = []
  const add = (what, found, missing) =>
    checks.push({ what, ok: Boolean(found), found: found || undefined, missing: found ? undefined : missing })
  add(
    'platform',
    process.platform === 'linux' || process.platform === 'darwin'
      ? `${process.platform}-${process.arch}`
      : null,
    `${process.platform} is not supported (Linux or macOS only)`,
  )
  const nodeDir = findNodeDir()
  add(
    'Node.js headers',
    nodeDir && join(nodeDir, 'include', 'node'),
    `Node.js headers for ${process.version} (no include/node/node_api.h in ${nodeHeaderDirs().join(', ')}); install the headers that match this Node (Debian: apt-get install nodejs-dev or libnode-dev; official tarballs include them)`,
  )
  const cxx = process.env.CXX || (process.platform === 'darwin' ? 'clang++' : 'g++')
  add(
    'C++ compiler',
    onPath(cxx) || (!process.env.CXX && onPath('c++')),
    `a C++17 compiler (${cxx}; Debian: apt-get install g++)`,
  )
  add('make', onPath('make'), 'make (Debian: apt-get install make)')
  const python = process.env.PYTHON || process.env.npm_config_python || 'python3'
  add(
    'python3 (for node-gyp)',
    onPath(python),
    `${python} (node-gyp needs Python 3; Debian: apt-get install python3)`,
  )
  const gyp = findNodeGyp()
  add(
    'node-gyp',
    gyp ? (gyp.args[0] ?? gyp.command) : null,
    'node-gyp (bundled with npm; or npm install -g node-gyp)',
  )
  const blas = findOpenBlas()
  const where = blas.prefix ? ` under SPROUT_OPENBLAS_DIR=${blas.prefix}` : ''
  add(
    'OpenBLAS headers (cblas.h)',
    blas.header,
    `OpenBLAS headers: no cblas.h${where} in ${blas.includeDirs.join(', ')} (Debian: apt-get install libopenblas-dev; Fedora: openblas-devel; macOS: brew install openblas; or set SPROUT_OPENBLAS_DIR to its prefix)`,
  )
  add(
    'OpenBLAS library',
    blas.library,
    `the OpenBLAS library: no libopenblas${where} in ${blas.libDirs.join(', ')} (Debian: apt-get install libopenblas-dev)`,
  )
  return { checks, nodeDir, gyp, blas }
}

function writeStatus(status) {
  try {
    mkdirSync(dirname(STATUS_FILE), { recursive: true })
    writeFileSync(
      STATUS_FILE,
      `${JSON.stringify({ ...status, node: process.version, at: new Date().toISOString() }, null, 2)}\n`,
    )
  } catch {}
}

function readStatus() {
  try {
    return JSON.parse(readFileSync(STATUS_FILE, 'utf8'))
  } catch {
    return null
  }
}

/** Builds the addon; returns `{ ok: true }` or `{ ok: false, missing }` (one line, what is missing). */
function build({ verbose }) {
  const { checks, nodeDir, gyp, blas } = checkPrerequisites()
  const missing = checks.filter((c) => !c.ok).map((c) => c.missing)
  if (missing.length > 0) return { ok: false, missing: missing.join('; ') }
  const env = { ...process.env }
  if (blas.prefix) env.SPROUT_OPENBLAS_DIR = blas.prefix
  const args = [...gyp.args, 'rebuild', `--nodedir=${nodeDir}`]
  let stdio = 'inherit'
  let fd = null
  if (!verbose) {
    fd = openSync(LOG_FILE, 'w')
    stdio = ['ignore', fd, fd]
  }
  const r = spawnSync(gyp.command, args, { cwd: PKG_DIR, env, stdio })
  if (fd !== null) closeSync(fd)
  if (r.status !== 0) {
    const where = verbose ? 'see the compiler output above' : `compiler output in ${LOG_FILE}`
    return {
      ok: false,
      missing: `node-gyp failed (${r.error ? r.error.message : `exit ${r.status}`}; ${where})`,
    }
  }
  // Loading it proves the OpenBLAS runtime library is found too, not only the one linked against.
  try {
    require(ADDON)
  } catch (e) {
    return { ok: false, missing: `the built addon does not load: ${String(e.message).split('\n')[0]}` }
  }
  return { ok: true, detail: `built with ${nodeDir}/include/node and ${blas.library}` }
}

function main(argv) {
  const mode = argv[0] || 'build'
  if (mode === 'check') {
    process.stdout.write(`${JSON.stringify(checkPrerequisites().checks, null, 2)}\n`)
    return 0
  }
  if (mode === 'install') {
    // A source checkout installs before it builds: scripts/setup.sh builds the addon after tsup.
    if (process.env.SPROUT_SKIP_ADDON_BUILD) return 0
    const r = build({ verbose: false })
    writeStatus(r)
    if (r.ok) process.stderr.write(`@sprout/backend-native: addon built (${r.detail})\n`)
    else
      process.stderr.write(
        `@sprout/backend-native: not built, Sprout will use the slower cpu backend: missing ${r.missing}. Build it later with: ${BUILD_COMMAND}\n`,
      )
    return 0
  }
  if (mode === 'build') {
    const r = build({ verbose: true })
    writeStatus(r)
    if (r.ok) {
      process.stdout.write(`@sprout/backend-native: addon built (${r.detail})\n`)
      return 0
    }
    process.stderr.write(`@sprout/backend-native: build failed: missing ${r.missing}\n`)
    return 1
  }
  process.stderr.write(
    `usage: sprout-backend-native build | check (got "${mode}"): build compiles the OpenBLAS addon, check lists what the build needs\n`,
  )
  return 2
}

module.exports = { ADDON, BUILD_COMMAND, STATUS_FILE, checkPrerequisites, findOpenBlas, readStatus }

if (require.main === module) process.exitCode = main(process.argv.slice(2))
