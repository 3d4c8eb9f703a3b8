import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FUSED_KERNELS, hasFusedKernels, setFusedKernels } from './fused.js'
import { activate } from './primitives.js'

type CpuBackend = {
  data: { get(id: object): { values: Float32Array } }
  makeTensorInfo(shape: number[], dtype: string, values: Float32Array): tf.TensorInfo
}

const C = Math.sqrt(2 / Math.PI)
const calls: string[] = []

/** A plain-JavaScript GELU pair registered on cpu, to test core's dispatch and gradient wiring. */
function registerTestGelu(): void {
  const elementwise = (name: string, f: (x: number, dy: number) => number) =>
    tf.registerKernel({
      kernelName: name,
      backendName: 'cpu',
      kernelFunc: ({ inputs, backend }) => {
        calls.push(name)
        const b = backend as unknown as CpuBackend
        const { x, dy } = inputs as { x: tf.TensorInfo; dy?: tf.TensorInfo }
        const xv = b.data.get(x.dataId).values
        const dv = dy ? b.data.get(dy.dataId).values : undefined
        return b.makeTensorInfo(
          x.shape,
          'float32',
          xv.map((v, i) => f(v, dv ? dv[i] : 0)),
        )
      },
    })
  elementwise(FUSED_KERNELS.gelu, (v) => 0.5 * v * (1 + Math.tanh(C * (v + 0.044715 * v ** 3))))
  elementwise(FUSED_KERNELS.geluGrad, (v, dy) => {
    const t = Math.tanh(C * (v + 0.044715 * v ** 3))
    return dy * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * C * (1 + 3 * 0.044715 * v * v))
  })
}

describe('fused kernel dispatch', () => {
  let previous = ''
  beforeAll(async () => {
    previous = tf.getBackend() ?? 'cpu'
    await tf.setBackend('cpu')
  })
  afterAll(async () => {
    for (const name of [FUSED_KERNELS.gelu, FUSED_KERNELS.geluGrad])
      if (tf.getKernel(name, 'cpu')) tf.unregisterKernel(name, 'cpu')
    setFusedKernels(true)
    await tf.setBackend(previous)
  })

  it('the cpu backend has no fused kernels, so core runs the composite ops', () => {
    expect(hasFusedKernels(FUSED_KERNELS.layerNorm)).toBe(false)
    expect(hasFusedKernels(...Object.values(FUSED_KERNELS))).toBe(false)
  })

  it('a backend that registers a fused pair gets it for values and gradients, unless fused kernels are off', () => {
    const x = tf.tensor1d([-3, -0.5, 0, 0.7, 2.5])
    const w = tf.tensor1d([1, -2, 0.5, 3, -1])
    const valueAndGrad = () =>
      tf.valueAndGrad((t: tf.Tensor) => tf.sum(tf.mul(activate(t, 'gelu_tanh'), w)))(x)
    const composite = valueAndGrad()
    registerTestGelu()
    expect(hasFusedKernels(FUSED_KERNELS.gelu, FUSED_KERNELS.geluGrad)).toBe(true)
    const before = tf.memory().numTensors
    const fused = valueAndGrad()
    expect(calls).toEqual([FUSED_KERNELS.gelu, FUSED_KERNELS.geluGrad])
    expect(fused.value.dataSync()[0]).toBeCloseTo(composite.value.dataSync()[0], 5)
    const [g1, g2] = [fused.grad.dataSync(), composite.grad.dataSync()]
    for (let i = 0; i < g1.length; i++) expect(g1[i]).toBeCloseTo(g2[i], 5)
    tf.dispose([fused.value, fused.grad])
    expect(tf.memory().numTensors).toBe(before)
    setFusedKernels(false)
    expect(hasFusedKernels(FUSED_KERNELS.gelu)).toBe(false)
    calls.length = 0
    tf.dispose(valueAndGrad())
    expect(calls).toEqual([])
    tf.dispose([x, w, composite.value, composite.grad])
  })
})
