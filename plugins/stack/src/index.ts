import {
  assertMoELayerCopies,
  capabilities,
  DEPTH_ONLY_FIELDS,
  defineOperator,
  freshRunSchedule,
  GrowthError,
  type GrowthMask,
  type GrowthResult,
  type MomentMap,
  type Params,
  paramTable,
  specDifference,
  type TransformerSpec,
  validateParams,
  z,
} from '@sprout/core'

export const stackOptions = z.strictObject({
  /**
   * stack: copy the whole model on top of itself g = L₂/L₁ times (any whole g);
   * stackbert: the same, exactly 2× (StackBERT); gstack: the same, exactly `factor`× (default 4, G_stack);
   * interleave: repeat each layer in place (0,0,1,1,…); masked: stack, with the new copies
   * faded in through a mask ramping 0 → 1 (MSG), so the model starts as the source.
   */
  mode: z.enum(['stack', 'stackbert', 'gstack', 'interleave', 'masked']).default('stack'),
  /** Growth factor g = target layers / source layers; checked against the target when given (gstack: default 4). */
  factor: z.number().int().min(2).optional(),
  /** masked mode: where the masked copies go — on top (stack) or each after its original (interleave). */
  maskedOrder: z.enum(['stack', 'interleave']).default('stack'),
  /** masked mode: training steps over which the mask ramps from 0 to 1. */
  maskRampSteps: z.number().int().positive().default(200),
  /**
   * Depth up-scaling (SOLAR; mergekit passthrough slices): the target's layers as a comma list of
   * inclusive source ranges and single indices, e.g. "0-23,8-31" (32 → 48 layers). Replaces `mode`.
   */
  layers: z
    .union([
      z
        .string()
        .regex(
          /^\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*$/,
          'must be a comma list of inclusive source layer ranges and indices, e.g. 0-23,8-31',
        ),
      z.number().int().nonnegative(),
    ])
    .optional(),
})
export type StackOptions = z.infer<typeof stackOptions>

/** Which source layer each target layer copies (masked mode follows `maskedOrder`). */
export function layerOrder(
  sourceLayers: number,
  targetLayers: number,
  mode: StackOptions['mode'],
  maskedOrder: StackOptions['maskedOrder'] = 'stack',
): number[] {
  const g = targetLayers / sourceLayers
  const interleave = mode === 'interleave' || (mode === 'masked' && maskedOrder === 'interleave')
  return Array.from({ length: targetLayers }, (_, i) => (interleave ? Math.floor(i / g) : i % sourceLayers))
}

/**
 * Target layers whose copy is new structure (masked mode fades these in): everything above the
 * first copy when stacking, every copy but the first of each layer when interleaving.
 */
export function newLayers(
  sourceLayers: number,
  targetLayers: number,
  maskedOrder: StackOptions['maskedOrder'] = 'stack',
): number[] {
  const g = targetLayers / sourceLayers
  return Array.from({ length: targetLayers }, (_, i) => i).filter((i) =>
    maskedOrder === 'interleave' ? i % g !== 0 : i >= sourceLayers,
  )
}

/** One inclusive range of source layers, as written in option `layers`. */
export interface LayerSlice {
  from: number
  to: number
}

/**
 * Parses option `layers` ("0-23,8-31", "0-3,5", or a single index) into inclusive ranges and
 * checks each against the source's layer count; errors name the bad range and the fix.
 */
export function parseLayerSlices(layers: string | number, sourceLayers: number): LayerSlice[] {
  const items = String(layers).split(',')
  return items.map((raw) => {
    const item = raw.trim()
    const m = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(item)
    if (!m)
      throw new GrowthError(
        `stack: option layers item "${item}" is not a range like 0-23 or an index like 5`,
        'GROWTH_OPTIONS',
      )
    const from = Number(m[1])
    const to = m[2] === undefined ? from : Number(m[2])
    if (to < from)
      throw new GrowthError(
        `stack: option layers range "${item}" is descending (empty); write it as ${to}-${from}`,
        'GROWTH_OPTIONS',
      )
    if (to >= sourceLayers)
      throw new GrowthError(
        `stack: option layers range "${item}" is outside the source, whose layers are 0-${sourceLayers - 1}`,
        'GROWTH_OPTIONS',
      )
    return { from, to }
  })
}

/** The source layer each target layer copies under depth up-scaling: the slices concatenated. */
export function sliceOrder(slices: LayerSlice[]): number[] {
  return slices.flatMap(({ from, to }) => Array.from({ length: to - from + 1 }, (_, i) => from + i))
}

/** Depth up-scaling's check: slices within the source and exactly the target's layer count. */
function checkSlices(source: TransformerSpec, target: TransformerSpec, options: StackOptions): number[] {
  if (options.mode !== 'stack' || options.factor !== undefined)
    throw new GrowthError(
      `stack: option layers (depth up-scaling) sets the layer order itself; drop ${options.mode !== 'stack' ? `option mode=${options.mode}` : `option factor=${options.factor}`}`,
      'GROWTH_OPTIONS',
    )
  const order = sliceOrder(parseLayerSlices(options.layers!, source.nLayers))
  if (order.length !== target.nLayers)
    throw new GrowthError(
      `stack: option layers=${options.layers} lists ${order.length} layers but the target has nLayers ${target.nLayers}; set the target's nLayers to ${order.length} or change the ranges`,
      'GROWTH_OPTIONS',
    )
  if (target.nLayers < source.nLayers)
    throw new GrowthError(
      `stack: target nLayers ${target.nLayers} is smaller than the source's ${source.nLayers}; growth never shrinks`,
    )
  assertMoELayerCopies('stack', source, target, (i) => order[i])
  return order
}

/** The source layer each target layer copies, for any options (depth up-scaling included). */
export function targetLayerOrder(
  source: TransformerSpec,
  target: TransformerSpec,
  options: StackOptions,
): number[] {
  return options.layers !== undefined
    ? sliceOrder(parseLayerSlices(options.layers, source.nLayers))
    : layerOrder(source.nLayers, target.nLayers, options.mode, options.maskedOrder)
}

/** The growth factor a mode requires, or undefined when any whole factor is accepted. */
export function requiredFactor(options: Pick<StackOptions, 'mode' | 'factor'>): number | undefined {
  if (options.mode === 'stackbert') return 2
  if (options.mode === 'gstack') return options.factor ?? 4
  return options.factor
}

/**
 * G_stack's growth timing (Du et al., NeurIPS 2024): tokens d of base training before stacking,
 * log10(d) = 0.88·log10(N) + 163.27 / log10(C) − 5.74, for N target parameters and C FLOPs.
 */
export function gstackGrowthTokens(targetParams: number, computeFlops: number): number {
  if (!(targetParams > 0) || !(computeFlops > 10))
    throw new RangeError('gstackGrowthTokens: targetParams must be > 0 and computeFlops > 10')
  return 10 ** (0.88 * Math.log10(targetParams) + 163.27 / Math.log10(computeFlops) - 5.74)
}

export function checkStack(source: TransformerSpec, target: TransformerSpec, options: StackOptions): void {
  const diff = specDifference(source, target, DEPTH_ONLY_FIELDS)
  if (diff)
    throw new GrowthError(
      `stack grows depth only, but ${diff.field} differs (${diff.source} → ${diff.target}); grow width, heads or FFN first with lemon or net2net (function preserving) or ligo, then stack`,
    )
  if (options.layers !== undefined) {
    checkSlices(source, target, options)
    return
  }
  const L1 = source.nLayers
  const L2 = target.nLayers
  if (L2 <= L1 || L2 % L1 !== 0)
    throw new GrowthError(
      `stack copies the whole model: target nLayers ${L2} must be a multiple (≥ 2×) of the source's ${L1}, e.g. ${2 * L1} or ${4 * L1}`,
    )
  if (options.mode === 'stackbert' && options.factor !== undefined && options.factor !== 2)
    throw new GrowthError(
      `mode "stackbert" always doubles depth; drop option factor ${options.factor} or use mode "gstack"`,
      'GROWTH_OPTIONS',
    )
  const g = requiredFactor(options)
  if (g !== undefined && g !== L2 / L1)
    throw new GrowthError(
      options.factor === undefined
        ? `mode "${options.mode}" grows depth ${g}× (${L1} → ${g * L1} layers), but the target has ${L2}; set the target's nLayers to ${g * L1}, ${options.mode === 'gstack' ? `pass --option factor=${L2 / L1}, ` : ''}or use mode "stack" for any whole factor`
        : `option factor ${options.factor} does not match the target: ${L1} → ${L2} layers is a factor of ${L2 / L1}`,
      'GROWTH_OPTIONS',
    )
  if (options.mode === 'masked' && source.normPlacement === 'post')
    throw new GrowthError(
      'stack mode "masked" needs pre-norm: a post-norm layer re-normalises its input, so a masked (zero-output) layer is not an identity; use mode "stack", or lemon for lossless post-norm depth growth',
    )
  const order = layerOrder(L1, L2, options.mode, options.maskedOrder)
  assertMoELayerCopies('stack', source, target, (i) => order[i])
}

/**
 * How Adam's moments follow stacking: target layer i copies the moments of the source layer it
 * copies (order[i]); embeddings, final norm and head keep theirs. A copied layer's gradient equals
 * its source layer's exactly when the source's residual branches are zero (then every layer sees
 * the same stream and the same stream gradient) and approximately otherwise; copying is the
 * Staged-Training choice for depth growth. Masked mode: the new layers start with zero moments —
 * at mask 0 their outputs are multiplied by 0, so every gradient in them is exactly zero, while
 * the first copy of each layer computes the source exactly (same gradients, copied moments).
 */
export function stackMomentMap(
  source: TransformerSpec,
  target: TransformerSpec,
  options: StackOptions,
): MomentMap {
  const order = layerOrder(source.nLayers, target.nLayers, options.mode, options.maskedOrder)
  const masked = new Set(
    options.mode === 'masked' ? newLayers(source.nLayers, target.nLayers, options.maskedOrder) : [],
  )
  const map: MomentMap = {}
  for (const { name, layer } of paramTable(target)) {
    if (layer === null) map[name] = { from: name }
    else if (masked.has(layer)) map[name] = {}
    else map[name] = { from: name.replace(/^layers\.\d+\./, `layers.${order[layer]}.`) }
  }
  return map
}

/** Residual-branch output projections of a layer: zero output ⇒ the pre-norm layer is an identity. */
function outputProjections(params: Params, layer: number): string[] {
  const p = `layers.${layer}.`
  return Object.keys(params).filter(
    (n) => n.startsWith(p) && (/\.attn\.o\.(weight|bias)$/.test(n) || /\.fc2\.(weight|bias)$/.test(n)),
  )
}

const stack = defineOperator({
  name: 'stack',
  meta: {
    displayName: 'Stacking (StackBERT, G_stack, MSG)',
    papers: [
      {
        title: 'Efficient Training of BERT by Progressively Stacking',
        authors: 'Gong et al.',
        venue: 'ICML',
        year: 2019,
        url: 'https://proceedings.mlr.press/v97/gong19a.html',
      },
      {
        title: 'Stacking Your Transformers: A Closer Look at Model Growth for Efficient LLM Pre-Training',
        authors: 'Du et al.',
        venue: 'NeurIPS',
        year: 2024,
        url: 'https://arxiv.org/abs/2405.15319',
      },
      {
        title: 'Masked Structural Growth for 2x Faster Language Model Pre-training',
        authors: 'Yao et al.',
        venue: 'ICLR',
        year: 2024,
        url: 'https://arxiv.org/abs/2305.02869',
      },
      {
        title: 'bert2BERT: Towards Reusable Pretrained Language Models',
        authors: 'Chen et al.',
        venue: 'ACL',
        year: 2022,
        url: 'https://arxiv.org/abs/2110.07143',
      },
      {
        title: 'SOLAR 10.7B: Scaling Large Language Models with Simple yet Effective Depth Up-Scaling',
        authors: 'Kim et al.',
        venue: 'NAACL',
        year: 2024,
        url: 'https://arxiv.org/abs/2312.15166',
      },
    ],
  },
  description:
    'Depth growth by stacking copies of the source layers: StackBERT (2×), G_stack (g×), interleaved (0,0,1,1,…), MSG-style masked (function preserving at mask 0), or SOLAR depth up-scaling with layers=0-23,8-31 (not function preserving)',
  options: stackOptions,
  // Only the masked mode preserves the function, and only at mask 0.
  capabilities: capabilities('depth'),
  check: checkStack,
  growthTokens: ({ targetParams, computeFlops }) => gstackGrowthTokens(targetParams, computeFlops),
  async grow(source, target, ctx, options): Promise<GrowthResult> {
    const start = performance.now()
    checkStack(source.spec, target, options)
    validateParams(source.spec, source.params)
    const order = targetLayerOrder(source.spec, target, options)
    const params: Params = {}
    for (const [name, t] of Object.entries(source.params)) {
      const m = /^layers\.(\d+)\.(.*)$/.exec(name)
      if (!m) params[name] = t.clone()
    }
    order.forEach((j, i) => {
      for (const [name, t] of Object.entries(source.params))
        if (name.startsWith(`layers.${j}.`))
          params[`layers.${i}.${name.slice(`layers.${j}.`.length)}`] = t.clone()
    })
    ctx.progress({ stage: 'stack: copy layers', step: 1, total: 1 })
    const mask: GrowthMask | undefined =
      options.mode === 'masked'
        ? {
            params: newLayers(source.spec.nLayers, target.nLayers, options.maskedOrder).flatMap((l) =>
              outputProjections(params, l),
            ),
            rampSteps: options.maskRampSteps,
          }
        : undefined
    const copiedBytes = Object.values(params).reduce((s, t) => s + t.size, 0)
    return {
      model: { spec: structuredClone(target), params },
      moments: stackMomentMap(source.spec, target, options),
      mask,
      report: {
        method: 'stack',
        growthFlops: 0,
        steps: 0,
        seconds: (performance.now() - start) / 1000,
        functionPreserving: options.mode === 'masked',
        maxAbsLogitDiff: null,
        details: {
          mode: options.layers !== undefined ? 'depth-up-scaling' : options.mode,
          ...(options.layers !== undefined ? { layers: String(options.layers) } : {}),
          factor: target.nLayers / source.spec.nLayers,
          layerOrder: order,
          copiedValues: copiedBytes,
          ...(mask
            ? {
                maskedOrder: options.maskedOrder,
                maskedLayers: newLayers(source.spec.nLayers, target.nLayers, options.maskedOrder),
              }
            : {}),
        },
      },
      schedule: freshRunSchedule(
        options.layers !== undefined
          ? `depth up-scaling (layers=${options.layers}): not function preserving, continue pretraining with a fresh optimizer (SOLAR)`
          : options.mode === 'masked'
            ? `stack (masked): fresh optimizer; the ${mask!.params.length} output projections of the new layers ramp in over ${mask!.rampSteps} steps`
            : 'stack: fresh optimizer, the schedule of training from scratch',
        mask ? { maskRampSteps: mask.rampSteps } : {},
      ),
    }
  },
})

export default stack
export { stack }
