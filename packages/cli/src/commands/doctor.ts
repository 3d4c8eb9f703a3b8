import { type BackendCandidate, type PassedOver, selectBackend } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import type { Io } from '../io.js'

type NativeModule = typeof import('@sprout/backend-native')
type NativeDiagnosis = ReturnType<NativeModule['nativeDiagnosis']>

export interface DoctorReport {
  node: { version: string; platform: string; napi: string | null; execPath: string }
  tfjs: string
  /** The backend Sprout would pick, or why the forced one is unavailable. */
  backend: { name: string; detail: string } | { name: null; error: string }
  forced: string | null
  /** Every faster candidate that was passed over, and why. */
  passedOver: PassedOver[]
  /** @sprout/backend-native: addon, last build, OpenBLAS, threads, build prerequisites. */
  native: NativeDiagnosis | { installed: false; reason: string }
}

export async function doctorReport(
  candidates: readonly BackendCandidate[],
  forced: string | undefined,
): Promise<DoctorReport> {
  let backend: DoctorReport['backend']
  let passedOver: PassedOver[] = []
  try {
    const choice = await selectBackend(forced, { candidates })
    backend = { name: choice.name, detail: choice.detail }
    passedOver = choice.passedOver
  } catch (e) {
    backend = { name: null, error: (e as Error).message }
  }
  let native: DoctorReport['native']
  try {
    const mod: NativeModule = await import('@sprout/backend-native')
    native = mod.nativeDiagnosis()
  } catch (e) {
    native = { installed: false, reason: `@sprout/backend-native failed to load: ${(e as Error).message}` }
  }
  return {
    node: {
      version: process.version,
      platform: `${process.platform}-${process.arch}`,
      napi: process.versions.napi ?? null,
      execPath: process.execPath,
    },
    tfjs: tf.version.tfjs,
    backend,
    forced: forced ?? null,
    passedOver,
    native,
  }
}

function nativeLines(n: DoctorReport['native']): string[] {
  if ('installed' in n) return [`native: ${n.reason}`]
  const lines: string[] = []
  if (n.status.ok) lines.push(`native: addon loaded from ${n.addonPath}`, `  OpenBLAS: ${n.status.blas}`)
  else lines.push(`native: ${n.status.reason}`, `  to fix: ${n.status.fix}`)
  if (n.lastBuild)
    lines.push(
      `  last build (${n.lastBuild.at ?? 'unknown time'}, Node ${n.lastBuild.node ?? '?'}): ${n.lastBuild.ok ? n.lastBuild.detail : `failed, missing ${n.lastBuild.missing}`}`,
    )
  const t = n.threads
  lines.push(
    `  threads: ${t.used} of ${t.cores} cores (OPENBLAS_NUM_THREADS ${t.OPENBLAS_NUM_THREADS ?? 'unset'}, OMP_NUM_THREADS ${t.OMP_NUM_THREADS ?? 'unset'})`,
  )
  const missing = n.prerequisites.filter((c) => !c.ok)
  lines.push(`  build prerequisites: ${missing.length === 0 ? 'all present' : `${missing.length} missing`}`)
  for (const c of n.prerequisites)
    lines.push(`    ${c.ok ? 'ok     ' : 'MISSING'} ${c.what}: ${c.ok ? c.found : c.missing}`)
  return lines
}

/** `sprout doctor`: what Sprout would run on, why not on something faster, and how to fix it. */
export async function runDoctor(
  args: { json?: boolean },
  candidates: readonly BackendCandidate[],
  forced: string | undefined,
  io: Io,
): Promise<DoctorReport> {
  const report = await doctorReport(candidates, forced)
  if (args.json) {
    io.out(JSON.stringify(report))
    return report
  }
  const n = report.node
  io.out(`node ${n.version} (${n.platform}, N-API ${n.napi ?? '?'}), @tensorflow/tfjs ${report.tfjs}`)
  const b = report.backend
  io.out(
    b.name === null
      ? `backend: none: ${b.error}`
      : `backend: ${b.name}${report.forced ? ` (forced by ${report.forced})` : ''}: ${b.detail}`,
  )
  for (const p of report.passedOver)
    io.out(`  passed over ${p.name} from ${p.module}: ${p.reason}${p.fix ? `; to fix: ${p.fix}` : ''}`)
  for (const line of nativeLines(report.native)) io.out(line)
  return report
}
