import { SproutError, type TransformerSpec } from '@sprout/core'

/** A float tensor in host memory, row-major. */
export interface HostTensor {
  shape: number[]
  data: Float32Array
}

/** Tensors by name (Hugging Face names on one side, Sprout canonical names on the other). */
export type HostTensors = Map<string, HostTensor>

/** The parsed config.json of a Hugging Face model directory. */
export type HfConfig = Record<string, unknown>

export type ArchName = 'gpt2' | 'bert' | 'vit' | 'llama'

export interface ImportedParts {
  spec: TransformerSpec
  params: HostTensors
  /** Things a user should know about the conversion (folded tensors, ignored buffers). */
  notes: string[]
}

/**
 * A tensor whose values are computed when read. An export is a map of these: the writer reads
 * one at a time, so converting never holds a second copy of the whole model.
 */
export interface LazyTensor {
  shape: number[]
  read(): Float32Array
}

export type LazyTensors = Map<string, LazyTensor>

export interface ExportedParts {
  config: HfConfig
  tensors: LazyTensors
  notes: string[]
}

/** One Hugging Face architecture, converted both ways. */
export interface ArchConverter {
  name: ArchName
  /** The `architectures[0]` class name it reads and writes. */
  hfClass: string
  modelType: string
  fromHf(config: ConfigReader, tensors: TensorReader): ImportedParts
  /** Why this spec cannot be written in this architecture, or null when it can. */
  exportProblem(spec: TransformerSpec): string | null
  toHf(spec: TransformerSpec, params: LazyTensors): ExportedParts
}

/** Reads config.json fields; every error names the field and the file. */
export class ConfigReader {
  constructor(
    readonly raw: HfConfig,
    readonly where: string,
  ) {}

  private fail(field: string, problem: string): never {
    throw new SproutError('CHECKPOINT_INVALID', `${this.where}: field "${field}" ${problem}`)
  }

  has(field: string): boolean {
    return this.raw[field] !== undefined && this.raw[field] !== null
  }

  int(field: string, fallback?: number): number {
    const v = this.raw[field]
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback
      this.fail(field, 'is required but missing')
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0)
      this.fail(field, `must be a positive integer (got ${JSON.stringify(v)})`)
    return v
  }

  num(field: string, fallback?: number): number {
    const v = this.raw[field]
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback
      this.fail(field, 'is required but missing')
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      this.fail(field, `must be a positive number (got ${JSON.stringify(v)})`)
    return v
  }

  str(field: string, fallback: string): string {
    const v = this.raw[field]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'string') this.fail(field, `must be a string (got ${JSON.stringify(v)})`)
    return v
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.raw[field]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'boolean') this.fail(field, `must be true or false (got ${JSON.stringify(v)})`)
    return v
  }

  /** Refuses a config option Sprout does not implement. */
  unsupported(field: string, value: unknown, why: string): never {
    throw new SproutError(
      'CHECKPOINT_INVALID',
      `${this.where}: field "${field}" = ${JSON.stringify(value)} is not supported: ${why}`,
    )
  }

  /** Maps a field's string value through a table, refusing values outside it. */
  choice<T>(field: string, fallback: string, table: Record<string, T>): T {
    const v = this.str(field, fallback)
    if (!(v in table))
      this.unsupported(
        field,
        v,
        `supported values are ${Object.keys(table)
          .map((k) => `"${k}"`)
          .join(', ')}`,
      )
    return table[v]
  }
}

/** Hands out a checkpoint's tensors by name, checking shapes, and reports any left unused. */
export class TensorReader {
  private readonly used = new Set<string>()
  constructor(
    private readonly tensors: HostTensors,
    readonly where: string,
    /** Names of integer tensors (buffers such as position_ids), which a converter may ignore. */
    readonly intNames: Set<string> = new Set(),
  ) {}

  has(name: string): boolean {
    return this.tensors.has(name) || this.intNames.has(name)
  }

  /** The tensor `name` with the shape the config implies; `why` explains where the shape comes from. */
  take(name: string, shape: number[], why: string): HostTensor {
    const t = this.tensors.get(name)
    if (!t) {
      if (this.intNames.has(name))
        throw new SproutError('CHECKPOINT_INVALID', `${this.where}: tensor "${name}" must be a float tensor`)
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `${this.where}: missing tensor "${name}" (expected shape [${shape}] from ${why})`,
      )
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `${this.where}: tensor "${name}" has shape [${t.shape}] but config.json implies [${shape}] (${why})`,
      )
    this.used.add(name)
    return t
  }

  /** Marks matching tensors as deliberately unused (buffers, heads Sprout does not model). */
  ignore(test: (name: string) => boolean): string[] {
    const out: string[] = []
    for (const name of [...this.tensors.keys(), ...this.intNames])
      if (!this.used.has(name) && test(name)) {
        this.used.add(name)
        out.push(name)
      }
    return out
  }

  /** Throws on tensors nobody took or ignored: they mean the config and the weights disagree. */
  finish(arch: string): void {
    const left = [...this.tensors.keys(), ...this.intNames].filter((n) => !this.used.has(n))
    if (left.length > 0)
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `${this.where}: unexpected tensor "${left[0]}"${left.length > 1 ? ` (and ${left.length - 1} more)` : ''} is not part of a ${arch} with this config.json; check num_hidden_layers / the architecture`,
      )
  }
}

/** [rows, cols] -> [cols, rows]. */
export function transpose(t: HostTensor): HostTensor {
  const [r, c] = t.shape
  const out = new Float32Array(r * c)
  const d = t.data
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = d[i * c + j]
  return { shape: [c, r], data: out }
}

/** Columns [start, start + width) of a [rows, cols] matrix (or elements of a vector). */
export function columns(t: HostTensor, start: number, width: number): HostTensor {
  if (t.shape.length === 1) return { shape: [width], data: t.data.slice(start, start + width) }
  const [r, c] = t.shape
  const out = new Float32Array(r * width)
  for (let i = 0; i < r; i++) out.set(t.data.subarray(i * c + start, i * c + start + width), i * width)
  return { shape: [r, width], data: out }
}

/** Concatenates matrices along columns (or vectors end to end). */
export function concatColumns(parts: HostTensor[]): HostTensor {
  if (parts[0].shape.length === 1) {
    const n = parts.reduce((a, p) => a + p.data.length, 0)
    const out = new Float32Array(n)
    let o = 0
    for (const p of parts) {
      out.set(p.data, o)
      o += p.data.length
    }
    return { shape: [n], data: out }
  }
  const r = parts[0].shape[0]
  const c = parts.reduce((a, p) => a + p.shape[1], 0)
  const out = new Float32Array(r * c)
  for (let i = 0; i < r; i++) {
    let o = i * c
    for (const p of parts) {
      const w = p.shape[1]
      out.set(p.data.subarray(i * w, (i + 1) * w), o)
      o += w
    }
  }
  return { shape: [r, c], data: out }
}

export function reshape(t: HostTensor, shape: number[]): HostTensor {
  return { shape, data: t.data }
}

export function copy(t: HostTensor): HostTensor {
  return { shape: [...t.shape], data: t.data.slice() }
}

/** The dimensions BERT-style config.json files (BERT, ViT, LLaMA) name the same way. */
export function standardDims(cfg: ConfigReader): {
  dModel: number
  nLayers: number
  nHeads: number
  dFF: number
} {
  return {
    dModel: cfg.int('hidden_size'),
    nLayers: cfg.int('num_hidden_layers'),
    nHeads: cfg.int('num_attention_heads'),
    dFF: cfg.int('intermediate_size'),
  }
}

/** Imports nn.Linear layers: weight [out, in] transposed to Sprout's [in, out], and the bias if any. */
export function linearImporter(t: TensorReader, p: HostTensors, bias: boolean) {
  return (hf: string, ours: string, outDim: number, inDim: number, why: string): void => {
    p.set(`${ours}.weight`, transpose(t.take(`${hf}.weight`, [outDim, inDim], why)))
    if (bias) p.set(`${ours}.bias`, t.take(`${hf}.bias`, [outDim], why))
  }
}

/** Imports a LayerNorm's weight and bias of width D. */
export function layerNormImporter(t: TensorReader, p: HostTensors, D: number) {
  return (hf: string, ours: string): void => {
    p.set(`${ours}.weight`, t.take(`${hf}.weight`, [D], 'hidden_size'))
    p.set(`${ours}.bias`, t.take(`${hf}.bias`, [D], 'hidden_size'))
  }
}

/** Exports Sprout linears as nn.Linear (the inverse of linearImporter). */
export function linearExporter(params: LazyTensors, out: LazyTensors, bias: boolean) {
  return (ours: string, hf: string): void => {
    out.set(`${hf}.weight`, transposed(params.get(`${ours}.weight`)!))
    if (bias) out.set(`${hf}.bias`, params.get(`${ours}.bias`)!)
  }
}

/** Exports a LayerNorm's weight and bias under Hugging Face names. */
export function layerNormExporter(params: LazyTensors, out: LazyTensors) {
  return (ours: string, hf: string): void => {
    out.set(`${hf}.weight`, params.get(`${ours}.weight`)!)
    out.set(`${hf}.bias`, params.get(`${ours}.bias`)!)
  }
}

/** A lazy tensor computed from others by a host-tensor function, when it is read. */
export function derived(
  shape: number[],
  inputs: LazyTensor[],
  f: (...parts: HostTensor[]) => HostTensor,
): LazyTensor {
  return { shape, read: () => f(...inputs.map((t) => ({ shape: t.shape, data: t.read() }))).data }
}

export const transposed = (t: LazyTensor): LazyTensor => derived([t.shape[1], t.shape[0]], [t], transpose)

/** concatColumns, lazily. */
export function concatenatedColumns(parts: LazyTensor[]): LazyTensor {
  const width = parts.reduce((a, p) => a + p.shape[p.shape.length - 1], 0)
  const shape = parts[0].shape.length === 1 ? [width] : [parts[0].shape[0], width]
  return derived(shape, parts, (...host) => concatColumns(host))
}

/** The same values under another shape of the same size. */
export const reshaped = (t: LazyTensor, shape: number[]): LazyTensor => ({ shape, read: t.read })

export const zerosTensor = (shape: number[]): LazyTensor => ({
  shape,
  read: () => new Float32Array(shape.reduce((a, b) => a * b, 1)),
})

/** Why a spec uses features no Hugging Face layout here can express, or null. */
export function commonExportProblem(spec: TransformerSpec): string | null {
  if (spec.moe) return 'mixture-of-experts layers have no equivalent in this architecture'
  return null
}

/** Sprout activation -> the name Hugging Face's ACT2FN uses for the same function. */
export const HF_ACT: Record<TransformerSpec['activation'], string> = {
  gelu: 'gelu',
  gelu_tanh: 'gelu_new',
  relu: 'relu',
  swiglu: 'silu',
}

/** Hugging Face activation names Sprout computes exactly. */
export const FROM_HF_ACT: Record<string, 'gelu' | 'gelu_tanh' | 'relu'> = {
  gelu: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  relu: 'relu',
}
