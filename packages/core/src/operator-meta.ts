// What a growth method is, as data: its display name and the papers it implements. `sprout list`
// and the benchmark reports print it; the description stays one line about what the method does.

/** A publication an operator implements. */
export interface PaperRef {
  /** The paper's title, as published. */
  title: string
  /** Short author list, e.g. "Wang et al.". */
  authors: string
  /** Where it appeared, e.g. "ICLR", "NeurIPS", "arXiv". */
  venue: string
  year: number
  /** A stable link (arXiv abstract or proceedings page). */
  url: string
}

export interface OperatorMeta {
  /** How people write the method's name, e.g. "LiGO" or "Net2Net / bert2BERT". */
  displayName: string
  /** The papers this operator implements, most important first. */
  papers: PaperRef[]
}

/** What is wrong with an operator's `meta` (absent is fine); empty when it is well formed. */
export function metaProblems(meta: unknown): string[] {
  if (meta === undefined) return []
  const m = meta as Partial<OperatorMeta>
  if (typeof meta !== 'object' || meta === null) return ['"meta" must be an object ({ displayName, papers })']
  const problems: string[] = []
  if (typeof m.displayName !== 'string' || m.displayName.length === 0)
    problems.push('"meta.displayName" must be a non-empty string')
  if (!Array.isArray(m.papers)) problems.push('"meta.papers" must be an array')
  else
    m.papers.forEach((p: Partial<PaperRef>, i) => {
      const where = `"meta.papers[${i}]"`
      for (const k of ['title', 'authors', 'venue'] as const)
        if (typeof p?.[k] !== 'string' || p[k].length === 0)
          problems.push(`${where}.${k} must be a non-empty string`)
      if (!Number.isInteger(p?.year) || p.year! < 1900)
        problems.push(`${where}.year must be a year like 2023`)
      if (typeof p?.url !== 'string' || !/^https:\/\/\S+$/.test(p.url))
        problems.push(`${where}.url must be an https:// link`)
    })
  return problems
}

/** One line: "Title (Authors, Venue Year) URL". */
export function formatPaper(p: PaperRef): string {
  return `${p.title} (${p.authors}, ${p.venue} ${p.year}) ${p.url}`
}
