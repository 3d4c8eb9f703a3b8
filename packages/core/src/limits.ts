import { freemem } from 'node:os'
import { SproutError } from './errors.js'

/**
 * Process-wide limits checked before large allocations, so an impossible model, batch or file
 * is refused in milliseconds with an estimate instead of dying in V8 minutes later.
 *
 * Memory limit: `SPROUT_MEMORY_LIMIT` (e.g. `8G`, `512MiB`, `2e9`, or `none`) or the CLI's
 * `--memory-limit`; by default 90 % of the memory the system reports available now.
 * Non-finite weights: refused at load unless `SPROUT_ALLOW_NON_FINITE=1` or `--allow-non-finite`.
 */
export const MEMORY_LIMIT_ENV = 'SPROUT_MEMORY_LIMIT'
export const ALLOW_NON_FINITE_ENV = 'SPROUT_ALLOW_NON_FINITE'
const FLAG_HINT = `raise it with --memory-limit SIZE or ${MEMORY_LIMIT_ENV}=SIZE (e.g. 16G; "none" disables the check)`

export interface RuntimeLimits {
  /** Bytes, Infinity for no limit, undefined for the environment's or the default. */
  memoryLimit?: number
  /** Load weights holding NaN or Inf (they are refused by default). */
  allowNonFinite?: boolean
}

let overrides: RuntimeLimits = {}

/** Sets the limits for this process (the CLI does, from its flags); fields left out use the environment. */
export function setRuntimeLimits(limits: RuntimeLimits): void {
  overrides = { ...limits }
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 2 ** 10,
  kb: 1e3,
  kib: 2 ** 10,
  m: 2 ** 20,
  mb: 1e6,
  mib: 2 ** 20,
  g: 2 ** 30,
  gb: 1e9,
  gib: 2 ** 30,
  t: 2 ** 40,
  tb: 1e12,
  tib: 2 ** 40,
}

/** "8G" (GiB, as docker reads it), "8GB" (10^9), "512MiB", "2e9" or "none" (Infinity). */
export function parseByteSize(text: string, where: string): number {
  const s = text.trim().toLowerCase()
  if (s === 'none' || s === 'off' || s === 'unlimited') return Number.POSITIVE_INFINITY
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)$/.exec(s)
  const unit = m ? UNITS[m[2]] : undefined
  const bytes = m && unit !== undefined ? Number(m[1]) * unit : Number.NaN
  if (!(bytes > 0) || !Number.isFinite(bytes))
    throw new SproutError(
      'USAGE',
      `${where}: "${text}" is not a memory size; write e.g. 8G, 512MiB, 2e9 (bytes) or none`,
    )
  return Math.floor(bytes)
}

/** Human size in binary units: 1.50 GiB. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes)
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB']
  let v = bytes
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  if (v >= 1024) return `${bytes.toExponential(2)} B`
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`
}

/** Memory the OS says this process could still get (cgroup-aware where Node knows it). */
function availableMemory(): number {
  const p = process as { availableMemory?: () => number }
  const avail = typeof p.availableMemory === 'function' ? p.availableMemory() : freemem()
  return avail > 0 ? avail : freemem()
}

export interface MemoryLimit {
  bytes: number
  /** Where it comes from, for messages: "--memory-limit", "SPROUT_MEMORY_LIMIT", or the default. */
  source: string
}

/** The limit in force now. */
export function memoryLimit(): MemoryLimit {
  if (overrides.memoryLimit !== undefined) return { bytes: overrides.memoryLimit, source: '--memory-limit' }
  const env = process.env[MEMORY_LIMIT_ENV]
  if (env !== undefined && env !== '')
    return { bytes: parseByteSize(env, MEMORY_LIMIT_ENV), source: MEMORY_LIMIT_ENV }
  const avail = availableMemory()
  return {
    bytes: Math.floor(0.9 * avail),
    source: `90% of the ${formatBytes(avail)} of memory available now`,
  }
}

/**
 * Refuses work whose estimated memory exceeds the limit, before anything is allocated.
 * `what` says what needs it ("loading model.safetensors", "training this spec with AdamW").
 */
export function assertFitsMemory(bytes: number, what: string, breakdown?: string): void {
  const limit = memoryLimit()
  if (!(bytes > limit.bytes)) return
  throw new SproutError(
    'TOO_LARGE',
    `${what} needs about ${formatBytes(bytes)}${breakdown ? ` (${breakdown})` : ''}, above the memory limit of ${formatBytes(limit.bytes)} (${limit.source}); use a smaller model or batch, or ${FLAG_HINT}`,
  )
}

/** Whether weights holding NaN/Inf may be loaded (`--allow-non-finite`, SPROUT_ALLOW_NON_FINITE=1). */
export function allowNonFinite(): boolean {
  if (overrides.allowNonFinite !== undefined) return overrides.allowNonFinite
  const env = process.env[ALLOW_NON_FINITE_ENV]
  return env !== undefined && env !== '' && env !== '0' && env.toLowerCase() !== 'false'
}

export interface NonFiniteCount {
  nan: number
  inf: number
}

/** NaN and ±Inf values in a float array (one pass, no allocation). */
export function countNonFinite(data: ArrayLike<number>): NonFiniteCount {
  // Fast path (about 2.5× faster): v·0 is 0 for finite v and NaN for NaN and ±Inf.
  let probe = 0
  for (let i = 0; i < data.length; i++) probe += data[i] * 0
  if (probe === 0) return { nan: 0, inf: 0 }
  let nan = 0
  let inf = 0
  for (let i = 0; i < data.length; i++) {
    const v = data[i]
    // v - v is 0 for every finite v and NaN for NaN and ±Inf: one comparison in the common case.
    if (v - v !== 0) {
      if (Number.isNaN(v)) nan++
      else inf++
    }
  }
  return { nan, inf }
}

/** "3 NaN and 1 Inf of 4096 values" */
export function describeNonFinite(c: NonFiniteCount, total: number): string {
  const parts = [c.nan > 0 ? `${c.nan} NaN` : '', c.inf > 0 ? `${c.inf} Inf` : ''].filter(Boolean)
  return `${parts.join(' and ')} of ${total} values`
}

/**
 * Refuses a tensor holding NaN or Inf (unless allowed): such weights come from a corrupt file or
 * a diverged run, and everything computed from them is NaN. `where` names the file.
 */
export function assertFiniteTensor(where: string, name: string, data: ArrayLike<number>): void {
  if (allowNonFinite()) return
  const c = countNonFinite(data)
  if (c.nan === 0 && c.inf === 0) return
  throw new SproutError(
    'WEIGHTS_NON_FINITE',
    `${where}: tensor "${name}" holds ${describeNonFinite(c, data.length)}; the weights are corrupt or come from a diverged run (use an earlier checkpoint), or pass --allow-non-finite to load them anyway`,
  )
}
