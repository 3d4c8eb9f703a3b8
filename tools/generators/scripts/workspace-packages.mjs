// The workspace's publishable packages: every non-private package.json under the root's workspace globs.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

export const root = resolve(import.meta.dirname, '../../..')

export function publishablePackages() {
  const { workspaces } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  return workspaces
    .flatMap((glob) => {
      const base = join(root, glob.replace(/\/\*$/, ''))
      return existsSync(base)
        ? readdirSync(base, { withFileTypes: true })
            .filter((d) => d.isDirectory() && existsSync(join(base, d.name, 'package.json')))
            .map((d) => join(base, d.name))
        : []
    })
    .map((dir) => ({ dir, pkg: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) }))
    .filter(({ pkg }) => !pkg.private)
}
