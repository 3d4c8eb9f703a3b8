import * as tf from '@tensorflow/tfjs'

/**
 * The four tensor-ring cores, in ring order B → I → O → L → B:
 * B [Ra,B1,B2,Rb], I [Rb,I1,I2,Rc], O [Rc,O1,O2,Rd], L [Rd,L1,L2,Ra].
 */
export interface RingCores {
  B: tf.Tensor
  I: tf.Tensor
  O: tf.Tensor
  L: tf.Tensor
}

export interface RingDims {
  B1: number
  B2: number
  I1: number
  I2: number
  O1: number
  O2: number
  L1: number
  L2: number
}

/**
 * M2[b2,i2,o2,l2] = Σ Tr(S_B[:,b1,b2,:] · S_I[:,i1,i2,:] · S_O[:,o1,o2,:] · S_L[:,l1,l2,:]) · M1[b1,i1,o1,l1],
 * contracted core by core (the full operator is never built):
 * 1. the input core over i1 (opens bonds b, c);
 * 2. the output core over (o1, c) (leaves b, d open);
 * 3. the layer and block cores, merged over their shared bond (a tiny tensor), over (b1, l1, b, d).
 * Differentiable with respect to every core and to M1.
 */
export function contractRing(m1: tf.Tensor, cores: RingCores): tf.Tensor {
  const [Ra, B1, B2, Rb] = cores.B.shape as number[]
  const [, I1, I2, Rc] = cores.I.shape as number[]
  const [, O1, O2, Rd] = cores.O.shape as number[]
  const [, L1, L2] = cores.L.shape as number[]
  // 1. [B1,I1,O1,L1] -> [B1,O1,L1 | I1] x [I1 | b,I2,c] -> [B1,O1,L1,b,I2,c]
  const x1 = tf.matMul(
    tf.transpose(m1, [0, 2, 3, 1]).reshape([B1 * O1 * L1, I1]),
    tf.transpose(cores.I, [1, 0, 2, 3]).reshape([I1, Rb * I2 * Rc]),
  )
  // 2. -> [B1,L1,b,I2 | O1,c] x [O1,c | O2,d] -> [B1,L1,b,I2,O2,d]
  const x2 = tf.matMul(
    tf
      .transpose(x1.reshape([B1, O1, L1, Rb, I2, Rc]), [0, 2, 3, 4, 1, 5])
      .reshape([B1 * L1 * Rb * I2, O1 * Rc]),
    tf.transpose(cores.O, [1, 0, 2, 3]).reshape([O1 * Rc, O2 * Rd]),
  )
  // 3a. C[d,l1,l2,b1,b2,b] = Σ_a S_L[d,l1,l2,a] S_B[a,b1,b2,b]
  const c = tf.matMul(cores.L.reshape([Rd * L1 * L2, Ra]), cores.B.reshape([Ra, B1 * B2 * Rb]))
  // 3b. [I2,O2 | B1,L1,b,d] x [B1,L1,b,d | B2,L2] -> [I2,O2,B2,L2]
  const x3 = tf.matMul(
    tf
      .transpose(x2.reshape([B1, L1, Rb, I2, O2, Rd]), [3, 4, 0, 1, 2, 5])
      .reshape([I2 * O2, B1 * L1 * Rb * Rd]),
    tf
      .transpose(c.reshape([Rd, L1, L2, B1, B2, Rb]), [3, 1, 5, 0, 4, 2])
      .reshape([B1 * L1 * Rb * Rd, B2 * L2]),
  )
  return tf.transpose(x3.reshape([I2, O2, B2, L2]), [2, 0, 1, 3])
}

/**
 * Bond ranks in ring order: a (L→B), b (B→I), c (I→O), d (O→L). A single number sets all four.
 */
export type RingRanks = number | [number, number, number, number]

export function bondRanks(r: RingRanks): [number, number, number, number] {
  return typeof r === 'number' ? [r, r, r, r] : r
}

/** Multiply-add FLOPs (2 per multiply-add) of contractRing for these sizes and ranks. */
export function ringFlops(d: RingDims, ranks: RingRanks): { forward: number; gradient: number } {
  const [Ra, Rb, Rc, Rd] = bondRanks(ranks)
  const step1 = 2 * d.B1 * d.O1 * d.L1 * d.I1 * Rb * d.I2 * Rc
  const step2 = 2 * d.B1 * d.L1 * Rb * d.I2 * d.O1 * Rc * d.O2 * Rd
  const step3a = 2 * Rd * d.L1 * d.L2 * Ra * d.B1 * d.B2 * Rb
  const step3b = 2 * d.I2 * d.O2 * d.B1 * d.L1 * Rb * Rd * d.B2 * d.L2
  // Backward to the cores: step 1 multiplies the constant source tensor (one gradient, to S_I),
  // every later product has two operands that depend on the cores (two gradients each).
  return {
    forward: step1 + step2 + step3a + step3b,
    gradient: step1 + 2 * (step2 + step3a + step3b),
  }
}

/** Trainable scalars of the four cores. */
export function ringParameters(d: RingDims, ranks: RingRanks): number {
  const [Ra, Rb, Rc, Rd] = bondRanks(ranks)
  return Ra * d.B1 * d.B2 * Rb + Rb * d.I1 * d.I2 * Rc + Rc * d.O1 * d.O2 * Rd + Rd * d.L1 * d.L2 * Ra
}
