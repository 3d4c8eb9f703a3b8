import * as tf from '@tensorflow/tfjs'
import { SproutError } from './errors.js'

export type BackendName = 'tensorflow' | 'native' | 'cpu'

export interface BackendChoice {
  name: BackendName
  /** Why it was chosen, or why faster ones were not. */
  detail: string
  /** Why each faster backend was passed over. */
  reasons?: string[]
}

/** Optional accelerator modules, fastest first. Imported by name so none is a hard dependency. */
const TENSORFLOW_MODULES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']
const NATIVE_MODULE = '@sprout/backend-native'

async function tryImport(name: string): Promise<{ ok: true; mod: any } | { ok: false; reason: string }> {
  try {
    return { ok: true, mod: await import(/* @vite-ignore */ name) }
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    const missing = err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND'
    return {
      ok: false,
      reason: missing ? `${name} not installed` : `${name} failed to load: ${err.message.split('\n')[0]}`,
    }
  }
}

async function activate(name: BackendName): Promise<boolean> {
  try {
    return await tf.setBackend(name)
  } catch {
    return false
  }
}

/** Silences the tfjs cpu backend's one-time "install tfjs-node" banner: we print our own line. */
function quietCpuBanner(): void {
  const b = tf.findBackend('cpu') as { firstUse?: boolean } | null
  if (b && 'firstUse' in b) b.firstUse = false
}

/**
 * Picks the fastest available backend: `tensorflow` (tfjs-node[-gpu], if the user installed
 * one), then `native` (@sprout/backend-native over OpenBLAS), then `cpu`. `preferred` or
 * SPROUT_BACKEND forces one and fails clearly if it is unavailable.
 */
export async function selectBackend(preferred?: string): Promise<BackendChoice> {
  const forced = preferred ?? process.env.SPROUT_BACKEND
  if (forced !== undefined && forced !== '' && !['tensorflow', 'native', 'cpu'].includes(forced))
    throw new SproutError(
      'BACKEND_UNAVAILABLE',
      `unknown backend "${forced}"; choose tensorflow, native or cpu`,
    )
  const reasons: string[] = []
  if (!forced || forced === 'tensorflow') {
    for (const m of TENSORFLOW_MODULES) {
      const r = await tryImport(m)
      if (r.ok && (await activate('tensorflow'))) return { name: 'tensorflow', detail: `from ${m}` }
      reasons.push(r.ok ? `${m} loaded but its backend did not initialise` : r.reason)
    }
    if (forced)
      throw new SproutError(
        'BACKEND_UNAVAILABLE',
        `backend "tensorflow" is unavailable: ${reasons.join('; ')}`,
      )
  }
  if (!forced || forced === 'native') {
    const r = await tryImport(NATIVE_MODULE)
    if (r.ok) {
      const reg = r.mod.registerNativeBackend ?? r.mod.default?.registerNativeBackend
      const status =
        typeof reg === 'function' ? reg() : { ok: false, reason: 'it exports no registerNativeBackend()' }
      if (status.ok && (await activate('native')))
        return { name: 'native', detail: status.detail ?? 'OpenBLAS' }
      reasons.push(`native: ${status.reason ?? 'did not initialise'}`)
    } else reasons.push(r.reason)
    if (forced)
      throw new SproutError(
        'BACKEND_UNAVAILABLE',
        `backend "native" is unavailable: ${reasons.join('; ')}. Run \`npm run setup\` (installs libopenblas-dev and builds the addon)`,
      )
  }
  quietCpuBanner()
  await activate('cpu')
  quietCpuBanner()
  const hint = reasons.some((r) => r.startsWith('native:'))
    ? reasons.find((r) => r.startsWith('native:'))
    : 'no native backend built'
  return {
    name: 'cpu',
    detail: forced
      ? 'forced'
      : `pure JavaScript, slow: ${hint}; run \`npm run setup\` to build @sprout/backend-native over OpenBLAS`,
    reasons,
  }
}

export function describeBackend(choice: BackendChoice): string {
  return `backend: ${choice.name} (${choice.detail})`
}
