import * as tf from '@tensorflow/tfjs'
import { SproutError } from './errors.js'

/**
 * Backend selection. Core names no backend package: a backend package exports a
 * `BackendCandidate` (how to register its tfjs backend), and whoever runs Sprout (the CLI, a
 * library user) hands candidates to `selectBackend` or registers them once with
 * `registerBackendCandidate`. `cpu` is tfjs's own and always the last resort.
 */

/** What loading a candidate gave: its tfjs backend is registered, or why not (one line). */
export type BackendLoad =
  | { ok: true; detail: string }
  | {
      ok: false
      /** `missing`: the package is not installed; `failed`: it is installed but does not work. */
      kind: 'missing' | 'failed'
      reason: string
      /** The command that fixes it, when there is one. */
      fix?: string
    }

export interface BackendCandidate {
  /** The tfjs backend name it registers (`native`, `tensorflow`). */
  name: string
  /** The package it comes from, for messages (e.g. @sprout/backend-native). */
  module: string
  /** Imports the package if needed and registers its tfjs backend; never throws. */
  load(): Promise<BackendLoad>
}

/** A candidate that was not chosen, and why. */
export interface PassedOver {
  name: string
  module: string
  kind: 'missing' | 'failed' | 'not-initialised'
  reason: string
  fix?: string
}

export interface BackendChoice {
  name: string
  /** Why it was chosen, or why faster ones were not. */
  detail: string
  /** Every faster candidate that was passed over, in order. */
  passedOver: PassedOver[]
}

const registered: BackendCandidate[] = []

/**
 * Adds a candidate to the list `selectBackend()` tries when it is given none, after the ones
 * registered before it (register the fastest first). A second candidate with the same module
 * is ignored, so registering at start-up twice is harmless.
 */
export function registerBackendCandidate(candidate: BackendCandidate): void {
  if (!registered.some((c) => c.module === candidate.module)) registered.push(candidate)
}

/** The registered candidates, fastest first. */
export function backendCandidates(): readonly BackendCandidate[] {
  return [...registered]
}

/**
 * Loads a candidate from a package by dynamic import (`importer` runs the `import()` so module
 * resolution starts from the caller's package), then `register(module)` registers the backend.
 * "Not installed" only when the package itself is missing; a missing dependency of an installed
 * package is a failure to load, with its error.
 */
export async function loadBackendModule(
  module: string,
  importer: () => Promise<unknown>,
  register: (mod: any) => BackendLoad | Promise<BackendLoad>,
): Promise<BackendLoad> {
  let mod: unknown
  try {
    mod = await importer()
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    const message = String(err?.message ?? e).split('\n')[0]
    const notFound = err?.code === 'ERR_MODULE_NOT_FOUND' || err?.code === 'MODULE_NOT_FOUND'
    if (notFound && new RegExp(`['"]${module.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}['"/]`).test(message))
      return { ok: false, kind: 'missing', reason: `${module} is not installed` }
    return { ok: false, kind: 'failed', reason: `${module} failed to load: ${message}` }
  }
  try {
    return await register(mod)
  } catch (e) {
    return { ok: false, kind: 'failed', reason: `${module} failed to register: ${(e as Error).message}` }
  }
}

/**
 * A candidate from a backend package that exports `sproutBackend` (its own BackendCandidate),
 * imported only when tried, so the package stays optional. Pass `importer` (a closure running
 * `import()`) to resolve the package from the caller's location rather than from core's.
 */
export function backendFromModule(
  name: string,
  module: string,
  importer: () => Promise<unknown> = () => import(/* @vite-ignore */ module),
): BackendCandidate {
  return {
    name,
    module,
    load: () =>
      loadBackendModule(module, importer, (mod: { sproutBackend?: BackendCandidate }) =>
        mod.sproutBackend && typeof mod.sproutBackend.load === 'function'
          ? mod.sproutBackend.load()
          : { ok: false, kind: 'failed', reason: `${module} exports no sproutBackend (a BackendCandidate)` },
      ),
  }
}

async function activate(name: string): Promise<boolean> {
  try {
    return await tf.setBackend(name)
  } catch {
    return false
  }
}

/** Silences the tfjs cpu backend's one-time "install tfjs-node" banner: Sprout prints its own line. */
function quietCpuBanner(): void {
  const b = tf.findBackend('cpu') as { firstUse?: boolean } | null
  if (b && 'firstUse' in b) b.firstUse = false
}

type Attempt = { ok: true; detail: string } | { ok: false; miss: PassedOver }

async function tryCandidate(c: BackendCandidate): Promise<Attempt> {
  let load: BackendLoad
  try {
    load = await c.load()
  } catch (e) {
    load = { ok: false, kind: 'failed', reason: `${c.module} failed to load: ${(e as Error).message}` }
  }
  const base = { name: c.name, module: c.module }
  if (!load.ok) return { ok: false, miss: { ...base, kind: load.kind, reason: load.reason, fix: load.fix } }
  if (await activate(c.name)) return { ok: true, detail: load.detail }
  const reason = `${c.module} loaded but its "${c.name}" backend did not initialise`
  return { ok: false, miss: { ...base, kind: 'not-initialised', reason } }
}

const withFix = (p: PassedOver) => (p.fix ? `${p.reason}; to fix: ${p.fix}` : p.reason)

/**
 * Picks the fastest available backend: each candidate in order (default: the registered ones),
 * then tfjs's `cpu`. `preferred` or SPROUT_BACKEND forces one by name and fails with every
 * reason and fix when it is unavailable.
 */
export async function selectBackend(
  preferred?: string,
  options: { candidates?: readonly BackendCandidate[] } = {},
): Promise<BackendChoice> {
  const candidates = options.candidates ?? registered
  const forced = preferred || process.env.SPROUT_BACKEND || undefined
  const names = [...new Set([...candidates.map((c) => c.name), 'cpu'])]
  if (forced !== undefined && !names.includes(forced))
    throw new SproutError(
      'BACKEND_UNAVAILABLE',
      `unknown backend "${forced}"; choose ${names.join(', ')}${forced === 'cpu' ? '' : availabilityHint(forced)}`,
    )
  const passedOver: PassedOver[] = []
  for (const c of candidates) {
    if (forced && c.name !== forced) continue
    const attempt = await tryCandidate(c)
    if (attempt.ok) {
      const failed = passedOver.filter((p) => p.kind !== 'missing')
      const note = failed.length ? `; passed over: ${failed.map(withFix).join('; ')}` : ''
      return { name: c.name, detail: `${c.module}: ${attempt.detail}${note}`, passedOver }
    }
    passedOver.push(attempt.miss)
  }
  if (forced && forced !== 'cpu')
    throw new SproutError(
      'BACKEND_UNAVAILABLE',
      `backend "${forced}" is unavailable: ${passedOver.map(withFix).join('; ')}`,
    )
  quietCpuBanner()
  await activate('cpu')
  quietCpuBanner()
  // Packages that were never installed matter less than ones that are installed and broken.
  const broken = passedOver.filter((p) => p.kind !== 'missing')
  const shown = broken.length ? broken : passedOver
  const why = shown.length ? shown.map(withFix).join('; ') : 'no faster backend was offered'
  return { name: 'cpu', detail: forced ? 'forced' : `pure JavaScript, slow: ${why}`, passedOver }
}

// A forced name no candidate provides: usually its package was never handed to selectBackend.
function availabilityHint(name: string): string {
  return ` (no candidate provides "${name}": pass its package's BackendCandidate to selectBackend or registerBackendCandidate)`
}

export function describeBackend(choice: BackendChoice): string {
  return `backend: ${choice.name} (${choice.detail})`
}
