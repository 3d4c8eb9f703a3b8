import * as tf from '@tensorflow/tfjs'
import { fusedGelu, hasFusedKernels, FUSED_KERNELS as K } from './fused.js'
import type { TransformerSpec } from './spec.js'

// The building blocks (embedding gather, activations) shared by the dense forward pass (forward.ts) and the
// mixture-of-experts layer (moe.ts); they live here so neither module imports the other.

/**
 * table[ids] along axis 0, with a scatter-add gradient. tf.gather's own gradient is an
 * UnsortedSegmentSum that costs O(rows × ids) on the cpu backend (75% of a training step);
 * scatterND sums duplicate indices in one pass over the ids.
 */
export function gatherRows(table: tf.Tensor, ids: tf.Tensor): tf.Tensor {
  const rows = table.shape[0]!
  const rest = table.shape.slice(1)
  const flat = ids.reshape([-1, 1]).toInt()
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [t, save] = args as [tf.Tensor, tf.GradSaveFunc]
    save([flat])
    const value = tf.gather(t, flat.reshape([-1])).reshape([...ids.shape, ...rest])
    return {
      value,
      gradFunc: (dy, saved) => {
        const [index] = saved as tf.Tensor[]
        // Rows gathered more than once sum their gradients (a segment sum: native on `native`).
        const dRows = (dy as tf.Tensor).reshape([index.shape[0]!, ...rest])
        return tf.unsortedSegmentSum(dRows, index.reshape([-1]) as tf.Tensor1D, rows)
      },
    }
  })
  return f(table) as tf.Tensor
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI)

/** Elementwise activation; swiglu's gating is handled by the MLP. */
export function activate(x: tf.Tensor, kind: TransformerSpec['activation']): tf.Tensor {
  switch (kind) {
    case 'gelu':
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))))
    case 'gelu_tanh': {
      if (hasFusedKernels(K.gelu, K.geluGrad)) return fusedGelu(x)
      // x·x·x rather than pow(x, 3): pow's gradient goes through log and select, several times slower.
      const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), SQRT_2_OVER_PI)
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)))
    }
    case 'relu':
      return tf.relu(x)
    case 'swiglu':
      return tf.mul(x, tf.sigmoid(x))
  }
}
