import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, extname, isAbsolute, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { assertGrowthOperator, type GrowthOperator, OperatorRegistry, SproutError } from '@sprout/core'
import { builtinOperators } from './builtins.js'

export function builtinRegistry(): OperatorRegistry {
  const registry = new OperatorRegistry()
  for (const op of builtinOperators) registry.register(op)
  return registry
}

const PACKAGE_NAME = /^(@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/
const WHAT_TO_EXPORT =
  'it must default-export a GrowthOperator (`export default defineOperator({ name, description, options, capabilities, check, grow })` from @sprout/core)'

function looksLikePath(ref: string): boolean {
  return ref.startsWith('.') || isAbsolute(ref) || /\.(m?js|cjs|ts)$/.test(ref)
}

/** The ESM entry of a package.json: exports["."] (import/default conditions), then module, main, index.js. */
function packageEntry(dir: string): string {
  const manifest = join(dir, 'package.json')
  if (!existsSync(manifest)) return join(dir, 'index.js')
  let pkg: { exports?: unknown; module?: string; main?: string }
  try {
    pkg = JSON.parse(readFileSync(manifest, 'utf8'))
  } catch (e) {
    throw new SproutError('METHOD_INVALID', `${manifest} is not valid JSON (${(e as Error).message})`)
  }
  const pick = (value: unknown): string | undefined => {
    if (typeof value === 'string') return value
    if (value && typeof value === 'object') {
      const conditions = value as Record<string, unknown>
      if ('.' in conditions) return pick(conditions['.'])
      for (const c of ['import', 'node', 'default']) if (c in conditions) return pick(conditions[c])
    }
    return undefined
  }
  const entry = pick(pkg.exports) ?? pkg.module ?? pkg.main ?? 'index.js'
  return join(dir, entry)
}

/** Finds an installed package from the working directory upwards (where the user installed it). */
function findInstalledPackage(name: string, from: string): string | null {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name)
    if (existsSync(join(candidate, 'package.json'))) return candidate
    if (dirname(dir) === dir) return null
  }
}

function fileSpecifier(path: string, ref: string): string {
  if (!existsSync(path))
    throw new SproutError(
      'METHOD_INVALID',
      `method ${ref}: its entry ${path} does not exist; build the plugin first (e.g. \`npx tsup\` in its folder)`,
    )
  if (extname(path) === '.ts')
    throw new SproutError(
      'METHOD_INVALID',
      `method ${ref} is TypeScript source, which Node cannot import; build it (e.g. \`npx tsup\`) and pass the package folder or the built .js file`,
    )
  return pathToFileURL(path).href
}

function availableNames(registry: OperatorRegistry): string {
  return registry
    .list()
    .map((o) => o.name)
    .join(', ')
}

/**
 * Resolves `--method`: a built-in name, a path to a module file or plugin folder, or an
 * installed package name (looked up from the working directory, then from the CLI's own
 * install). The module must default-export a GrowthOperator.
 */
export async function resolveMethod(
  ref: string,
  registry: OperatorRegistry,
  cwd: string = process.cwd(),
): Promise<GrowthOperator<any>> {
  if (registry.has(ref)) return registry.get(ref)
  let specifier: string
  if (looksLikePath(ref)) {
    const abs = resolve(cwd, ref)
    if (!existsSync(abs)) throw new SproutError('METHOD_UNKNOWN', `method path ${ref} does not exist`)
    specifier = fileSpecifier(statSync(abs).isDirectory() ? packageEntry(abs) : abs, ref)
  } else if (PACKAGE_NAME.test(ref)) {
    const installed = findInstalledPackage(ref, cwd)
    specifier = installed ? fileSpecifier(packageEntry(installed), ref) : ref
  } else {
    throw new SproutError('METHOD_UNKNOWN', `unknown method "${ref}"; available: ${availableNames(registry)}`)
  }
  let mod: Record<string, unknown>
  try {
    mod = await import(specifier)
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    const missing = err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND'
    if (specifier === ref && missing)
      throw new SproutError(
        'METHOD_UNKNOWN',
        `unknown method "${ref}": not built in (${availableNames(registry)}) and no package of that name is installed (npm i ${ref})`,
      )
    throw new SproutError('METHOD_INVALID', `cannot load method module ${ref}: ${err.message.split('\n')[0]}`)
  }
  // A CommonJS build seen through import() nests the default export one level deeper.
  const exported = mod.default as Record<string, unknown> | undefined
  const op = exported && typeof exported === 'object' && 'default' in exported ? exported.default : exported
  if (op === undefined) {
    const named = Object.keys(mod).filter((k) => k !== 'default')
    throw new SproutError(
      'METHOD_INVALID',
      `method module ${ref} has no default export${named.length > 0 ? ` (it exports ${named.join(', ')})` : ''}; ${WHAT_TO_EXPORT}`,
    )
  }
  try {
    assertGrowthOperator(op, `the default export of ${ref}`)
  } catch (e) {
    throw new SproutError('METHOD_INVALID', `${(e as Error).message}; ${WHAT_TO_EXPORT}`)
  }
  return op
}

/**
 * Adds to `registry` every entry of `refs` that is not already registered, loading it like
 * `--method` (path or installed package), and returns the names in `refs` order. Entries in
 * `skip` (e.g. "scratch" or a suite's variants) are passed through untouched.
 */
export async function registerMethods(
  refs: string[],
  registry: OperatorRegistry,
  skip: ReadonlySet<string> = new Set(),
  cwd: string = process.cwd(),
): Promise<string[]> {
  const names: string[] = []
  for (const ref of refs) {
    if (skip.has(ref) || registry.has(ref)) {
      names.push(ref)
      continue
    }
    const op = await resolveMethod(ref, registry, cwd)
    if (!registry.has(op.name)) registry.register(op)
    names.push(op.name)
  }
  return names
}
