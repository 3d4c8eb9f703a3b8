import { existsSync, readFileSync, statSync } from 'node:fs'
import { SproutError, type SproutErrorCode } from './errors.js'
import { checkOutputContent } from './output-dir.js'
import { parseSpec, type TransformerSpec } from './spec.js'

// What every package with commands (cli, trainer, interop, bench) shares: where a command
// prints, how it reads the JSON files users name, and when it may write an output directory.

/** Where a command prints its lines: tests capture them, the `sprout` binary uses the process streams. */
export interface CommandIo {
  out(line: string): void
  err(line: string): void
}

export const processIo: CommandIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
}

/**
 * Parses the JSON file a user named; `what` says which file it is in the error ("spec",
 * "config"). A missing file, a directory or invalid JSON is one line with `code`.
 */
export function readJsonFile(path: string, what: string, code: SproutErrorCode = 'INPUT_INVALID'): unknown {
  if (!existsSync(path)) throw new SproutError(code, `${what} file ${path} does not exist`)
  if (statSync(path).isDirectory())
    throw new SproutError(code, `${what} ${path} is a directory; pass a JSON file`)
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch (e) {
    throw new SproutError(code, `${what} file ${path} is not valid JSON: ${(e as Error).message}`)
  }
}

/** A transformer spec from a JSON file; a bad field's error names the file. */
export function readSpecFile(path: string): TransformerSpec {
  const raw = readJsonFile(path, 'spec')
  try {
    return parseSpec(raw)
  } catch (e) {
    if (e instanceof SproutError) throw new SproutError(e.code, `${path}: ${e.message}`)
    throw e
  }
}

/**
 * Refuses an `--out` directory a checkpoint must not be written into: a file, a non-empty
 * directory that is not a Sprout checkpoint, or (without `force`) an existing checkpoint.
 * Commands that write use `prepareOutput` (output-dir.ts), which also locks and recovers.
 */
export function checkOutputDir(dir: string, force: boolean): void {
  checkOutputContent(dir, { force })
}
