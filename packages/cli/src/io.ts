import type { CommandIo } from '@sprout/core'

/** Where the CLI writes (core's CommandIo): tests capture it, the binary uses the process streams. */
export type Io = CommandIo

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
