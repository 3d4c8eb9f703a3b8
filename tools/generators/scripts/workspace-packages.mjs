// The workspace's packages: every package.json under the root's workspace globs (publishable: not private).
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

export const root = resolve(import.meta.dirname, '../../..')

/** Every package.json under the root's workspace globs (private ones too). */
export function workspacePackages() {
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
}

export function publishablePackages() {
  return workspacePackages().filter(({ pkg }) => !pkg.private)
}
