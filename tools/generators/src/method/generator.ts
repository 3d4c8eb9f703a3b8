import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  formatFiles,
  type GeneratorCallback,
  generateFiles,
  logger,
  names,
  offsetFromRoot,
  type Tree,
} from '@nx/devkit'

export interface MethodGeneratorSchema {
  name: string
  description?: string
  /** Folder for the plugin, relative to the workspace root (default "plugins"). */
  directory?: string
}

const NAME = /^[a-z][a-z0-9-]*$/

/** The templates sit in files/method at the package root, both for src/method (tests) and dist (nx). */
function templatesDir(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  const candidates = [join(here, '..', '..', 'files', 'method'), join(here, '..', 'files', 'method')]
  const found = candidates.find((c) => existsSync(c))
  if (!found)
    throw new Error(`@sprout/tools: method templates not found (looked in ${candidates.join(', ')})`)
  return found
}

/** The range plugins declare on a workspace package: its current minor (changesets keeps it up). */
function workspaceRange(tree: Tree, dir: string): string {
  const manifest = tree.read(join(dir, 'package.json'), 'utf-8')
  const version = manifest ? (JSON.parse(manifest).version as string) : '0.1.0'
  const [major, minor] = version.split('.')
  return `^${major}.${minor}.0`
}

/** The repository every package points to, from the root package.json (one place to change it). */
function repository(tree: Tree): { url: string; web: string } {
  const root = JSON.parse(tree.read('package.json', 'utf-8') ?? '{}') as { repository?: { url?: string } }
  const url = root.repository?.url
  if (!url)
    throw new Error('the root package.json has no repository.url; add it before scaffolding a package')
  return { url, web: url.replace(/^git\+/, '').replace(/\.git$/, '') }
}

const singleQuoted = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`

/**
 * Scaffolds plugins/<name>: package.json, tsup and tsconfig like the other plugins, a typed
 * GrowthOperator skeleton that refuses to grow until implemented, the conformance test, a
 * README template and a changeset. The root vitest config discovers the new project by itself.
 */
export async function methodGenerator(tree: Tree, schema: MethodGeneratorSchema): Promise<GeneratorCallback> {
  const name = schema.name?.trim()
  if (!name || !NAME.test(name))
    throw new Error(
      `method name "${schema.name ?? ''}" must be lower-case letters, digits and dashes, starting with a letter (e.g. my-method)`,
    )
  const root = join(schema.directory ?? 'plugins', name)
  if (tree.exists(root))
    throw new Error(`${root} already exists; choose another method name or remove the folder`)
  const description = schema.description?.trim() || `the ${name} growth method`
  const n = names(name)
  const repo = repository(tree)
  generateFiles(tree, templatesDir(), root, {
    name,
    className: n.className,
    propertyName: n.propertyName,
    descriptionLiteral: singleQuoted(description),
    descriptionJson: JSON.stringify(`Sprout growth operator ${name}: ${description}`),
    description,
    coreRange: workspaceRange(tree, 'packages/core'),
    testkitRange: workspaceRange(tree, 'packages/testkit'),
    repositoryUrl: repo.url,
    repositoryWeb: repo.web,
    directory: root,
    rootOffset: offsetFromRoot(root),
    tmpl: '',
  })
  // Every package ships the license text (npm packs only files inside the package).
  const license = tree.read('LICENSE')
  if (license) tree.write(join(root, 'LICENSE'), license)
  tree.write(
    join('.changeset', `${name}-initial.md`),
    `---\n"@sprout/${name}": minor\n---\n\n@sprout/${name}: ${description}.\n`,
  )
  await formatFiles(tree)
  return () => {
    logger.info(
      [
        `Created ${root} (@sprout/${name}). Next:`,
        '  1. npm install                       (links the new workspace package)',
        `  2. implement check() and grow() in ${root}/src/index.ts and set its capabilities`,
        `  3. npx vitest run --project @sprout/${name}   (the conformance suite fails until grow() works)`,
        `  4. npx nx run @sprout/${name}:build && sprout grow --method ./${root} ...`,
        `  5. fill in ${root}/README.md with measured numbers, edit .changeset/${name}-initial.md, open a PR`,
      ].join('\n'),
    )
  }
}

export default methodGenerator
