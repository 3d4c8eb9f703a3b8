import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import type { Command } from 'commander'
import { describe, expect, it } from 'vitest'
import { buildProgram } from './main.js'

// Every `sprout …` line in the repository's Markdown (shell blocks and inline code) must name a
// real command and only flags that command (or the program) accepts: documentation that drifts
// from the CLI fails here instead of in a user's terminal.
const root = resolve(import.meta.dirname, '../../..')

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    if (d.name === 'node_modules' || d.name.startsWith('.')) return []
    const full = join(dir, d.name)
    if (d.isDirectory()) return markdownFiles(full)
    return d.name.endsWith('.md') ? [full] : []
  })
}

// `sprout`, `npx sprout`, `npx @sprout/cli`, optionally after VAR=value assignments or a prompt.
const INVOCATION =
  /^(?:\$\s+)?(?:[A-Z][A-Z0-9_]*=\S*\s+)*(?:npx\s+(?:-y\s+)?(?:@sprout\/cli|sprout)|sprout)\s+(.*)$/

interface Invocation {
  where: string
  args: string[]
}

function tokens(line: string): string[] {
  const out: string[] = []
  for (const m of line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) out.push(m[1] ?? m[2] ?? m[3]!)
  return out
}

const withoutComment = (line: string) => line.replace(/\s+#\s.*$/, '').trim()

function invocations(file: string): Invocation[] {
  const lines = readFileSync(file, 'utf8').split('\n')
  const found: Invocation[] = []
  let fence: string | null = null
  for (let i = 0; i < lines.length; i++) {
    const where = `${relative(root, file)}:${i + 1}`
    const line = lines[i]!
    const opening = line.match(/^\s*```(\w*)/)
    if (opening) {
      fence = fence === null ? opening[1]! : null
      continue
    }
    if (fence !== null) {
      if (!['sh', 'bash', 'shell', 'console', ''].includes(fence)) continue
      let text = line.trim()
      // Join continuation lines.
      while (text.endsWith('\\') && i + 1 < lines.length) text = `${text.slice(0, -1)} ${lines[++i]!.trim()}`
      for (const part of withoutComment(text).split(/\s*(?:&&|\|\||;)\s*/)) {
        const m = part.match(INVOCATION)
        if (m) found.push({ where, args: tokens(m[1]!) })
      }
      continue
    }
    for (const span of line.matchAll(/`([^`]+)`/g)) {
      const m = span[1]!.trim().match(INVOCATION)
      if (m) found.push({ where, args: tokens(m[1]!) })
    }
  }
  return found
}

const longFlags = (c: Command) => c.options.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f))

/** The problems of one invocation against the real program; empty when it is valid. */
function check(program: Command, args: string[]): string[] {
  const global = [...longFlags(program), '--help', '-h', '--version', '-V']
  let i = 0
  // Global options before the command (`sprout --backend cpu train …`).
  while (args[i]?.startsWith('-')) {
    const flag = args[i]!.split('=')[0]!
    if (!global.includes(flag)) return [`unknown global option ${flag}`]
    i += flag === '--backend' && !args[i]!.includes('=') ? 2 : 1
  }
  // A placeholder (`sprout …`, `sprout <command> --help`) names no command to check.
  if (i >= args.length || /^(…|\.\.\.|<.*>)$/.test(args[i]!)) return []
  let command: Command | undefined = program.commands.find((c) => c.name() === args[i])
  if (!command) return [`unknown command "${args[i]}"`]
  i++
  if (command.commands.length > 0) {
    const sub: Command | undefined = command.commands.find((c) => c.name() === args[i])
    if (!sub) return [`"${command.name()}" has no subcommand "${args[i] ?? ''}"`]
    command = sub
    i++
  }
  const known = [...longFlags(command), ...global]
  return args
    .slice(i)
    .filter((a) => /^--?[a-zA-Z]/.test(a))
    .map((a) => a.split('=')[0]!)
    .filter((flag) => !known.includes(flag))
    .map(
      (flag) =>
        `"sprout ${command.parent === program ? '' : `${command.parent!.name()} `}${command.name()}" has no option ${flag}`,
    )
}

describe("the READMEs' sprout command lines", () => {
  const program = buildProgram({ out: () => {}, err: () => {} })
  const all = markdownFiles(root).flatMap(invocations)

  it('finds them (shell blocks and inline code) across the repository', () => {
    expect(all.length).toBeGreaterThan(30)
    expect(all.some((a) => a.where.startsWith('plugins/lemon/README.md'))).toBe(true)
    expect(all.some((a) => a.where.startsWith('packages/cli/README.md'))).toBe(true)
  })

  it('use only real commands and flags', () => {
    const problems = all.flatMap((a) => check(program, a.args).map((p) => `${a.where}: ${p}`))
    expect(problems).toEqual([])
  })

  it('the checker itself refuses what does not exist', () => {
    expect(check(program, ['grow', '--method', 'lemon', '--to', 'x.json'])).toEqual([
      '"sprout grow" has no option --to',
    ])
    expect(check(program, ['bench', 'frobnicate'])).toEqual(['"bench" has no subcommand "frobnicate"'])
    expect(check(program, ['fly'])).toEqual(['unknown command "fly"'])
    expect(check(program, ['--backend', 'cpu', 'bench', 'compare', '--suite', 'smoke', '--json'])).toEqual([])
  })
})
