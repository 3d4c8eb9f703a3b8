import { parseSpec, patchCount, type TransformerSpec } from '@sprout/core'
import {
  type ArchConverter,
  commonExportProblem,
  derived,
  FROM_HF_ACT,
  HF_ACT,
  type HostTensor,
  type HostTensors,
  type LazyTensors,
  layerNormExporter,
  layerNormImporter,
  linearExporter,
  linearImporter,
  reshaped,
  standardDims,
} from './common.js'

/** Conv weight [D, C, p, p] -> Sprout's patch matrix [(py, px, c), D] (patchify's order). */
export function convToPatch(w: HostTensor): HostTensor {
  const [D, C, p] = w.shape
  const out = new Float32Array(p * p * C * D)
  for (let d = 0; d < D; d++)
    for (let c = 0; c < C; c++)
      for (let py = 0; py < p; py++)
        for (let px = 0; px < p; px++)
          out[((py * p + px) * C + c) * D + d] = w.data[((d * C + c) * p + py) * p + px]
  return { shape: [p * p * C, D], data: out }
}

/** Sprout's patch matrix [(py, px, c), D] -> conv weight [D, C, p, p]. */
export function patchToConv(w: HostTensor, patch: number, channels: number): HostTensor {
  const D = w.shape[1]
  const p = patch
  const C = channels
  const out = new Float32Array(D * C * p * p)
  for (let d = 0; d < D; d++)
    for (let c = 0; c < C; c++)
      for (let py = 0; py < p; py++)
        for (let px = 0; px < p; px++)
          out[((d * C + c) * p + py) * p + px] = w.data[((py * p + px) * C + c) * D + d]
  return { shape: [D, C, p, p], data: out }
}

/**
 * ViTForImageClassification: patch convolution (Sprout's embed.patch on (py, px, c)-ordered
 * patches of channels-last images), class token, learned positions, pre-LayerNorm, final
 * LayerNorm, classifier on the class token. PyTorch feeds pixel_values [B, C, H, W];
 * Sprout takes [B, H, W, C].
 */
export const vit: ArchConverter = {
  name: 'vit',
  hfClass: 'ViTForImageClassification',
  modelType: 'vit',

  fromHf(cfg, t) {
    const dims = standardDims(cfg)
    const { dModel: D, nLayers: L, dFF: F } = dims
    const size = cfg.int('image_size', 224)
    const patch = cfg.int('patch_size', 16)
    const C = cfg.int('num_channels', 3)
    const eps = cfg.num('layer_norm_eps', 1e-12)
    const activation = cfg.choice('hidden_act', 'gelu', FROM_HF_ACT)
    if (!cfg.bool('qkv_bias', true))
      cfg.unsupported(
        'qkv_bias',
        false,
        "Sprout's spec.bias covers every linear layer; ViT's other layers have biases",
      )
    const labels = cfg.raw.id2label
    const classes =
      labels && typeof labels === 'object' ? Object.keys(labels).length : cfg.int('num_labels', 2)
    if (size % patch !== 0) cfg.unsupported('patch_size', patch, `it must divide image_size ${size}`)
    const spec = parseSpec({
      family: 'vit',
      ...dims,
      norm: 'layernorm',
      normPlacement: 'pre',
      normEps: eps,
      activation,
      bias: true,
      tieEmbeddings: false,
      image: { size, patch, channels: C, classes },
    })
    const N = patchCount(spec.image!)
    const p: HostTensors = new Map()
    const e = 'vit.embeddings'
    p.set(
      'embed.patch.weight',
      convToPatch(
        t.take(
          `${e}.patch_embeddings.projection.weight`,
          [D, C, patch, patch],
          'hidden_size x num_channels x patch_size x patch_size',
        ),
      ),
    )
    p.set('embed.patch.bias', t.take(`${e}.patch_embeddings.projection.bias`, [D], 'hidden_size'))
    p.set('embed.cls', { shape: [D], data: t.take(`${e}.cls_token`, [1, 1, D], '1 x 1 x hidden_size').data })
    p.set('embed.positions', {
      shape: [N + 1, D],
      data: t.take(`${e}.position_embeddings`, [1, N + 1, D], '(image_size/patch_size)^2 + 1 positions').data,
    })
    const lin = linearImporter(t, p, true)
    const ln = layerNormImporter(t, p, D)
    for (let l = 0; l < L; l++) {
      const h = `vit.encoder.layer.${l}`
      const s = `layers.${l}`
      ln(`${h}.layernorm_before`, `${s}.norm1`)
      lin(`${h}.attention.attention.query`, `${s}.attn.q`, D, D, 'hidden_size x hidden_size')
      lin(`${h}.attention.attention.key`, `${s}.attn.k`, D, D, 'hidden_size x hidden_size')
      lin(`${h}.attention.attention.value`, `${s}.attn.v`, D, D, 'hidden_size x hidden_size')
      lin(`${h}.attention.output.dense`, `${s}.attn.o`, D, D, 'hidden_size x hidden_size')
      ln(`${h}.layernorm_after`, `${s}.norm2`)
      lin(`${h}.intermediate.dense`, `${s}.mlp.fc1`, F, D, 'intermediate_size x hidden_size')
      lin(`${h}.output.dense`, `${s}.mlp.fc2`, D, F, 'hidden_size x intermediate_size')
    }
    ln('vit.layernorm', 'norm')
    lin('classifier', 'head', classes, D, 'num_labels (id2label) x hidden_size')
    const notes: string[] = []
    const skipped = t.ignore((n) => /^vit\.pooler\.|^vit\.embeddings\.mask_token$/.test(n))
    if (skipped.length > 0)
      notes.push(`ignored ${skipped.join(', ')} (not used by ViTForImageClassification)`)
    t.finish('ViTForImageClassification')
    return { spec, params: p, notes }
  },

  exportProblem(spec: TransformerSpec) {
    const common = commonExportProblem(spec)
    if (common) return common
    if (spec.family !== 'vit') return `ViT is family "vit"; this model is family "${spec.family}"`
    if (spec.norm !== 'layernorm' || spec.normPlacement !== 'pre') return 'ViT needs pre-LayerNorm'
    if (!spec.bias) return 'ViT layers have biases (spec.bias must be true)'
    if (spec.positional === 'rotary') return 'ViT uses learned positions, not rotary'
    if (spec.nKVHeads !== undefined) return 'ViT has no grouped-query attention'
    if (spec.activation === 'swiglu') return 'ViT MLPs have no gate (swiglu)'
    if (spec.nHeads * spec.headDim !== spec.dModel)
      return `ViT needs nHeads x headDim = dModel (${spec.nHeads} x ${spec.headDim} != ${spec.dModel})`
    return null
  },

  toHf(spec, params) {
    const D = spec.dModel
    const img = spec.image!
    const get = (n: string) => params.get(n)!
    const out: LazyTensors = new Map()
    const e = 'vit.embeddings'
    out.set(
      `${e}.patch_embeddings.projection.weight`,
      derived([D, img.channels, img.patch, img.patch], [get('embed.patch.weight')], (w) =>
        patchToConv(w, img.patch, img.channels),
      ),
    )
    out.set(`${e}.patch_embeddings.projection.bias`, get('embed.patch.bias'))
    out.set(`${e}.cls_token`, reshaped(get('embed.cls'), [1, 1, D]))
    out.set(`${e}.position_embeddings`, reshaped(get('embed.positions'), [1, spec.maxSeqLen, D]))
    const lin = linearExporter(params, out, true)
    const ln = layerNormExporter(params, out)
    for (let l = 0; l < spec.nLayers; l++) {
      const h = `vit.encoder.layer.${l}`
      const s = `layers.${l}`
      ln(`${s}.norm1`, `${h}.layernorm_before`)
      lin(`${s}.attn.q`, `${h}.attention.attention.query`)
      lin(`${s}.attn.k`, `${h}.attention.attention.key`)
      lin(`${s}.attn.v`, `${h}.attention.attention.value`)
      lin(`${s}.attn.o`, `${h}.attention.output.dense`)
      ln(`${s}.norm2`, `${h}.layernorm_after`)
      lin(`${s}.mlp.fc1`, `${h}.intermediate.dense`)
      lin(`${s}.mlp.fc2`, `${h}.output.dense`)
    }
    ln('norm', 'vit.layernorm')
    lin('head', 'classifier')
    const id2label: Record<string, string> = {}
    const label2id: Record<string, number> = {}
    for (let i = 0; i < img.classes; i++) {
      id2label[String(i)] = `LABEL_${i}`
      label2id[`LABEL_${i}`] = i
    }
    const config = {
      architectures: ['ViTForImageClassification'],
      model_type: 'vit',
      hidden_size: D,
      num_hidden_layers: spec.nLayers,
      num_attention_heads: spec.nHeads,
      intermediate_size: spec.dFF,
      hidden_act: HF_ACT[spec.activation],
      layer_norm_eps: spec.normEps,
      image_size: img.size,
      patch_size: img.patch,
      num_channels: img.channels,
      qkv_bias: true,
      hidden_dropout_prob: 0,
      attention_probs_dropout_prob: 0,
      initializer_range: 0.02,
      encoder_stride: img.patch,
      id2label,
      label2id,
    }
    return { config, tensors: out, notes: [] }
  },
}
