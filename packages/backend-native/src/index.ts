import { availableParallelism } from 'node:os'
import type { BackendCandidate } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu'
import { loadAddon, type NativeAddon, type NativeStatus } from './addon.js'
import { BINARY_OPS, type BinaryKernel, nativeBinary } from './binary.js'
import { diagnoseNative, type NativeDiagnosis } from './diagnose.js'
import { FUSED_TABLE } from './fused.js'
import { type KernelInputs, NATIVE_TABLE, type NativeKernel } from './kernels.js'
import { nativeBatchMatMul, nativeMatMulBias } from './matmul.js'
import { outputs } from './pool.js'

export {
  ADDON_PATH,
  type AddonLoad,
  BUILD_COMMAND,
  BUILD_RECORD_PATH,
  type BuildRecord,
  lastBuild,
  loadAddon,
  type NativeAddon,
  type NativeStatus,
} from './addon.js'
export { BINARY_OPS, broadcastShape, nativeBinary } from './binary.js'
export { type BuildCheck, buildPrerequisites, type NativeDiagnosis } from './diagnose.js'
export { FUSED_TABLE } from './fused.js'
export { NATIVE_TABLE, type NativeKernel, REDUCE_OPS, UNARY_OPS } from './kernels.js'
export { nativeBatchMatMul, nativeMatMulBias } from './matmul.js'

export const NATIVE_BACKEND = 'native'

/** Kernels this backend runs natively; every other kernel is the cpu backend's own. */
export const NATIVE_KERNELS: readonly string[] = [
  'BatchMatMul',
  '_FusedMatMul',
  ...Object.keys(BINARY_OPS),
  ...Object.keys(NATIVE_TABLE),
]

type Status = NativeStatus
let status: Status | null = null

function cpuKernel(name: string): tf.KernelFunc {
  const k = tf.getKernel(name, 'cpu')
  if (!k) throw new Error(`tfjs cpu backend has no ${name} kernel`)
  return sharing(k.kernelFunc)
}

/**
 * Runs a cpu kernel and marks any input whose array it handed on (cpu Slice returns views of its
 * input) as exposed, so the buffer pool never reuses memory another tensor still reads.
 */
function sharing(f: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const out = f(args)
    const data = (args.backend as MathBackendCPU).data
    const outs = Array.isArray(out) ? out : [out]
    for (const input of kernelTensors(args.inputs)) {
      const values = stored(data, input)
      if (!ArrayBuffer.isView(values)) continue
      for (const o of outs) {
        const v = o.dataId !== input.dataId ? stored(data, o) : undefined
        if (ArrayBuffer.isView(v) && v.buffer === values.buffer) outputs.expose(values)
      }
    }
    return out
  }
}

/**
 * Every tensor among a kernel's inputs: most inputs are one tensor, but some are lists of tensors
 * (RaggedGather's paramsNestedSplits, RaggedTensorToTensor's rowPartitionTensors), and optional
 * ones may be absent.
 */
function kernelTensors(inputs: tf.NamedTensorInfoMap): tf.TensorInfo[] {
  return Object.values(inputs as Record<string, tf.TensorInfo | tf.TensorInfo[] | undefined>)
    .flat()
    .filter((t): t is tf.TensorInfo => t?.dataId != null)
}

type Storage = MathBackendCPU['data']

/**
 * The values this backend holds for t, or undefined. `has` first: DataStorage.get on a data id
 * the backend does not hold asks the engine to move the data here, which reads it from its
 * owning backend and disposes it there, and that owner may be this very backend.
 */
function stored(data: Storage, t: { dataId: object }): tf.backend_util.BackendValues | undefined {
  return data.has(t.dataId) ? data.get(t.dataId).values : undefined
}

/** The cpu backend, returning removed native output arrays to the pool and marking read-out ones. */
class NativeBackend extends MathBackendCPU {
  override readSync(dataId: object): tf.backend_util.BackendValues {
    const values = super.readSync(dataId)
    outputs.expose(values)
    return values
  }

  override async read(dataId: object): Promise<tf.backend_util.BackendValues> {
    const values = await super.read(dataId)
    outputs.expose(values)
    return values
  }

  override disposeData(dataId: object, force = false): boolean {
    // Not data.get: for a data id this backend does not hold (a tensor made with
    // makeTensorFromDataId and never written), get would ask the engine to move the data here,
    // which disposes it on its owner, this backend: an unbounded recursion.
    const values = stored(this.data, { dataId })
    const removed = super.disposeData(dataId, force)
    if (removed && !this.data.has(dataId)) outputs.give(values)
    return removed
  }
}

const ACTIVATIONS: Record<string, string> = {
  relu: 'Relu',
  relu6: 'Relu6',
  elu: 'Elu',
  sigmoid: 'Sigmoid',
  leakyrelu: 'LeakyRelu',
  prelu: 'Prelu',
}

function registerKernels(addon: NativeAddon): void {
  for (const config of tf.getKernelsForBackend('cpu'))
    if (!NATIVE_KERNELS.includes(config.kernelName))
      tf.registerKernel({ ...config, backendName: NATIVE_BACKEND, kernelFunc: sharing(config.kernelFunc) })
  for (const name of Object.keys(BINARY_OPS) as BinaryKernel[]) {
    const fallback = cpuKernel(name)
    tf.registerKernel({
      kernelName: name,
      backendName: NATIVE_BACKEND,
      kernelFunc: (args) => {
        const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo }
        return nativeBinary(addon, args.backend as MathBackendCPU, name, a, b) ?? fallback(args)
      },
    })
  }
  // Native kernels fall back to the cpu kernel when they return null; fused kernels have no cpu
  // counterpart (core only calls them when this backend registers them).
  const tables = { ...NATIVE_TABLE, ...FUSED_TABLE } as Record<
    string,
    (...args: Parameters<NativeKernel>) => tf.TensorInfo | tf.TensorInfo[] | null
  >
  for (const [name, kernel] of Object.entries(tables)) {
    const fallback = name in NATIVE_TABLE ? cpuKernel(name) : null
    tf.registerKernel({
      kernelName: name,
      backendName: NATIVE_BACKEND,
      kernelFunc: (args) => {
        const out = kernel(
          addon,
          args.backend as MathBackendCPU,
          args.inputs as unknown as KernelInputs,
          args.attrs ?? {},
        )
        if (out) return out
        if (!fallback) throw new Error(`native ${name}: no result and no cpu kernel to fall back to`)
        return fallback(args)
      },
    })
  }
  const cpuBatchMatMul = cpuKernel('BatchMatMul')
  const cpuFused = cpuKernel('_FusedMatMul')
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: NATIVE_BACKEND,
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo }
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean }
      return (
        nativeBatchMatMul(addon, args.backend as MathBackendCPU, a, b, transposeA, transposeB) ??
        cpuBatchMatMul(args)
      )
    },
  })
  tf.registerKernel({
    kernelName: '_FusedMatMul',
    backendName: NATIVE_BACKEND,
    kernelFunc: (args) => {
      const backend = args.backend as MathBackendCPU
      const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>
      const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as {
        transposeA: boolean
        transposeB: boolean
        activation: string
        leakyreluAlpha?: number
      }
      const withBias = bias ? nativeMatMulBias(addon, backend, a!, b!, bias, transposeA, transposeB) : null
      const product = withBias ?? nativeBatchMatMul(addon, backend, a!, b!, transposeA, transposeB)
      if (!product) return cpuFused(args)
      let out = product
      if (bias && !withBias) {
        const sum = tf.getKernel('Add', NATIVE_BACKEND)!.kernelFunc({
          inputs: { a: out, b: bias },
          backend,
          attrs: {},
        }) as tf.TensorInfo
        backend.disposeIntermediateTensorInfo(out)
        out = sum
      }
      if (activation && activation !== 'linear') {
        const name = ACTIVATIONS[activation]
        if (!name) throw new Error(`_FusedMatMul: unknown activation ${activation}`)
        const inputs: Record<string, tf.TensorInfo> = { x: out }
        if (activation === 'prelu') inputs.alpha = preluActivationWeights!
        const act = tf.getKernel(name, NATIVE_BACKEND)!.kernelFunc({
          inputs,
          backend,
          attrs: activation === 'leakyrelu' ? { alpha: leakyreluAlpha ?? 0.2 } : {},
        }) as tf.TensorInfo
        backend.disposeIntermediateTensorInfo(out)
        out = act
      }
      return out
    },
  })
}

/**
 * Registers the `native` backend: the cpu backend's tensors and kernels, with matrix products
 * on OpenBLAS and the kernels in NATIVE_KERNELS in multi-threaded C++. Idempotent; returns why it is unavailable instead
 * of throwing, so Sprout falls back to cpu with a one-line explanation.
 */
export function registerNativeBackend(): Status {
  if (status) return status
  const loaded = loadAddon()
  if (!loaded.ok) {
    status = { ok: false, kind: loaded.kind, reason: loaded.reason, fix: loaded.fix }
    return status
  }
  registerKernels(loaded.addon)
  const threads = Number(process.env.OPENBLAS_NUM_THREADS) || availableParallelism()
  loaded.addon.setThreads(threads)
  tf.registerBackend(
    NATIVE_BACKEND,
    () => {
      const backend = new NativeBackend()
      // Sprout prints its own backend line; silence the cpu backend's "install tfjs-node" banner.
      ;(backend as unknown as { firstUse: boolean }).firstUse = false
      return backend
    },
    1,
  )
  status = {
    ok: true,
    threads,
    blas: loaded.addon.blas,
    detail: `OpenBLAS matmul and C++ kernels on ${threads} threads; ${NATIVE_KERNELS.length} native and ${Object.keys(FUSED_TABLE).length} fused kernels, the rest from cpu`,
  }
  return status
}

/**
 * This package as a backend candidate for `selectBackend` from @sprout/core (the export name
 * core's `backendFromModule` looks for): loading it registers the `native` backend. The addon
 * is built at install, or later with BUILD_COMMAND.
 *
 * ```ts
 * import { selectBackend } from '@sprout/core'
 * import { sproutBackend } from '@sprout/backend-native'
 * await selectBackend(undefined, { candidates: [sproutBackend] })
 * ```
 */
export const sproutBackend: BackendCandidate = {
  name: NATIVE_BACKEND,
  module: '@sprout/backend-native',
  load: async () => {
    const s = registerNativeBackend()
    return s.ok ? { ok: true, detail: s.detail } : { ok: false, kind: 'failed', reason: s.reason, fix: s.fix }
  },
}

/** Everything `sprout doctor` reports about this backend (registers it when it can). */
export function nativeDiagnosis(): NativeDiagnosis {
  return diagnoseNative(registerNativeBackend())
}
