import { cpSync, existsSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  allowNonFinite,
  assertFiniteTensor,
  assertFitsMemory,
  fsError,
  type Model,
  OutputWriter,
  openSafetensors,
  type Params,
  readJsonFile,
  type SafetensorsReader,
  SproutError,
  type TensorToWrite,
  type TransformerSpec,
  validateParams,
  writeSafetensors,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { bert } from './archs/bert.js'
import {
  type ArchConverter,
  type ArchName,
  ConfigReader,
  type HfConfig,
  type HostTensors,
  type LazyTensors,
  TensorReader,
} from './archs/common.js'
import { gpt2 } from './archs/gpt2.js'
import { llama } from './archs/llama.js'
import { vit } from './archs/vit.js'

export const CONVERTERS: Record<ArchName, ArchConverter> = { gpt2, bert, vit, llama }

/** Hugging Face class names read, and the converter each maps to. */
const CLASSES: Record<string, ArchName> = {
  GPT2LMHeadModel: 'gpt2',
  GPT2Model: 'gpt2',
  LlamaForCausalLM: 'llama',
  BertForMaskedLM: 'bert',
  BertForPreTraining: 'bert',
  ViTForImageClassification: 'vit',
}
const MODEL_TYPES: Record<string, ArchName> = { gpt2: 'gpt2', llama: 'llama', bert: 'bert', vit: 'vit' }

export type HfDtype = 'f32' | 'f16' | 'bf16'
const FLOAT_FORMAT = { f32: 'F32', f16: 'F16', bf16: 'BF16' } as const
const TORCH_DTYPE = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' } as const

export interface HfImportInfo {
  arch: ArchName
  /** The Hugging Face class named in config.json. */
  hfClass: string
  config: HfConfig
  /** safetensors files read (one, or every shard). */
  files: string[]
  /** Storage dtypes found in the files (F16 / BF16 are widened to float32). */
  dtypes: string[]
  notes: string[]
}

export interface HfExportOptions {
  /** Target architecture; inferred from the spec when omitted (decoder: rotary -> llama, else gpt2). */
  arch?: ArchName
  /** Storage dtype of the written weights (default f32). */
  dtype?: HfDtype
  /** Split weights into shards of at most this many bytes (with model.safetensors.index.json). */
  maxShardBytes?: number
  /** Replace an existing Hugging Face directory (one with a config.json). */
  force?: boolean
  /** Where one-line notes go (an interrupted earlier export recovered, a stale lock taken over). */
  log?: (line: string) => void
  /**
   * The config.json the model was imported from: its non-structural fields (label names,
   * special token ids, ...) are carried over; structural fields always come from the spec.
   */
  baseConfig?: HfConfig
}

/** Fields copied from a base config.json on export (never ones that describe the network's shape). */
const PRESERVED = [
  'id2label',
  'label2id',
  'bos_token_id',
  'eos_token_id',
  'pad_token_id',
  'sep_token_id',
  'cls_token_id',
  'decoder_start_token_id',
  'initializer_range',
  'problem_type',
]

export interface HfExportResult {
  arch: ArchName
  config: HfConfig
  files: string[]
  notes: string[]
}

export interface HfDirectory {
  config: HfConfig
  tensors: HostTensors
  /** Integer tensors (buffers such as position_ids). */
  intNames: Set<string>
  files: string[]
  dtypes: string[]
  /** Legacy LayerNorm tensors renamed from .gamma / .beta to .weight / .bias. */
  renamed: string[]
}

export interface HfReadOptions {
  /** Import weights holding NaN/Inf (default: `allowNonFinite()` from core, i.e. --allow-non-finite). */
  allowNonFinite?: boolean
}

/**
 * Reads config.json and the weights (model.safetensors, or shards listed in
 * model.safetensors.index.json) through core's validating, streaming safetensors reader.
 */
export function readHfDirectory(dir: string, options: HfReadOptions = {}): HfDirectory {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new SproutError(
      'CHECKPOINT_NOT_FOUND',
      `${dir} is not a directory; pass a Hugging Face model directory`,
    )
  const configPath = join(dir, 'config.json')
  if (!existsSync(configPath))
    throw new SproutError(
      'CHECKPOINT_NOT_FOUND',
      `${dir} has no config.json; it is not a Hugging Face model directory`,
    )
  const config = readJsonFile(configPath, 'Hugging Face config', 'CHECKPOINT_INVALID')
  if (typeof config !== 'object' || config === null || Array.isArray(config))
    throw new SproutError('CHECKPOINT_INVALID', `${configPath}: expected a JSON object`)
  const indexPath = join(dir, 'model.safetensors.index.json')
  const single = join(dir, 'model.safetensors')
  let files: string[]
  let weightMap: Record<string, string> | null = null
  if (existsSync(indexPath)) {
    const index = readJsonFile(indexPath, 'shard index', 'CHECKPOINT_INVALID') as { weight_map?: unknown }
    const wm = index?.weight_map
    if (typeof wm !== 'object' || wm === null || Object.values(wm).some((v) => typeof v !== 'string'))
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `${indexPath}: "weight_map" must map tensor names to shard file names`,
      )
    weightMap = wm as Record<string, string>
    files = [...new Set(Object.values(weightMap))].sort()
    for (const f of files)
      if (f.includes('/') || f.includes('\\') || f.startsWith('.'))
        throw new SproutError(
          'CHECKPOINT_INVALID',
          `${indexPath}: shard name "${f}" must be a plain file name`,
        )
  } else if (existsSync(single)) {
    files = ['model.safetensors']
  } else {
    const bins = readdirSync(dir).filter((f) => f.endsWith('.bin') || f.endsWith('.pt') || f.endsWith('.pth'))
    throw new SproutError(
      'CHECKPOINT_NOT_FOUND',
      bins.length > 0
        ? `${dir} holds PyTorch pickles (${bins.join(', ')}) but no safetensors; Sprout reads safetensors only. Convert first: python -c "from transformers import AutoModel; AutoModel.from_pretrained('${dir}').save_pretrained('${dir}-st', safe_serialization=True)"`
        : `${dir} has no model.safetensors or model.safetensors.index.json`,
    )
  }
  const tensors: HostTensors = new Map()
  const intNames = new Set<string>()
  const dtypes = new Set<string>()
  // Every shard's header is validated (and the index checked against it) before any tensor is
  // read, and the whole model is checked against the memory limit; tensors are then read one by one.
  const readers: SafetensorsReader[] = []
  try {
    const owner = new Map<string, string>()
    for (const f of files) {
      const path = join(dir, f)
      if (!existsSync(path))
        throw new SproutError(
          'CHECKPOINT_NOT_FOUND',
          `${dir}: shard ${f} listed in model.safetensors.index.json is missing`,
        )
      const reader = openSafetensors(path)
      readers.push(reader)
      for (const [name, t] of reader.entries) {
        dtypes.add(t.storedAs)
        if (weightMap && weightMap[name] !== f)
          throw new SproutError(
            'CHECKPOINT_INVALID',
            `${path}: tensor "${name}" is not listed for this shard in model.safetensors.index.json (index says ${weightMap[name] ?? 'nothing'})`,
          )
        if (owner.has(name))
          throw new SproutError('CHECKPOINT_INVALID', `${dir}: tensor "${name}" appears in two shards`)
        owner.set(name, f)
      }
    }
    const bytes = readers.reduce((n, r) => n + r.decodedBytes(), 0)
    assertFitsMemory(
      bytes,
      `importing ${dir} (${files.length} safetensors file${files.length > 1 ? 's' : ''})`,
    )
    const finite = !(options.allowNonFinite ?? allowNonFinite())
    for (const reader of readers)
      for (const name of reader.entries.keys()) {
        const t = reader.read(name)
        if (t.dtype === 'int32') {
          intNames.add(name)
          continue
        }
        if (finite) assertFiniteTensor(reader.path, name, t.data)
        tensors.set(name, { shape: t.shape, data: t.data as Float32Array })
      }
  } finally {
    for (const r of readers) r.close()
  }
  // Old TensorFlow-era checkpoints (e.g. bert-base-uncased) name LayerNorm parameters gamma/beta;
  // transformers renames them on load, and so do we.
  const renamed: string[] = []
  for (const name of [...tensors.keys()]) {
    const m = /^(.*LayerNorm)\.(gamma|beta)$/.exec(name)
    if (!m) continue
    const to = `${m[1]}.${m[2] === 'gamma' ? 'weight' : 'bias'}`
    if (tensors.has(to)) continue
    tensors.set(to, tensors.get(name)!)
    tensors.delete(name)
    if (weightMap) weightMap[to] = weightMap[name]
    renamed.push(name)
  }
  if (weightMap)
    for (const [name, f] of Object.entries(weightMap))
      if (!renamed.includes(name) && !tensors.has(name) && !intNames.has(name))
        throw new SproutError(
          'CHECKPOINT_INVALID',
          `${join(dir, f)}: missing tensor "${name}" listed in model.safetensors.index.json`,
        )
  return { config: config as HfConfig, tensors, intNames, files, dtypes: [...dtypes].sort(), renamed }
}

/** Which converter a config.json asks for; unknown architectures are refused by name. */
export function detectArch(config: HfConfig, where: string): { arch: ArchName; hfClass: string } {
  const archs = config.architectures
  if (Array.isArray(archs) && archs.length > 0) {
    const cls = String(archs[0])
    const arch = CLASSES[cls]
    if (!arch)
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `${where}: field "architectures" = ${JSON.stringify(archs)} is not supported; Sprout converts ${Object.keys(CLASSES).join(', ')}`,
      )
    return { arch, hfClass: cls }
  }
  const mt = config.model_type
  if (typeof mt === 'string' && MODEL_TYPES[mt])
    return { arch: MODEL_TYPES[mt], hfClass: CONVERTERS[MODEL_TYPES[mt]].hfClass }
  throw new SproutError(
    'CHECKPOINT_INVALID',
    `${where}: neither "architectures" nor "model_type" (${JSON.stringify(mt)}) names a supported architecture (${Object.keys(CLASSES).join(', ')})`,
  )
}

function toModel(spec: TransformerSpec, host: HostTensors): Model {
  const params: Params = {}
  for (const [name, t] of host) params[name] = tf.tensor(t.data, t.shape, 'float32')
  try {
    validateParams(spec, params)
  } catch (e) {
    for (const t of Object.values(params)) t.dispose()
    throw e
  }
  return { spec, params }
}

/** Reads a Hugging Face model directory (GPT-2, BERT, ViT, LLaMA; safetensors, sharded or not) as a Sprout model. */
export function importHuggingFace(
  dir: string,
  options: HfReadOptions = {},
): { model: Model; info: HfImportInfo } {
  const hf = readHfDirectory(dir, options)
  const where = join(dir, 'config.json')
  const { arch, hfClass } = detectArch(hf.config, where)
  const reader = new TensorReader(hf.tensors, dir, hf.intNames)
  const parts = CONVERTERS[arch].fromHf(new ConfigReader(hf.config, where), reader)
  const notes = [...parts.notes]
  if (hfClass === 'BertForPreTraining')
    notes.push('read BertForPreTraining as BertForMaskedLM (next-sentence head dropped)')
  if (hf.renamed.length > 0)
    notes.push(`renamed ${hf.renamed.length} legacy LayerNorm tensors (.gamma/.beta -> .weight/.bias)`)
  if (hf.dtypes.some((d) => d === 'F16' || d === 'BF16'))
    notes.push(`weights stored as ${hf.dtypes.join('/')} were widened to float32`)
  return {
    model: toModel(parts.spec, parts.params),
    info: { arch, hfClass, config: hf.config, files: hf.files, dtypes: hf.dtypes, notes },
  }
}

/** The architecture a spec exports to by default. */
export function defaultArch(spec: TransformerSpec): ArchName {
  if (spec.family === 'vit') return 'vit'
  if (spec.family === 'encoder') return 'bert'
  return spec.positional === 'rotary' ? 'llama' : 'gpt2'
}

/**
 * The model's parameters as lazy host tensors. A read returns the backend's own array where it
 * is a Float32Array (every consumer here only reads it, and the native backend's pool never
 * reuses an array that was read out); toHuggingFace copies what it hands to its caller.
 */
function lazyParams(model: Model): LazyTensors {
  validateParams(model.spec, model.params)
  const out: LazyTensors = new Map()
  for (const [name, t] of Object.entries(model.params))
    out.set(name, {
      shape: [...t.shape],
      read: () => {
        const v = t.dataSync()
        return v instanceof Float32Array ? v : Float32Array.from(v)
      },
    })
  return out
}

type HfConvertOptions = Pick<HfExportOptions, 'arch' | 'dtype' | 'baseConfig'>

/** The Hugging Face config.json and tensors of a model, without writing anything. */
export function toHuggingFace(
  model: Model,
  options: HfConvertOptions = {},
): { arch: ArchName; config: HfConfig; tensors: HostTensors; notes: string[] } {
  const { tensors, ...rest } = lazyHuggingFace(model, options)
  const host: HostTensors = new Map()
  for (const [name, t] of tensors) host.set(name, { shape: t.shape, data: t.read().slice() })
  return { ...rest, tensors: host }
}

/** toHuggingFace with tensors computed only when read (what an export streams to disk). */
function lazyHuggingFace(
  model: Model,
  options: HfConvertOptions = {},
): { arch: ArchName; config: HfConfig; tensors: LazyTensors; notes: string[] } {
  const arch = options.arch ?? defaultArch(model.spec)
  const conv = CONVERTERS[arch]
  if (!conv)
    throw new SproutError(
      'USAGE',
      `unknown architecture "${arch}"; choose ${Object.keys(CONVERTERS).join(', ')}`,
    )
  const problem = conv.exportProblem(model.spec)
  if (problem)
    throw new SproutError('INPUT_INVALID', `cannot export this model as ${conv.hfClass}: ${problem}`)
  const parts = conv.toHf(model.spec, lazyParams(model))
  const config: HfConfig = { ...parts.config, torch_dtype: TORCH_DTYPE[options.dtype ?? 'f32'] }
  const base = options.baseConfig
  if (base && base.model_type === config.model_type)
    for (const key of PRESERVED) {
      if (base[key] === undefined) continue
      const labels = key === 'id2label' || key === 'label2id'
      const classes = model.spec.image?.classes
      if (labels && (typeof base[key] !== 'object' || Object.keys(base[key] as object).length !== classes))
        continue
      config[key] = base[key]
    }
  return { arch, config, tensors: parts.tensors, notes: parts.notes }
}

function checkExportDir(dir: string, force: boolean): void {
  if (!existsSync(dir)) return
  if (!statSync(dir).isDirectory())
    throw new SproutError('IO', `${dir} exists and is a file; choose another directory`)
  const entries = readdirSync(dir)
  if (entries.length === 0) return
  if (!entries.includes('config.json'))
    throw new SproutError(
      'IO',
      `${dir} exists and is not a Hugging Face model directory; choose another directory`,
    )
  if (!force)
    throw new SproutError(
      'IO',
      `${dir} already holds a Hugging Face model; pass force (--force) to overwrite it`,
    )
}

/** What an export writes; anything else in a replaced directory (tokenizer, README, ...) is kept. */
const isExportFile = (f: string) =>
  f === 'config.json' ||
  f === 'model.safetensors' ||
  f === 'model.safetensors.index.json' ||
  /^model-\d+-of-\d+\.safetensors$/.test(f)

/**
 * Writes a model as a Hugging Face directory: config.json with the architecture's own field
 * names and model.safetensors (or shards + index) with its tensor names and layouts. The
 * directory is written beside its place and swapped in (core's OutputWriter): a crash leaves the
 * old complete directory or the new one, never weights without their config.
 */
export function exportHuggingFace(model: Model, dir: string, options: HfExportOptions = {}): HfExportResult {
  const dtype = options.dtype ?? 'f32'
  if (!(dtype in FLOAT_FORMAT))
    throw new SproutError('USAGE', `dtype "${dtype}" is not supported; choose f32, f16 or bf16`)
  const { arch, config, tensors, notes } = lazyHuggingFace(model, options)
  checkExportDir(dir, options.force ?? false)
  const writer = new OutputWriter(dir, options.log)
  const tmp = writer.tmp
  const bytesPer = dtype === 'f32' ? 4 : 2
  const names = [...tensors.keys()].sort()
  const shards: string[][] = [[]]
  let size = 0
  let total = 0
  for (const n of names) {
    const b = tensors.get(n)!.shape.reduce((a, d) => a * d, 1) * bytesPer
    total += b
    if (options.maxShardBytes && size > 0 && size + b > options.maxShardBytes) {
      shards.push([])
      size = 0
    }
    shards[shards.length - 1].push(n)
    size += b
  }
  const files: string[] = []
  const write = (file: string, group: string[]) => {
    const m = new Map<string, TensorToWrite>()
    for (const n of group) {
      const t = tensors.get(n)!
      m.set(n, { dtype: 'float32', shape: t.shape, data: t.read })
    }
    writeSafetensors(join(tmp, file), m, { format: 'pt' }, FLOAT_FORMAT[dtype])
    files.push(file)
  }
  try {
    if (shards.length === 1) {
      write('model.safetensors', shards[0])
    } else {
      const weightMap: Record<string, string> = {}
      shards.forEach((group, i) => {
        const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`
        write(file, group)
        for (const n of group) weightMap[n] = file
      })
      const index = { metadata: { total_size: total }, weight_map: weightMap }
      writeFileSync(join(tmp, 'model.safetensors.index.json'), `${JSON.stringify(index, null, 2)}\n`)
      files.push('model.safetensors.index.json')
    }
    writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`)
    files.push('config.json')
    // Weights of an older export are not copied (they would confuse loaders); the user's files are.
    if (existsSync(dir))
      for (const f of readdirSync(dir))
        if (!isExportFile(f)) cpSync(join(dir, f), join(tmp, f), { recursive: true })
  } catch (e) {
    writer.abort()
    throw fsError(e, dir) ?? e
  }
  writer.commit()
  return { arch, config, files, notes }
}
