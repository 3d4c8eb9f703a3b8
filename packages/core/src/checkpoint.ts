import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { SproutError } from './errors.js'
import { estimateModelBytes } from './estimate.js'
import { allowNonFinite, assertFiniteTensor, assertFitsMemory, formatBytes } from './limits.js'
import { fsError, hasLeftovers, lockOutput, recoverOutput, writeOutputDir } from './output-dir.js'
import { type Model, type Params, paramTable } from './params.js'
import {
  openSafetensors,
  type SafetensorsReader,
  type TensorToWrite,
  writeSafetensors,
} from './safetensors.js'
import { parseSpec, specSummary, type TransformerSpec } from './spec.js'

export const CHECKPOINT_FORMAT = 'sprout-checkpoint'
export const CHECKPOINT_VERSION = 1
const WEIGHTS = 'model.safetensors'
const STATE = 'state.safetensors'
const SIDECAR = 'sprout.json'

export interface CheckpointMeta {
  /** Free-form JSON: growth report, training step, RNG and data cursor, ... */
  [key: string]: unknown
}

export interface LoadedCheckpoint {
  model: Model
  meta: CheckpointMeta
  /** Non-model tensors saved alongside (optimizer moments, ...), if any. */
  state: Params | null
}

export interface SaveOptions {
  meta?: CheckpointMeta
  /** Extra tensors (optimizer state, ...) saved to state.safetensors. */
  state?: Params
  floatFormat?: 'F32' | 'F16' | 'BF16'
  /** Where the one-line notes go (a recovered interrupted write, a stale lock taken over). */
  log?: (line: string) => void
}

async function toWritable(tensors: Params): Promise<Map<string, TensorToWrite>> {
  const out = new Map<string, TensorToWrite>()
  for (const [name, t] of Object.entries(tensors)) {
    const data = (await t.data()) as Float32Array | Int32Array
    out.set(name, { dtype: t.dtype === 'int32' ? 'int32' : 'float32', shape: t.shape, data })
  }
  return out
}

/**
 * Writes a checkpoint directory: model.safetensors (+ state.safetensors) and sprout.json.
 * Everything is written to a hidden sibling folder, flushed and swapped in by rename
 * (output-dir.ts), under the folder's lock: a crash never leaves a half-written checkpoint where
 * a reader would look, and the next write recovers what an interrupted one left. An existing
 * checkpoint is replaced (commands refuse that without --force before calling this).
 */
export async function saveCheckpoint(dir: string, model: Model, options: SaveOptions = {}): Promise<void> {
  const lock = lockOutput(dir, options.log)
  try {
    recoverOutput(dir, options.log)
    if (existsSync(dir)) {
      if (!statSync(dir).isDirectory())
        throw new SproutError('IO', `${dir} exists and is a file; choose another output directory`)
      const entries = readdirSync(dir)
      if (entries.length > 0 && !entries.includes(SIDECAR))
        throw new SproutError(
          'IO',
          `${dir} exists and is not a Sprout checkpoint; refusing to overwrite it, choose another output directory`,
        )
    }
    await writeOutputDir(
      dir,
      async (tmp) => {
        const params = await toWritable(model.params)
        writeSafetensors(join(tmp, WEIGHTS), params, { format: 'pt' }, options.floatFormat ?? 'F32')
        if (options.state && Object.keys(options.state).length > 0)
          writeSafetensors(join(tmp, STATE), await toWritable(options.state))
        const sidecar = {
          format: CHECKPOINT_FORMAT,
          version: CHECKPOINT_VERSION,
          spec: model.spec,
          meta: options.meta ?? {},
        }
        writeFileSync(join(tmp, SIDECAR), `${JSON.stringify(sidecar, null, 2)}\n`)
      },
      options.log,
    )
  } catch (e) {
    // A file-system error (even wrapped by the weights writer) is said in terms of the checkpoint.
    throw (
      fsError(e, dir) ??
      (e instanceof SproutError
        ? e
        : new SproutError('IO', `cannot write checkpoint ${dir}: ${(e as Error).message}`))
    )
  } finally {
    lock.release()
  }
}

/**
 * A reader that finds no checkpoint where an interrupted write left one hidden (a kill between
 * the renames of a swap) puts it back first, saying so on stderr; a writer still running gets
 * lockOutput's one-line refusal naming it.
 */
function recoverForReading(dir: string): void {
  const log = (line: string) => process.stderr.write(`sprout: ${line}\n`)
  const lock = lockOutput(dir, log)
  try {
    recoverOutput(dir, log)
  } finally {
    lock.release()
  }
}

/** Reads and validates sprout.json without loading weights. */
export function readCheckpointInfo(dir: string): { spec: TransformerSpec; meta: CheckpointMeta } {
  const sidecarPath = join(dir, SIDECAR)
  if (!existsSync(sidecarPath) && hasLeftovers(dir)) recoverForReading(dir)
  if (!existsSync(dir))
    throw new SproutError('CHECKPOINT_NOT_FOUND', `checkpoint directory ${dir} does not exist`)
  if (!existsSync(sidecarPath))
    throw new SproutError(
      'CHECKPOINT_NOT_FOUND',
      `${dir} is not a Sprout checkpoint (no ${SIDECAR}); create one with \`sprout init\``,
    )
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(sidecarPath, 'utf8'))
  } catch (e) {
    throw new SproutError('CHECKPOINT_INVALID', `${sidecarPath}: not valid JSON (${(e as Error).message})`)
  }
  const side = raw as { format?: unknown; version?: unknown; spec?: unknown; meta?: unknown }
  if (side?.format !== CHECKPOINT_FORMAT)
    throw new SproutError('CHECKPOINT_INVALID', `${sidecarPath}: "format" must be "${CHECKPOINT_FORMAT}"`)
  if (side.version !== CHECKPOINT_VERSION)
    throw new SproutError(
      'CHECKPOINT_INVALID',
      `${sidecarPath}: version ${JSON.stringify(side.version)} is not supported (expected ${CHECKPOINT_VERSION})`,
    )
  let spec: TransformerSpec
  try {
    spec = parseSpec(side.spec)
  } catch (e) {
    throw new SproutError('CHECKPOINT_INVALID', `${sidecarPath}: ${(e as Error).message}`)
  }
  return { spec, meta: (side.meta ?? {}) as CheckpointMeta }
}

export interface LoadOptions {
  /** Load weights holding NaN/Inf (default: `allowNonFinite()`, i.e. --allow-non-finite). */
  allowNonFinite?: boolean
}

/**
 * Checks the header's tensors against the spec's role table before any data is read;
 * returns the names in canonical (paramTable) order.
 */
function checkEntries(weightsPath: string, reader: SafetensorsReader, spec: TransformerSpec): string[] {
  const expected = new Set<string>()
  for (const p of paramTable(spec)) {
    expected.add(p.name)
    const t = reader.entries.get(p.name)
    if (!t)
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `${weightsPath}: missing tensor "${p.name}" required by the spec`,
      )
    if (t.shape.join(',') !== p.shape.join(','))
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `${weightsPath}: tensor "${p.name}" has shape [${t.shape}] but the spec needs [${p.shape}]`,
      )
    if (t.dtype !== 'float32')
      throw new SproutError('CHECKPOINT_INVALID', `${weightsPath}: tensor "${p.name}" must be a float tensor`)
  }
  for (const name of reader.entries.keys())
    if (!expected.has(name))
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `${weightsPath}: unexpected tensor "${name}" not in the spec`,
      )
  return [...expected]
}

/**
 * Loads a checkpoint tensor by tensor: the spec's size is checked against the memory limit and
 * every tensor's name, shape and dtype against its role table before any weight is read; each
 * tensor is then read with positioned I/O and checked for NaN/Inf (refused unless allowed).
 */
export function loadCheckpoint(dir: string, options: LoadOptions = {}): LoadedCheckpoint {
  const { spec, meta } = readCheckpointInfo(dir)
  const weightsPath = join(dir, WEIGHTS)
  if (!existsSync(weightsPath)) throw new SproutError('CHECKPOINT_INVALID', `${dir}: missing ${WEIGHTS}`)
  // Before paramTable: enumerating a spec with a million layers is itself too slow.
  const model = estimateModelBytes(spec)
  assertFitsMemory(model.bytes, `loading ${dir} (${specSummary(spec)})`, model.breakdown)
  const finite = !(options.allowNonFinite ?? allowNonFinite())
  const statePath = join(dir, STATE)
  const readers: SafetensorsReader[] = []
  const params: Params = {}
  let state: Params | null = null
  try {
    const weights = openSafetensors(weightsPath)
    readers.push(weights)
    const names = checkEntries(weightsPath, weights, spec)
    const stateFile = existsSync(statePath) ? openSafetensors(statePath) : null
    if (stateFile) readers.push(stateFile)
    const bytes = weights.decodedBytes() + (stateFile?.decodedBytes() ?? 0)
    assertFitsMemory(
      bytes,
      `loading ${dir}`,
      stateFile
        ? `weights ${formatBytes(weights.decodedBytes())} + optimizer state ${formatBytes(stateFile.decodedBytes())}`
        : undefined,
    )
    for (const name of names) {
      const t = weights.read(name)
      if (finite) assertFiniteTensor(weightsPath, name, t.data)
      params[name] = tf.tensor(t.data, t.shape, 'float32')
    }
    if (stateFile) {
      state = {}
      for (const name of stateFile.entries.keys()) {
        const t = stateFile.read(name)
        if (finite && t.dtype === 'float32') assertFiniteTensor(statePath, name, t.data)
        state[name] = tf.tensor(t.data, t.shape, t.dtype)
      }
    }
  } catch (e) {
    for (const t of Object.values(params)) t.dispose()
    if (state) for (const t of Object.values(state)) t.dispose()
    throw e
  } finally {
    for (const r of readers) r.close()
  }
  return { model: { spec, params }, meta, state }
}
