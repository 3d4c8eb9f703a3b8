import { parseSpec, type TransformerSpec } from '@sprout/core'
import {
  type ArchConverter,
  commonExportProblem,
  type HostTensors,
  type LazyTensors,
  linearExporter,
  linearImporter,
  standardDims,
  transpose,
  transposed,
} from './common.js'

/**
 * LlamaForCausalLM: RMSNorm, SwiGLU (gate_proj, up_proj, down_proj -> mlp.gate, mlp.fc1,
 * mlp.fc2), rotary positions (rotate_half convention, rope_theta), grouped-query attention
 * (num_key_value_heads). nn.Linear weights are [out, in] and are transposed.
 */
export const llama: ArchConverter = {
  name: 'llama',
  hfClass: 'LlamaForCausalLM',
  modelType: 'llama',

  fromHf(cfg, t) {
    const dims = standardDims(cfg)
    const { dModel: D, nLayers: L, nHeads: H, dFF: F } = dims
    const KV = cfg.int('num_key_value_heads', H)
    const hd = cfg.int('head_dim', Math.floor(D / H))
    const V = cfg.int('vocab_size')
    const P = cfg.int('max_position_embeddings', 2048)
    const eps = cfg.num('rms_norm_eps', 1e-6)
    const theta = cfg.num('rope_theta', 10000)
    const tied = cfg.bool('tie_word_embeddings', false)
    const act = cfg.str('hidden_act', 'silu')
    if (act !== 'silu') cfg.unsupported('hidden_act', act, 'LLaMA models in Sprout use SwiGLU with silu')
    if (cfg.has('rope_scaling'))
      cfg.unsupported(
        'rope_scaling',
        cfg.raw.rope_scaling,
        'Sprout implements plain rotary embeddings only (no linear / dynamic / yarn / llama3 scaling); remove rope_scaling or use a model without it',
      )
    if (!cfg.has('head_dim') && D % H !== 0)
      cfg.unsupported('num_attention_heads', H, `hidden_size ${D} is not divisible by it; set head_dim`)
    const attnBias = cfg.bool('attention_bias', false)
    const mlpBias = cfg.bool('mlp_bias', false)
    if (attnBias !== mlpBias)
      cfg.unsupported(
        'attention_bias',
        attnBias,
        `Sprout's spec.bias covers attention and MLP together, but mlp_bias is ${mlpBias}`,
      )
    if (KV > H || H % KV !== 0)
      cfg.unsupported('num_key_value_heads', KV, `it must divide num_attention_heads (${H})`)
    const spec = parseSpec({
      family: 'decoder',
      vocabSize: V,
      maxSeqLen: P,
      ...dims,
      headDim: hd,
      nKVHeads: KV,
      norm: 'rmsnorm',
      normPlacement: 'pre',
      normEps: eps,
      activation: 'swiglu',
      bias: attnBias,
      tieEmbeddings: tied,
      positional: 'rotary',
      ropeTheta: theta,
    })
    const p: HostTensors = new Map()
    const A = H * hd
    const K = KV * hd
    p.set('embed.tokens', t.take('model.embed_tokens.weight', [V, D], 'vocab_size x hidden_size'))
    const lin = linearImporter(t, p, attnBias)
    for (let l = 0; l < L; l++) {
      const h = `model.layers.${l}`
      const s = `layers.${l}`
      p.set(`${s}.norm1.weight`, t.take(`${h}.input_layernorm.weight`, [D], 'hidden_size'))
      lin(`${h}.self_attn.q_proj`, `${s}.attn.q`, A, D, 'num_attention_heads·head_dim x hidden_size')
      lin(`${h}.self_attn.k_proj`, `${s}.attn.k`, K, D, 'num_key_value_heads·head_dim x hidden_size')
      lin(`${h}.self_attn.v_proj`, `${s}.attn.v`, K, D, 'num_key_value_heads·head_dim x hidden_size')
      lin(`${h}.self_attn.o_proj`, `${s}.attn.o`, D, A, 'hidden_size x num_attention_heads·head_dim')
      p.set(`${s}.norm2.weight`, t.take(`${h}.post_attention_layernorm.weight`, [D], 'hidden_size'))
      lin(`${h}.mlp.up_proj`, `${s}.mlp.fc1`, F, D, 'intermediate_size x hidden_size')
      lin(`${h}.mlp.gate_proj`, `${s}.mlp.gate`, F, D, 'intermediate_size x hidden_size')
      lin(`${h}.mlp.down_proj`, `${s}.mlp.fc2`, D, F, 'hidden_size x intermediate_size')
    }
    p.set('norm.weight', t.take('model.norm.weight', [D], 'hidden_size'))
    const notes: string[] = []
    if (!tied) p.set('head.weight', transpose(t.take('lm_head.weight', [V, D], 'vocab_size x hidden_size')))
    else if (t.ignore((n) => n === 'lm_head.weight').length > 0)
      notes.push('lm_head.weight ignored: tie_word_embeddings is true, so the head is embed_tokens')
    if (t.ignore((n) => /\.rotary_emb\.inv_freq$/.test(n)).length > 0)
      notes.push('ignored rotary_emb.inv_freq buffers (recomputed from rope_theta)')
    t.finish('LlamaForCausalLM')
    return { spec, params: p, notes }
  },

  exportProblem(spec: TransformerSpec) {
    const common = commonExportProblem(spec)
    if (common) return common
    if (spec.family !== 'decoder') return `LLaMA is a decoder; this model is family "${spec.family}"`
    if (spec.norm !== 'rmsnorm' || spec.normPlacement !== 'pre') return 'LLaMA needs pre-RMSNorm'
    if (spec.activation !== 'swiglu') return 'LLaMA MLPs are SwiGLU (spec.activation "swiglu")'
    if (spec.positional !== 'rotary') return 'LLaMA uses rotary positions (spec.positional "rotary")'
    return null
  },

  toHf(spec, params) {
    const get = (n: string) => params.get(n)!
    const out: LazyTensors = new Map()
    out.set('model.embed_tokens.weight', get('embed.tokens'))
    const lin = linearExporter(params, out, spec.bias)
    for (let l = 0; l < spec.nLayers; l++) {
      const h = `model.layers.${l}`
      const s = `layers.${l}`
      out.set(`${h}.input_layernorm.weight`, get(`${s}.norm1.weight`))
      lin(`${s}.attn.q`, `${h}.self_attn.q_proj`)
      lin(`${s}.attn.k`, `${h}.self_attn.k_proj`)
      lin(`${s}.attn.v`, `${h}.self_attn.v_proj`)
      lin(`${s}.attn.o`, `${h}.self_attn.o_proj`)
      out.set(`${h}.post_attention_layernorm.weight`, get(`${s}.norm2.weight`))
      lin(`${s}.mlp.fc1`, `${h}.mlp.up_proj`)
      lin(`${s}.mlp.gate`, `${h}.mlp.gate_proj`)
      lin(`${s}.mlp.fc2`, `${h}.mlp.down_proj`)
    }
    out.set('model.norm.weight', get('norm.weight'))
    if (!spec.tieEmbeddings) out.set('lm_head.weight', transposed(get('head.weight')))
    const config = {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: spec.vocabSize,
      hidden_size: spec.dModel,
      intermediate_size: spec.dFF,
      num_hidden_layers: spec.nLayers,
      num_attention_heads: spec.nHeads,
      num_key_value_heads: spec.nKVHeads ?? spec.nHeads,
      head_dim: spec.headDim,
      hidden_act: 'silu',
      max_position_embeddings: spec.maxSeqLen,
      rms_norm_eps: spec.normEps,
      rope_theta: spec.ropeTheta ?? 10000,
      rope_scaling: null,
      attention_bias: spec.bias,
      mlp_bias: spec.bias,
      attention_dropout: 0,
      tie_word_embeddings: spec.tieEmbeddings,
      initializer_range: 0.02,
      pretraining_tp: 1,
      use_cache: true,
    }
    return { config, tensors: out, notes: [] }
  },
}
