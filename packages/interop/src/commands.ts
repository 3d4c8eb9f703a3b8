import { existsSync } from 'node:fs'
import { join } from 'node:path'
import {
  allowNonFinite,
  type CommandIo,
  countNonFinite,
  describeNonFinite,
  disposeModel,
  explainNonFinite,
  forward,
  loadCheckpoint,
  type Model,
  prepareOutput,
  readJsonFile,
  SproutError,
  saveCheckpoint,
  specSummary,
  type TransformerSpec,
  writeSafetensors,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import type { ArchName, HfConfig } from './archs/common.js'
import { CONVERTERS, exportHuggingFace, type HfDtype, importHuggingFace } from './hf.js'

export interface ConvertArgs {
  /** "hf": read a Hugging Face directory into a Sprout checkpoint. */
  from?: string
  /** "hf": write a Sprout checkpoint as a Hugging Face directory. */
  to?: string
  in: string
  out: string
  /** --to hf only: f32 (default), f16 or bf16. */
  dtype?: string
  /** --to hf only: gpt2, llama, bert or vit (default: inferred from the spec). */
  arch?: string
  /** --to hf only: shard the weights into files of at most this many MB. */
  shardMb?: number
  force?: boolean
  json?: boolean
}

function usage(msg: string): never {
  throw new SproutError('USAGE', msg)
}

/** `sprout convert --from hf | --to hf --in DIR --out DIR2 [--dtype f16|bf16] [--arch NAME]`. */
export async function runConvert(args: ConvertArgs, io: CommandIo): Promise<void> {
  if ((args.from === undefined) === (args.to === undefined))
    usage(
      'convert needs exactly one of --from hf (Hugging Face -> Sprout) or --to hf (Sprout -> Hugging Face)',
    )
  const fmt = args.from ?? args.to
  if (fmt !== 'hf')
    usage(`unknown format "${fmt}"; the only format is "hf" (Hugging Face safetensors directories)`)
  if (!args.in || args.out === undefined) usage('convert needs --in DIR and --out DIR')
  const log = (line: string) => io.err(line)
  if (args.from !== undefined) {
    for (const [flag, v] of [
      ['--dtype', args.dtype],
      ['--arch', args.arch],
      ['--shard-mb', args.shardMb],
    ] as const)
      if (v !== undefined) usage(`${flag} applies to --to hf only (a Sprout checkpoint stores float32)`)
    const lock = prepareOutput(args.out, { force: args.force, log })
    let imported: ReturnType<typeof importHuggingFace>
    try {
      imported = importHuggingFace(args.in)
    } catch (e) {
      lock.release()
      throw e
    }
    const { model, info } = imported
    try {
      await saveCheckpoint(args.out, model, {
        log,
        meta: {
          convertedFrom: {
            format: 'huggingface',
            hfClass: info.hfClass,
            config: info.config,
            files: info.files,
            dtypes: info.dtypes,
            notes: info.notes,
          },
        },
      })
      for (const n of info.notes) io.err(`note: ${n}`)
      io.out(`converted ${info.hfClass} (${specSummary(model.spec)}) from ${args.in} -> ${args.out}`)
      if (args.json)
        io.out(
          JSON.stringify({
            direction: 'from-hf',
            arch: info.arch,
            hfClass: info.hfClass,
            spec: model.spec,
            out: args.out,
          }),
        )
    } finally {
      disposeModel(model)
      lock.release()
    }
    return
  }
  const dtype = (args.dtype ?? 'f32') as HfDtype
  if (!['f32', 'f16', 'bf16'].includes(dtype)) usage(`--dtype "${args.dtype}" is not one of f32, f16, bf16`)
  if (args.arch !== undefined && !(args.arch in CONVERTERS))
    usage(`--arch "${args.arch}" is not one of ${Object.keys(CONVERTERS).join(', ')}`)
  if (args.shardMb !== undefined && !(args.shardMb > 0)) usage('--shard-mb must be a positive number')
  const lock = prepareOutput(args.out, {
    force: args.force,
    log,
    marker: 'config.json',
    what: 'a Hugging Face model',
    kind: 'a Hugging Face model directory',
  })
  let loaded: ReturnType<typeof loadCheckpoint>
  try {
    loaded = loadCheckpoint(args.in)
  } catch (e) {
    lock.release()
    throw e
  }
  const { model, meta } = loaded
  try {
    // A model imported from Hugging Face keeps its label names and special token ids.
    const origin = meta.convertedFrom as { config?: HfConfig } | undefined
    const res = exportHuggingFace(model, args.out, {
      baseConfig: origin?.config,
      arch: args.arch as ArchName | undefined,
      dtype,
      maxShardBytes: args.shardMb ? Math.floor(args.shardMb * 1e6) : undefined,
      force: args.force,
      log,
    })
    for (const n of res.notes) io.err(`note: ${n}`)
    io.out(
      `exported ${specSummary(model.spec)} as ${CONVERTERS[res.arch].hfClass} (${dtype}) -> ${args.out} (${res.files.join(', ')})`,
    )
    if (args.json)
      io.out(JSON.stringify({ direction: 'to-hf', arch: res.arch, dtype, files: res.files, out: args.out }))
  } finally {
    disposeModel(model)
    lock.release()
  }
}

/** Loads a Sprout checkpoint (sprout.json) or a Hugging Face directory (config.json). */
export function loadAnyModel(dir: string): { model: Model; kind: 'sprout' | 'hf' } {
  if (existsSync(join(dir, 'sprout.json'))) return { model: loadCheckpoint(dir).model, kind: 'sprout' }
  if (existsSync(join(dir, 'config.json'))) return { model: importHuggingFace(dir).model, kind: 'hf' }
  throw new SproutError(
    'CHECKPOINT_NOT_FOUND',
    `${dir} is neither a Sprout checkpoint (sprout.json) nor a Hugging Face directory (config.json)`,
  )
}

/** Token ids: [t, ...] (one sequence) or [[t, ...], ...] (a batch of equal-length sequences). */
export function parseTokens(raw: unknown, spec: TransformerSpec, where: string): tf.Tensor2D {
  if (!Array.isArray(raw) || raw.length === 0)
    throw new SproutError(
      'INPUT_INVALID',
      `${where}: expected an array of token ids or an array of such arrays`,
    )
  const rows = (Array.isArray(raw[0]) ? raw : [raw]) as unknown[]
  const T = (rows[0] as unknown[]).length
  if (T === 0) throw new SproutError('INPUT_INVALID', `${where}: sequence 0 is empty`)
  const ids = new Int32Array(rows.length * T)
  rows.forEach((row, b) => {
    if (!Array.isArray(row) || row.length !== T)
      throw new SproutError(
        'INPUT_INVALID',
        `${where}: sequence ${b} must be an array of ${T} token ids (all sequences share one length)`,
      )
    row.forEach((v, t) => {
      if (!Number.isInteger(v) || v < 0 || v >= spec.vocabSize)
        throw new SproutError(
          'INPUT_INVALID',
          `${where}: token [${b}][${t}] = ${JSON.stringify(v)} is not an id in [0, ${spec.vocabSize})`,
        )
      ids[b * T + t] = v
    })
  })
  if (T > spec.maxSeqLen)
    throw new SproutError(
      'INPUT_INVALID',
      `${where}: sequences of ${T} tokens exceed the model's maxSeqLen ${spec.maxSeqLen}`,
    )
  return tf.tensor2d(ids, [rows.length, T], 'int32')
}

function shapeOf(v: unknown): number[] {
  const shape: number[] = []
  let cur = v
  while (Array.isArray(cur)) {
    shape.push(cur.length)
    cur = cur[0]
  }
  return shape
}

/**
 * Images: an array of images, each [S][S][C] (channels last, Sprout's layout), [C][S][S]
 * (channels first, PyTorch's pixel_values) or a flat array of S·S·C values in [S][S][C] order.
 */
export function parseImages(raw: unknown, spec: TransformerSpec, where: string): tf.Tensor4D {
  const img = spec.image
  if (!img)
    throw new SproutError(
      'INPUT_INVALID',
      `${where}: this model is not an image model (family "${spec.family}")`,
    )
  if (!Array.isArray(raw) || raw.length === 0)
    throw new SproutError('INPUT_INVALID', `${where}: expected an array of images`)
  const { size: S, channels: C } = img
  const per = S * S * C
  const out = new Float32Array(raw.length * per)
  raw.forEach((image, b) => {
    const shape = shapeOf(image)
    const flat = Array.isArray(image) ? (image.flat(3) as unknown[]) : []
    if (flat.length !== per || flat.some((v) => typeof v !== 'number' || !Number.isFinite(v)))
      throw new SproutError(
        'INPUT_INVALID',
        `${where}: image ${b} must hold ${S}x${S}x${C} finite numbers ([${S}][${S}][${C}], [${C}][${S}][${S}] or flat), got shape [${shape}]`,
      )
    const nums = flat as number[]
    const chw = shape.length === 3 && shape[0] === C && shape[2] === S && !(shape[1] === S && shape[2] === C)
    if (shape.length === 3 && !chw && !(shape[0] === S && shape[1] === S && shape[2] === C))
      throw new SproutError(
        'INPUT_INVALID',
        `${where}: image ${b} has shape [${shape}]; expected [${S}][${S}][${C}] or [${C}][${S}][${S}]`,
      )
    for (let y = 0; y < S; y++)
      for (let x = 0; x < S; x++)
        for (let c = 0; c < C; c++)
          out[b * per + (y * S + x) * C + c] = chw ? nums[(c * S + y) * S + x] : nums[(y * S + x) * C + c]
  })
  return tf.tensor4d(out, [raw.length, S, S, C])
}

export interface ForwardArgs {
  /** A Sprout checkpoint or a Hugging Face directory. */
  checkpoint: string
  tokens?: string
  images?: string
  out: string
  json?: boolean
}

/** `sprout forward --checkpoint DIR (--tokens tokens.json | --images images.json) --out logits.safetensors`. */
export async function runForward(args: ForwardArgs, io: CommandIo): Promise<{ shape: number[] }> {
  if ((args.tokens === undefined) === (args.images === undefined))
    usage('forward needs exactly one of --tokens FILE (text models) or --images FILE (vit models)')
  if (!args.out) usage('forward needs --out FILE (a .safetensors file for the logits)')
  const { model, kind } = loadAnyModel(args.checkpoint)
  let inputs: tf.Tensor | null = null
  try {
    const spec = model.spec
    if (args.tokens !== undefined) {
      if (spec.family === 'vit') usage(`${args.checkpoint} is an image model; pass --images, not --tokens`)
      inputs = parseTokens(readJsonFile(args.tokens, 'tokens'), spec, args.tokens)
    } else {
      inputs = parseImages(readJsonFile(args.images!, 'images'), spec, args.images!)
    }
    const logits = forward(model, inputs)
    const shape = logits.shape
    const data = (await logits.data()) as Float32Array
    logits.dispose()
    const bad = countNonFinite(data)
    if (bad.nan > 0 || bad.inf > 0) {
      const why = `the logits hold ${describeNonFinite(bad, data.length)} because ${explainNonFinite(model)}`
      if (!allowNonFinite())
        throw new SproutError(
          'WEIGHTS_NON_FINITE',
          `${args.checkpoint}: ${why}; pass --allow-non-finite to write them anyway`,
        )
      io.err(`warning: ${why}`)
    }
    writeSafetensors(
      args.out,
      { logits: { dtype: 'float32', shape, data } },
      { format: 'pt', checkpoint: args.checkpoint, source: kind },
    )
    io.out(`wrote logits [${shape}] (${specSummary(spec)}) -> ${args.out}`)
    if (args.json) io.out(JSON.stringify({ out: args.out, shape }))
    return { shape }
  } finally {
    inputs?.dispose()
    disposeModel(model)
  }
}
