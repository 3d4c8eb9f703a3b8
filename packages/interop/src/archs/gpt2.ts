import { parseSpec, type TransformerSpec } from '@sprout/core'
import {
  type ArchConverter,
  columns,
  commonExportProblem,
  concatenatedColumns,
  FROM_HF_ACT,
  HF_ACT,
  type HostTensors,
  type LazyTensors,
  transpose,
  transposed,
} from './common.js'

/**
 * GPT2LMHeadModel. Its Conv1D weights are already [in, out] (x·W), like Sprout's; the fused
 * c_attn [D, 3D] holds q | k | v column blocks. lm_head is tied to wte unless
 * tie_word_embeddings is false.
 */
export const gpt2: ArchConverter = {
  name: 'gpt2',
  hfClass: 'GPT2LMHeadModel',
  modelType: 'gpt2',

  fromHf(cfg, t) {
    const D = cfg.has('n_embd') ? cfg.int('n_embd') : cfg.int('hidden_size')
    const L = cfg.has('n_layer') ? cfg.int('n_layer') : cfg.int('num_hidden_layers')
    const H = cfg.has('n_head') ? cfg.int('n_head') : cfg.int('num_attention_heads')
    const F = cfg.int('n_inner', 4 * D)
    const P = cfg.has('n_positions') ? cfg.int('n_positions') : cfg.int('n_ctx')
    const V = cfg.int('vocab_size')
    const activation = cfg.choice('activation_function', 'gelu_new', FROM_HF_ACT)
    const eps = cfg.num('layer_norm_epsilon', 1e-5)
    const tied = cfg.bool('tie_word_embeddings', true)
    if (cfg.bool('scale_attn_by_inverse_layer_idx', false))
      cfg.unsupported(
        'scale_attn_by_inverse_layer_idx',
        true,
        'Sprout scales attention by 1/sqrt(headDim) only',
      )
    if (!cfg.bool('scale_attn_weights', true))
      cfg.unsupported('scale_attn_weights', false, 'Sprout always scales attention scores by 1/sqrt(headDim)')
    if (cfg.bool('add_cross_attention', false))
      cfg.unsupported('add_cross_attention', true, 'cross-attention (encoder-decoder) is not modelled')
    const spec = parseSpec({
      family: 'decoder',
      vocabSize: V,
      maxSeqLen: P,
      dModel: D,
      nLayers: L,
      nHeads: H,
      dFF: F,
      norm: 'layernorm',
      normPlacement: 'pre',
      normEps: eps,
      activation,
      bias: true,
      tieEmbeddings: tied,
    })
    // The official gpt2 checkpoints are saved from GPT2Model (no "transformer." prefix).
    const pre = t.has('transformer.wte.weight') ? 'transformer.' : ''
    const p: HostTensors = new Map()
    const cfgWhy = (s: string) => `config ${s}`
    p.set('embed.tokens', t.take(`${pre}wte.weight`, [V, D], cfgWhy('vocab_size x n_embd')))
    p.set('embed.positions', t.take(`${pre}wpe.weight`, [P, D], cfgWhy('n_positions x n_embd')))
    for (let l = 0; l < L; l++) {
      const h = `${pre}h.${l}`
      const s = `layers.${l}`
      p.set(`${s}.norm1.weight`, t.take(`${h}.ln_1.weight`, [D], cfgWhy('n_embd')))
      p.set(`${s}.norm1.bias`, t.take(`${h}.ln_1.bias`, [D], cfgWhy('n_embd')))
      const w = t.take(`${h}.attn.c_attn.weight`, [D, 3 * D], cfgWhy('n_embd x 3·n_embd'))
      const b = t.take(`${h}.attn.c_attn.bias`, [3 * D], cfgWhy('3·n_embd'))
      ;(['q', 'k', 'v'] as const).forEach((name, i) => {
        p.set(`${s}.attn.${name}.weight`, columns(w, i * D, D))
        p.set(`${s}.attn.${name}.bias`, columns(b, i * D, D))
      })
      p.set(`${s}.attn.o.weight`, t.take(`${h}.attn.c_proj.weight`, [D, D], cfgWhy('n_embd x n_embd')))
      p.set(`${s}.attn.o.bias`, t.take(`${h}.attn.c_proj.bias`, [D], cfgWhy('n_embd')))
      p.set(`${s}.norm2.weight`, t.take(`${h}.ln_2.weight`, [D], cfgWhy('n_embd')))
      p.set(`${s}.norm2.bias`, t.take(`${h}.ln_2.bias`, [D], cfgWhy('n_embd')))
      p.set(`${s}.mlp.fc1.weight`, t.take(`${h}.mlp.c_fc.weight`, [D, F], cfgWhy('n_embd x n_inner')))
      p.set(`${s}.mlp.fc1.bias`, t.take(`${h}.mlp.c_fc.bias`, [F], cfgWhy('n_inner')))
      p.set(`${s}.mlp.fc2.weight`, t.take(`${h}.mlp.c_proj.weight`, [F, D], cfgWhy('n_inner x n_embd')))
      p.set(`${s}.mlp.fc2.bias`, t.take(`${h}.mlp.c_proj.bias`, [D], cfgWhy('n_embd')))
    }
    p.set('norm.weight', t.take(`${pre}ln_f.weight`, [D], cfgWhy('n_embd')))
    p.set('norm.bias', t.take(`${pre}ln_f.bias`, [D], cfgWhy('n_embd')))
    const notes: string[] = []
    if (!tied)
      p.set('head.weight', transpose(t.take('lm_head.weight', [V, D], cfgWhy('vocab_size x n_embd'))))
    else if (t.ignore((n) => n === 'lm_head.weight').length > 0)
      notes.push('lm_head.weight ignored: tie_word_embeddings is true, so the head is wte')
    // Causal-mask buffers saved by older transformers versions.
    const buffers = t.ignore((n) => /(^|\.)h\.\d+\.attn\.(masked_)?bias$/.test(n))
    if (buffers.length > 0)
      notes.push(`ignored ${buffers.length} attention-mask buffers (attn.bias / attn.masked_bias)`)
    t.finish('GPT2LMHeadModel')
    return { spec, params: p, notes }
  },

  exportProblem(spec: TransformerSpec) {
    const common = commonExportProblem(spec)
    if (common) return common
    if (spec.family !== 'decoder') return `GPT-2 is a decoder; this model is family "${spec.family}"`
    if (spec.norm !== 'layernorm' || spec.normPlacement !== 'pre') return 'GPT-2 needs pre-LayerNorm'
    if (!spec.bias) return 'GPT-2 layers have biases (spec.bias must be true)'
    if (spec.positional === 'rotary') return 'GPT-2 uses learned positions, not rotary'
    if (spec.nKVHeads !== undefined) return 'GPT-2 has no grouped-query attention'
    if (spec.activation === 'swiglu') return 'GPT-2 MLPs have no gate (swiglu)'
    if (spec.nHeads * spec.headDim !== spec.dModel)
      return `GPT-2 needs nHeads x headDim = dModel (${spec.nHeads} x ${spec.headDim} != ${spec.dModel})`
    return null
  },

  toHf(spec, params) {
    const D = spec.dModel
    const get = (n: string) => params.get(n)!
    const out: LazyTensors = new Map()
    out.set('transformer.wte.weight', get('embed.tokens'))
    out.set('transformer.wpe.weight', get('embed.positions'))
    for (let l = 0; l < spec.nLayers; l++) {
      const h = `transformer.h.${l}`
      const s = `layers.${l}`
      out.set(`${h}.ln_1.weight`, get(`${s}.norm1.weight`))
      out.set(`${h}.ln_1.bias`, get(`${s}.norm1.bias`))
      out.set(
        `${h}.attn.c_attn.weight`,
        concatenatedColumns(['q', 'k', 'v'].map((n) => get(`${s}.attn.${n}.weight`))),
      )
      out.set(
        `${h}.attn.c_attn.bias`,
        concatenatedColumns(['q', 'k', 'v'].map((n) => get(`${s}.attn.${n}.bias`))),
      )
      out.set(`${h}.attn.c_proj.weight`, get(`${s}.attn.o.weight`))
      out.set(`${h}.attn.c_proj.bias`, get(`${s}.attn.o.bias`))
      out.set(`${h}.ln_2.weight`, get(`${s}.norm2.weight`))
      out.set(`${h}.ln_2.bias`, get(`${s}.norm2.bias`))
      out.set(`${h}.mlp.c_fc.weight`, get(`${s}.mlp.fc1.weight`))
      out.set(`${h}.mlp.c_fc.bias`, get(`${s}.mlp.fc1.bias`))
      out.set(`${h}.mlp.c_proj.weight`, get(`${s}.mlp.fc2.weight`))
      out.set(`${h}.mlp.c_proj.bias`, get(`${s}.mlp.fc2.bias`))
    }
    out.set('transformer.ln_f.weight', get('norm.weight'))
    out.set('transformer.ln_f.bias', get('norm.bias'))
    if (!spec.tieEmbeddings) out.set('lm_head.weight', transposed(get('head.weight')))
    const special = Math.min(50256, spec.vocabSize - 1)
    const config = {
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      vocab_size: spec.vocabSize,
      n_positions: spec.maxSeqLen,
      n_ctx: spec.maxSeqLen,
      n_embd: D,
      n_layer: spec.nLayers,
      n_head: spec.nHeads,
      n_inner: spec.dFF,
      activation_function: HF_ACT[spec.activation],
      layer_norm_epsilon: spec.normEps,
      tie_word_embeddings: spec.tieEmbeddings,
      scale_attn_weights: true,
      resid_pdrop: 0.1,
      embd_pdrop: 0.1,
      attn_pdrop: 0.1,
      initializer_range: 0.02,
      bos_token_id: special,
      eos_token_id: special,
    }
    return { config, tensors: out, notes: [] }
  },
}
