import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { parseSpec, SproutError, type TransformerSpec } from '@sprout/core'

/** Where the CLI writes: tests capture it, the binary uses the process streams. */
export interface Io {
  out(line: string): void
  err(line: string): void
}

export const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
}

export function readJsonFile(path: string, what: string): unknown {
  if (!existsSync(path)) throw new SproutError('INPUT_INVALID', `${what} file ${path} does not exist`)
  if (statSync(path).isDirectory())
    throw new SproutError('INPUT_INVALID', `${what} ${path} is a directory; pass a JSON file`)
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch (e) {
    throw new SproutError('INPUT_INVALID', `${what} file ${path} is not valid JSON: ${(e as Error).message}`)
  }
}

export function readSpecFile(path: string): TransformerSpec {
  const raw = readJsonFile(path, 'spec')
  try {
    return parseSpec(raw)
  } catch (e) {
    if (e instanceof SproutError) throw new SproutError(e.code, `${path}: ${e.message}`)
    throw e
  }
}

/** Refuses to write over anything that is not an empty dir or (with force) a checkpoint. */
export function checkOutputDir(dir: string, force: boolean): void {
  if (!existsSync(dir)) return
  if (!statSync(dir).isDirectory())
    throw new SproutError('IO', `--out ${dir} exists and is a file; choose another directory`)
  const entries = readdirSync(dir)
  if (entries.length === 0) return
  if (!entries.includes('sprout.json'))
    throw new SproutError(
      'IO',
      `--out ${dir} exists and is not a Sprout checkpoint; choose another directory`,
    )
  if (!force)
    throw new SproutError('IO', `--out ${dir} already holds a checkpoint; pass --force to overwrite it`)
}

/**
 * The routing behind `--json`: stdout carries exactly one JSON document. Commands print their
 * result as one JSON line through `out`; every other line (tables, notes, progress) is sent to
 * stderr, and `result()` hands the document to whoever prints it last. Commands need not know.
 */
export function jsonRouting(io: Io): { io: Io; result(): string | undefined } {
  let doc: string | undefined
  const isDocument = (line: string) => {
    const t = line.trim()
    if (!(t.startsWith('{') || t.startsWith('['))) return false
    try {
      JSON.parse(t)
      return true
    } catch {
      return false
    }
  }
  return {
    io: {
      out: (line) => {
        if (!isDocument(line)) return io.err(line)
        if (doc !== undefined) io.err(doc) // a second document wins; the first still shows on stderr
        doc = line.trim()
      },
      err: (line) => io.err(line),
    },
    result: () => doc,
  }
}

/** An error as the one JSON document of a `--json` run. */
export function jsonError(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } })
}
