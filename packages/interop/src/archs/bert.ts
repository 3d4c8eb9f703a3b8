import { parseSpec, type TransformerSpec } from '@sprout/core'
import {
  type ArchConverter,
  commonExportProblem,
  FROM_HF_ACT,
  HF_ACT,
  type HostTensor,
  type HostTensors,
  type LazyTensors,
  layerNormExporter,
  layerNormImporter,
  linearExporter,
  linearImporter,
  standardDims,
  zerosTensor,
} from './common.js'

/**
 * BertForMaskedLM: post-LayerNorm encoder; the embeddings LayerNorm is Sprout's embed.norm;
 * the masked-LM head (transform dense + activation + LayerNorm, tied decoder, output bias)
 * is Sprout's optional `mlmHead`. Sprout has no token types: row 0 of
 * token_type_embeddings (the type every token gets when token_type_ids is omitted) is
 * folded into the position embeddings, and the other rows are dropped (noted). Exported
 * models write zero token-type rows, so the function for token type 0 is unchanged.
 */
export const bert: ArchConverter = {
  name: 'bert',
  hfClass: 'BertForMaskedLM',
  modelType: 'bert',

  fromHf(cfg, t) {
    const dims = standardDims(cfg)
    const { dModel: D, nLayers: L, dFF: F } = dims
    const V = cfg.int('vocab_size')
    const P = cfg.int('max_position_embeddings', 512)
    const TT = cfg.int('type_vocab_size', 2)
    const eps = cfg.num('layer_norm_eps', 1e-12)
    const activation = cfg.choice('hidden_act', 'gelu', FROM_HF_ACT)
    const posType = cfg.str('position_embedding_type', 'absolute')
    if (posType !== 'absolute')
      cfg.unsupported(
        'position_embedding_type',
        posType,
        'Sprout implements absolute position embeddings only',
      )
    if (cfg.bool('is_decoder', false)) cfg.unsupported('is_decoder', true, 'Sprout reads BERT as an encoder')
    if (cfg.bool('add_cross_attention', false))
      cfg.unsupported('add_cross_attention', true, 'cross-attention is not modelled')
    if (!cfg.bool('tie_word_embeddings', true))
      cfg.unsupported('tie_word_embeddings', false, "Sprout's masked-LM head uses the tied word embeddings")
    const spec = parseSpec({
      family: 'encoder',
      vocabSize: V,
      maxSeqLen: P,
      ...dims,
      norm: 'layernorm',
      normPlacement: 'post',
      normEps: eps,
      activation,
      bias: true,
      tieEmbeddings: true,
      mlmHead: true,
    })
    const p: HostTensors = new Map()
    const e = 'bert.embeddings'
    const words = t.take(`${e}.word_embeddings.weight`, [V, D], 'vocab_size x hidden_size')
    p.set('embed.tokens', words)
    const pos = t.take(`${e}.position_embeddings.weight`, [P, D], 'max_position_embeddings x hidden_size')
    const types = t.take(`${e}.token_type_embeddings.weight`, [TT, D], 'type_vocab_size x hidden_size')
    const folded = new Float32Array(P * D)
    for (let i = 0; i < P; i++)
      for (let j = 0; j < D; j++) folded[i * D + j] = pos.data[i * D + j] + types.data[j]
    p.set('embed.positions', { shape: [P, D], data: folded })
    p.set('embed.norm.weight', t.take(`${e}.LayerNorm.weight`, [D], 'hidden_size'))
    p.set('embed.norm.bias', t.take(`${e}.LayerNorm.bias`, [D], 'hidden_size'))
    const lin = linearImporter(t, p, true)
    const ln = layerNormImporter(t, p, D)
    for (let l = 0; l < L; l++) {
      const h = `bert.encoder.layer.${l}`
      const s = `layers.${l}`
      lin(`${h}.attention.self.query`, `${s}.attn.q`, D, D, 'hidden_size x hidden_size')
      lin(`${h}.attention.self.key`, `${s}.attn.k`, D, D, 'hidden_size x hidden_size')
      lin(`${h}.attention.self.value`, `${s}.attn.v`, D, D, 'hidden_size x hidden_size')
      lin(`${h}.attention.output.dense`, `${s}.attn.o`, D, D, 'hidden_size x hidden_size')
      ln(`${h}.attention.output.LayerNorm`, `${s}.norm1`)
      lin(`${h}.intermediate.dense`, `${s}.mlp.fc1`, F, D, 'intermediate_size x hidden_size')
      lin(`${h}.output.dense`, `${s}.mlp.fc2`, D, F, 'hidden_size x intermediate_size')
      ln(`${h}.output.LayerNorm`, `${s}.norm2`)
    }
    lin('cls.predictions.transform.dense', 'head.transform', D, D, 'hidden_size x hidden_size')
    ln('cls.predictions.transform.LayerNorm', 'head.norm')
    p.set('head.bias', t.take('cls.predictions.bias', [V], 'vocab_size'))
    const notes: string[] = []
    const same = (a: HostTensor, b: HostTensor) =>
      a.data.length === b.data.length && a.data.every((v, i) => v === b.data[i])
    // The decoder is tied: its weight is the word embeddings and its bias is cls.predictions.bias.
    if (t.has('cls.predictions.decoder.weight')) {
      const dec = t.take('cls.predictions.decoder.weight', [V, D], 'vocab_size x hidden_size (tied)')
      if (!same(dec, words))
        cfg.unsupported(
          'tie_word_embeddings',
          true,
          'cls.predictions.decoder.weight differs from the word embeddings, so the checkpoint is not tied',
        )
    }
    if (t.has('cls.predictions.decoder.bias')) {
      const db = t.take('cls.predictions.decoder.bias', [V], 'vocab_size (tied to cls.predictions.bias)')
      if (!same(db, p.get('head.bias')!))
        cfg.unsupported(
          'tie_word_embeddings',
          true,
          'cls.predictions.decoder.bias differs from cls.predictions.bias',
        )
    }
    let typesUsed = false
    for (let r = 1; r < TT && !typesUsed; r++)
      for (let j = 0; j < D; j++)
        if (types.data[r * D + j] !== types.data[j]) {
          typesUsed = true
          break
        }
    notes.push(
      typesUsed
        ? `token_type_embeddings row 0 folded into the position embeddings; rows 1..${TT - 1} dropped: Sprout computes every token as token type 0 (segment A)`
        : 'token_type_embeddings row 0 folded into the position embeddings',
    )
    const skipped = t.ignore((n) =>
      /^bert\.pooler\.|^cls\.seq_relationship\.|^bert\.embeddings\.position_ids$/.test(n),
    )
    if (skipped.length > 0)
      notes.push(
        `ignored ${skipped.join(', ')} (pooler / next-sentence head / buffers are not part of BertForMaskedLM)`,
      )
    t.finish('BertForMaskedLM')
    return { spec, params: p, notes }
  },

  exportProblem(spec: TransformerSpec) {
    const common = commonExportProblem(spec)
    if (common) return common
    if (spec.family !== 'encoder') return `BERT is an encoder; this model is family "${spec.family}"`
    if (spec.norm !== 'layernorm' || spec.normPlacement !== 'post') return 'BERT needs post-LayerNorm'
    if (!spec.bias) return 'BERT layers have biases (spec.bias must be true)'
    if (spec.positional === 'rotary') return 'BERT uses learned absolute positions, not rotary'
    if (spec.nKVHeads !== undefined) return 'BERT has no grouped-query attention'
    if (spec.activation === 'swiglu') return 'BERT MLPs have no gate (swiglu)'
    if (!spec.mlmHead)
      return 'BertForMaskedLM has a masked-LM transform (dense + activation + LayerNorm) before the tied decoder; this model has none (spec.mlmHead is not set), so there is no exact BERT equivalent'
    if (spec.nHeads * spec.headDim !== spec.dModel)
      return `BERT needs nHeads x headDim = dModel (${spec.nHeads} x ${spec.headDim} != ${spec.dModel})`
    return null
  },

  toHf(spec, params) {
    const D = spec.dModel
    const get = (n: string) => params.get(n)!
    const out: LazyTensors = new Map()
    const e = 'bert.embeddings'
    out.set(`${e}.word_embeddings.weight`, get('embed.tokens'))
    out.set(`${e}.position_embeddings.weight`, get('embed.positions'))
    out.set(`${e}.token_type_embeddings.weight`, zerosTensor([2, D]))
    out.set(`${e}.LayerNorm.weight`, get('embed.norm.weight'))
    out.set(`${e}.LayerNorm.bias`, get('embed.norm.bias'))
    const lin = linearExporter(params, out, true)
    const ln = layerNormExporter(params, out)
    for (let l = 0; l < spec.nLayers; l++) {
      const h = `bert.encoder.layer.${l}`
      const s = `layers.${l}`
      lin(`${s}.attn.q`, `${h}.attention.self.query`)
      lin(`${s}.attn.k`, `${h}.attention.self.key`)
      lin(`${s}.attn.v`, `${h}.attention.self.value`)
      lin(`${s}.attn.o`, `${h}.attention.output.dense`)
      ln(`${s}.norm1`, `${h}.attention.output.LayerNorm`)
      lin(`${s}.mlp.fc1`, `${h}.intermediate.dense`)
      lin(`${s}.mlp.fc2`, `${h}.output.dense`)
      ln(`${s}.norm2`, `${h}.output.LayerNorm`)
    }
    lin('head.transform', 'cls.predictions.transform.dense')
    ln('head.norm', 'cls.predictions.transform.LayerNorm')
    out.set('cls.predictions.bias', get('head.bias'))
    const config = {
      architectures: ['BertForMaskedLM'],
      model_type: 'bert',
      vocab_size: spec.vocabSize,
      hidden_size: D,
      num_hidden_layers: spec.nLayers,
      num_attention_heads: spec.nHeads,
      intermediate_size: spec.dFF,
      hidden_act: HF_ACT[spec.activation],
      max_position_embeddings: spec.maxSeqLen,
      type_vocab_size: 2,
      layer_norm_eps: spec.normEps,
      position_embedding_type: 'absolute',
      hidden_dropout_prob: 0.1,
      attention_probs_dropout_prob: 0.1,
      initializer_range: 0.02,
      tie_word_embeddings: true,
      pad_token_id: 0,
    }
    return {
      config,
      tensors: out,
      notes: ['token_type_embeddings written as zeros: token types 0 and 1 compute the same function'],
    }
  },
}
