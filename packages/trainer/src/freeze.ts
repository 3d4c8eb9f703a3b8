import { exampleFlops, type ParamInfo, paramTable, SproutError, type TransformerSpec } from '@sprout/core'

/** The freeze entry that means "every parameter the source model had, in its role". */
export const FREEZE_SOURCE = 'source'

/** A glob over parameter names: `*` matches any run of characters (dots included), `?` one character. */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  return new RegExp(`^${body}$`)
}

/**
 * The parameters a run config's `freeze` list freezes. Entries are "source" (every parameter not
 * listed in `newParams`, which `sprout grow` records for methods that say which parameters are new),
 * exact names, or globs like `layers.*.attn.*`. Throws a SproutError naming the entry for one that
 * matches nothing, for "source" without a record of new parameters, and when nothing is left to train.
 */
export function resolveFrozen(
  freeze: readonly string[],
  names: readonly string[],
  newParams: readonly string[] | null | undefined,
  where = 'config.freeze',
): Set<string> {
  const frozen = new Set<string>()
  for (const entry of freeze) {
    if (entry === FREEZE_SOURCE) {
      if (!newParams)
        throw new SproutError(
          'INPUT_INVALID',
          `${where}: "source" needs the checkpoint to record which parameters are new, and this one does not (it was not grown, or grown by a method that does not record them); grow with --method block-expansion, or freeze by name patterns like "layers.*.attn.*"`,
        )
      const fresh = new Set(newParams)
      for (const n of names) if (!fresh.has(n)) frozen.add(n)
      continue
    }
    const re = globToRegExp(entry)
    const hits = names.filter((n) => re.test(n))
    if (hits.length === 0)
      throw new SproutError(
        'INPUT_INVALID',
        `${where}: "${entry}" matches no parameter; use "source", an exact name like "${names[0]}" or a pattern like "layers.*.attn.*"`,
      )
    for (const n of hits) frozen.add(n)
  }
  if (frozen.size === names.length)
    throw new SproutError(
      'INPUT_INVALID',
      `${where}: ${JSON.stringify(freeze)} freezes every parameter, leaving nothing to train; freeze fewer`,
    )
  return frozen
}

/** Tokens (per example) that pass through a weight: its share of the MoE routing for experts. */
function tokensThrough(spec: TransformerSpec, p: ParamInfo, seqLen: number): number {
  if (spec.family === 'vit') {
    if (p.module === 'head') return 1 // the classifier reads the class token only
    if (p.module === 'embed.patch') return spec.maxSeqLen - 1
    return spec.maxSeqLen
  }
  if (p.expert !== undefined) return (seqLen * spec.moe!.topK) / spec.moe!.experts
  return seqLen
}

/**
 * FLOPs per example that backpropagation does not spend because these parameters are frozen: the
 * weight-gradient matmul of each frozen weight [in, out], dW = xᵀ·dy, costs 2·n·in·out for the
 * n tokens that pass through it (n = T; T·k/E for an expert under top-k routing over E experts;
 * 1 for a ViT classifier; T − 1 for the patch embedding). A frozen tied embedding drops the head's
 * dW (2·T·D·V). Gathers, biases and norms cost no matmul FLOPs, as in `exampleFlops`; gradients
 * with respect to activations are still counted in full.
 */
export function frozenWeightGradFlops(
  spec: TransformerSpec,
  frozen: ReadonlySet<string>,
  seqLen: number,
): number {
  let flops = 0
  const T = spec.family === 'vit' ? spec.maxSeqLen : seqLen
  for (const p of paramTable(spec)) {
    if (!frozen.has(p.name)) continue
    if (p.kind === 'weight') flops += 2 * tokensThrough(spec, p, T) * p.shape[0]! * p.shape[1]!
    else if (p.module === 'embed.tokens' && spec.tieEmbeddings) flops += 2 * T * spec.dModel * spec.vocabSize
  }
  return flops
}

/** Training FLOPs of one example with `frozen` parameters: 3 × forward minus the skipped weight gradients. */
export function frozenExampleFlops(
  spec: TransformerSpec,
  frozen: ReadonlySet<string>,
  seqLen: number,
): number {
  return exampleFlops(spec, seqLen).total - frozenWeightGradFlops(spec, frozen, seqLen)
}
