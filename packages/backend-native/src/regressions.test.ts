import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { NATIVE_BACKEND } from './index.js'
import { expectClose, nativeMissing, onNativeBackend, runOn } from './kernels.testutil.js'

/** The three bugs tfjs-core's own suite found (src/conformance), each pinned here. */
describe.skipIf(nativeMissing)('regressions found by the tfjs-core suite', () => {
  onNativeBackend()

  it('relu keeps NaN, infinities and the sign of zero, alone, in large tensors and fused after a matmul', () => {
    const special = [Number.NaN, -1, -0, 0, 2, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY, -1e-30]
    const got = runOn(NATIVE_BACKEND, () => tf.relu(tf.tensor1d(special)))[0].data
    // Hand-computed: max(0, x) with NaN propagated (the native loop used to return 0 for NaN).
    expect(Array.from(got)).toEqual([Number.NaN, 0, -0, 0, 2, 0, Number.POSITIVE_INFINITY, 0])
    // Past the threading threshold (2^17 elements per thread), NaN in every chunk.
    const big = Float32Array.from({ length: 300_001 }, (_, i) => (i % 7 === 0 ? Number.NaN : (i % 13) - 6))
    const f = () => tf.relu(tf.tensor1d(big))
    expectClose(runOn(NATIVE_BACKEND, f), runOn('cpu', f), 0)
    // _FusedMatMul's relu activation runs the same kernel.
    const fused = () =>
      tf.fused.matMul({
        a: tf.tensor2d([1, Number.NaN, 2, -3], [2, 2]),
        b: tf.tensor2d([1, 0, 0, 1], [2, 2]),
        activation: 'relu',
      })
    expectClose(runOn(NATIVE_BACKEND, fused), runOn('cpu', fused), 0)
  })

  it('disposes a tensor whose data the backend never held without recursing (makeTensorFromDataId, custom kernels)', () => {
    tf.setBackend(NATIVE_BACKEND)
    const before = tf.memory().numTensors
    // Data ids the engine tracks but the backend never stored: disposal used to call
    // DataStorage.get, which moves the data from its owner (this backend) and disposes it there,
    // calling disposeData again without end.
    const dangling = tf.engine().makeTensorFromDataId({}, [3], 'float32')
    expect(() => dangling.dispose()).not.toThrow()
    tf.registerKernel({
      kernelName: 'SproutRegressionKernel',
      backendName: NATIVE_BACKEND,
      kernelFunc: () => ({ dtype: 'float32', shape: [2], dataId: {} }),
    })
    try {
      const x = tf.zeros([2])
      const out = tf.engine().runKernel('SproutRegressionKernel', { x }, {}) as tf.Tensor
      expect(out.shape).toEqual([2])
      expect(() => tf.dispose([x, out])).not.toThrow()
    } finally {
      tf.unregisterKernel('SproutRegressionKernel', NATIVE_BACKEND)
    }
    expect(tf.memory().numTensors).toBe(before)
  })

  it('runs kernels whose inputs are lists of tensors (RaggedGather, RaggedTensorToTensor) like cpu', () => {
    const gather = () => {
      const out = tf.raggedGather(
        [tf.tensor1d([0, 3, 3, 7, 9], 'int32')],
        tf.tensor1d([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
        tf.tensor1d([2, 1, 0, 3], 'int32'),
        1,
      )
      return [...out.outputNestedSplits, out.outputDenseValues]
    }
    const dense = () =>
      tf.raggedTensorToTensor(
        [4, 4],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        1.5,
        [tf.scalar(4, 'int32'), tf.tensor1d([0, 0, 0, 2, 2, 2, 2, 3, 3], 'int32')],
        ['FIRST_DIM_SIZE', 'VALUE_ROWIDS'],
      )
    tf.setBackend(NATIVE_BACKEND)
    const before = tf.memory().numTensors
    const got = runOn(NATIVE_BACKEND, gather)
    // Hand-computed: rows 2, 1, 0, 3 of the ragged rows [.1 .2 .3] [] [.4 .5 .6 .7] [.8 .9].
    expect(Array.from(got[0].data)).toEqual([0, 4, 4, 7, 9])
    expectClose(got, runOn('cpu', gather), 0)
    expectClose(runOn(NATIVE_BACKEND, dense), runOn('cpu', dense), 0)
    tf.setBackend(NATIVE_BACKEND)
    expect(tf.memory().numTensors).toBe(before)
  })
})
