import { FUSED_KERNELS, hasFusedKernels, type Params, SproutError } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

export interface OptimizerConfig {
  kind: 'adamw' | 'sgd'
  /** Peak learning rate (the schedule scales it). */
  lr: number
  beta1?: number
  beta2?: number
  eps?: number
  /** Decoupled weight decay (AdamW) or L2-free decay (SGD), applied where `decays(name)`. */
  weightDecay?: number
  /** SGD momentum. */
  momentum?: number
}

export interface Optimizer {
  readonly kind: OptimizerConfig['kind']
  /** Updates taken so far (AdamW's bias-correction t). */
  readonly steps: number
  /** Applies one update with learning rate `lr` and disposes nothing the caller passed. */
  apply(grads: Record<string, tf.Tensor>, lr: number): void
  /** Moments as named tensors (copies), for checkpoints and transfer to a grown model. */
  state(): Params
  /** Restores moments saved by `state()` and the update count. */
  load(state: Params, steps: number): void
  dispose(): void
}

/** Weight decay on matrices and embeddings only (rank ≥ 2), not on biases and norm scales. */
export const decayMatrices = (v: tf.Variable) => v.rank >= 2

function slots(vars: Record<string, tf.Variable>): Record<string, tf.Variable> {
  const out: Record<string, tf.Variable> = {}
  for (const [name, v] of Object.entries(vars)) {
    const zeros = tf.zerosLike(v)
    out[name] = tf.variable(zeros, false)
    zeros.dispose()
  }
  return out
}

function loadSlots(slots: Record<string, tf.Variable>, state: Params, prefix: string): void {
  for (const [name, slot] of Object.entries(slots)) {
    const t = state[`${prefix}.${name}`]
    if (!t) throw new SproutError('CHECKPOINT_INVALID', `optimizer state has no "${prefix}.${name}"`)
    if (t.shape.join(',') !== slot.shape.join(','))
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `optimizer state "${prefix}.${name}" has shape [${t.shape}] but the parameter has [${slot.shape}]`,
      )
    slot.assign(t)
  }
}

/**
 * AdamW (Loshchilov & Hutter), PyTorch semantics: p ← p·(1 − lr·λ), then
 * p ← p − lr·m̂/(√v̂ + ε) with bias-corrected moments m̂ = m/(1−β1^t), v̂ = v/(1−β2^t).
 */
export class AdamW implements Optimizer {
  readonly kind = 'adamw' as const
  steps = 0
  private readonly m: Record<string, tf.Variable>
  private readonly v: Record<string, tf.Variable>
  private readonly beta1: number
  private readonly beta2: number
  private readonly eps: number
  private readonly weightDecay: number
  constructor(
    private readonly vars: Record<string, tf.Variable>,
    config: Omit<OptimizerConfig, 'kind' | 'lr'> = {},
    private readonly decays: (v: tf.Variable, name: string) => boolean = decayMatrices,
  ) {
    this.beta1 = config.beta1 ?? 0.9
    this.beta2 = config.beta2 ?? 0.999
    this.eps = config.eps ?? 1e-8
    this.weightDecay = config.weightDecay ?? 0
    this.m = slots(vars)
    this.v = slots(vars)
  }

  apply(grads: Record<string, tf.Tensor>, lr: number): void {
    this.steps++
    const { beta1: b1, beta2: b2, eps } = this
    const c1 = 1 - b1 ** this.steps
    const c2 = 1 - b2 ** this.steps
    const fused = hasFusedKernels(FUSED_KERNELS.adamw)
    tf.tidy(() => {
      for (const [name, p] of Object.entries(this.vars)) {
        const g = grads[name]
        if (!g) continue
        const decay = this.weightDecay > 0 && this.decays(p, name) ? 1 - lr * this.weightDecay : 1
        if (fused) {
          const [np, nm, nv] = tf
            .engine()
            .runKernel(
              FUSED_KERNELS.adamw,
              { param: p, grad: g, m: this.m[name], v: this.v[name] },
              { lr, beta1: b1, beta2: b2, eps, c1, c2, decay },
            ) as tf.Tensor[]
          this.m[name].assign(nm)
          this.v[name].assign(nv)
          p.assign(np)
          continue
        }
        const m = tf.add(tf.mul(this.m[name], b1), tf.mul(g, 1 - b1))
        const v = tf.add(tf.mul(this.v[name], b2), tf.mul(tf.square(g), 1 - b2))
        this.m[name].assign(m)
        this.v[name].assign(v)
        const decayed = decay !== 1 ? tf.mul(p, decay) : p
        const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps))
        p.assign(tf.sub(decayed, tf.mul(update, lr)))
      }
    })
  }

  state(): Params {
    const out: Params = {}
    for (const name of Object.keys(this.vars)) {
      out[`m.${name}`] = this.m[name].clone()
      out[`v.${name}`] = this.v[name].clone()
    }
    return out
  }

  load(state: Params, steps: number): void {
    loadSlots(this.m, state, 'm')
    loadSlots(this.v, state, 'v')
    this.steps = steps
  }

  dispose(): void {
    tf.dispose([...Object.values(this.m), ...Object.values(this.v)])
  }
}

/** SGD with optional heavy-ball momentum (buf ← μ·buf + g; p ← p − lr·buf) and decoupled decay. */
export class Sgd implements Optimizer {
  readonly kind = 'sgd' as const
  steps = 0
  private readonly buf: Record<string, tf.Variable>
  private readonly momentum: number
  private readonly weightDecay: number
  constructor(
    private readonly vars: Record<string, tf.Variable>,
    config: Omit<OptimizerConfig, 'kind' | 'lr'> = {},
    private readonly decays: (v: tf.Variable, name: string) => boolean = decayMatrices,
  ) {
    this.momentum = config.momentum ?? 0
    this.weightDecay = config.weightDecay ?? 0
    this.buf = this.momentum > 0 ? slots(vars) : {}
  }

  apply(grads: Record<string, tf.Tensor>, lr: number): void {
    this.steps++
    tf.tidy(() => {
      for (const [name, p] of Object.entries(this.vars)) {
        const g = grads[name]
        if (!g) continue
        let d: tf.Tensor = g
        if (this.momentum > 0) {
          d = tf.add(tf.mul(this.buf[name], this.momentum), g)
          this.buf[name].assign(d)
        }
        const decayed =
          this.weightDecay > 0 && this.decays(p, name) ? tf.mul(p, 1 - lr * this.weightDecay) : p
        p.assign(tf.sub(decayed, tf.mul(d, lr)))
      }
    })
  }

  state(): Params {
    return Object.fromEntries(Object.entries(this.buf).map(([n, b]) => [`momentum.${n}`, b.clone()]))
  }

  load(state: Params, steps: number): void {
    loadSlots(this.buf, state, 'momentum')
    this.steps = steps
  }

  dispose(): void {
    tf.dispose(Object.values(this.buf))
  }
}

export function createOptimizer(vars: Record<string, tf.Variable>, config: OptimizerConfig): Optimizer {
  return config.kind === 'sgd' ? new Sgd(vars, config) : new AdamW(vars, config)
}

/** Global L2 norm of all gradients, and the scale that brings it to at most `maxNorm`. */
export function clipByGlobalNorm(
  grads: Record<string, tf.Tensor>,
  maxNorm: number | undefined,
): { grads: Record<string, tf.Tensor>; norm: number } {
  const norm = tf.tidy(() => tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g))))))
  const value = norm.dataSync()[0]
  norm.dispose()
  if (maxNorm === undefined || !(value > maxNorm)) return { grads, norm: value }
  const scale = maxNorm / (value + 1e-6)
  const clipped: Record<string, tf.Tensor> = {}
  for (const [n, g] of Object.entries(grads)) {
    clipped[n] = tf.mul(g, scale)
    g.dispose()
  }
  return { grads: clipped, norm: value }
}
