import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { selectBackend } from './backend.js'
import { exampleFlops } from './flops.js'
import { computeLoss, denseMlp, forward, forwardDetailed, loss } from './forward.js'
import { expertCapacity, moeMlp, routeTopK } from './moe.js'
import { disposeParams, initModel, type Params, paramTable } from './params.js'
import { refActivation } from './reference.testutil.js'
import { expertDFF, parseSpec, type TransformerSpec } from './spec.js'

beforeAll(async () => {
  await selectBackend('cpu')
})

type Mat = number[][]
const mat = (t: tf.Tensor) => t.arraySync() as Mat
const vec = (t: tf.Tensor | undefined, n: number) => (t ? (t.arraySync() as number[]) : new Array(n).fill(0))
const matmul = (a: Mat, b: Mat, bias: number[]) =>
  a.map((row) => bias.map((b0, j) => row.reduce((s, v, i) => s + v * b[i][j], b0)))

/**
 * Plain-JS float64 MoE written from the definition, one token at a time: softmax router,
 * top-k (ties to the lower index), gates renormalised over the k choices, buffer places by
 * (choice rank, token order), dropped choices contribute nothing.
 */
function referenceMoe(x: Mat, spec: TransformerSpec, p: Params, prefix: string, capacity: number): Mat {
  const { experts: E, topK: k } = spec.moe!
  const W = mat(p[`${prefix}.router.weight`])
  const probs = x.map((row) => {
    const logits = W[0].map((_, e) => row.reduce((s, v, d) => s + v * W[d][e], 0))
    const m = Math.max(...logits)
    const ex = logits.map((l) => Math.exp(l - m))
    const z = ex.reduce((a, b) => a + b, 0)
    return ex.map((v) => v / z)
  })
  const choices = probs.map((pr) =>
    pr
      .map((v, e) => [v, e])
      .sort((a, b) => b[0] - a[0] || a[1] - b[1])
      .slice(0, k)
      .map(([, e]) => e),
  )
  const fill = new Array(E).fill(0)
  const kept = choices.map(() => new Array(k).fill(false))
  for (let j = 0; j < k; j++)
    for (let n = 0; n < x.length; n++)
      if (fill[choices[n][j]] < capacity) {
        fill[choices[n][j]]++
        kept[n][j] = true
      }
  const F = expertDFF(spec)
  const D = spec.dModel
  return x.map((row, n) => {
    const total = choices[n].reduce((s, e) => s + probs[n][e], 0)
    const out = new Array(D).fill(0)
    choices[n].forEach((e, j) => {
      if (!kept[n][j]) return
      const pre = `${prefix}.experts.${e}`
      const up = matmul([row], mat(p[`${pre}.fc1.weight`]), vec(p[`${pre}.fc1.bias`], F))[0]
      const h =
        spec.activation === 'swiglu'
          ? matmul([row], mat(p[`${pre}.gate.weight`]), vec(p[`${pre}.gate.bias`], F))[0].map(
              (g, i) => refActivation(g, 'swiglu') * up[i],
            )
          : up.map((u) => refActivation(u, spec.activation))
      const y = matmul([h], mat(p[`${pre}.fc2.weight`]), vec(p[`${pre}.fc2.bias`], D))[0]
      for (let d = 0; d < D; d++) out[d] += (probs[n][e] / total) * y[d]
    })
    return out
  })
}

function moeSpec(extra: Record<string, unknown> = {}, moe: Record<string, unknown> = {}) {
  return parseSpec({
    family: 'decoder',
    vocabSize: 13,
    maxSeqLen: 8,
    dModel: 6,
    nLayers: 2,
    nHeads: 2,
    dFF: 10,
    ...extra,
    moe: { experts: 4, topK: 2, layers: [1], ...moe },
  })
}

/** Params with every weight scaled up so that the router is far from uniform. */
function sharpParams(spec: TransformerSpec, seed: number, scale = 25): Params {
  const params: Params = {}
  const init = initModel(spec, seed).params
  for (const info of paramTable(spec)) {
    const t = init[info.name]
    params[info.name] =
      info.kind === 'bias'
        ? tf.randomNormal(t.shape, 0, 0.1, 'float32', seed + info.name.length)
        : info.kind === 'weight'
          ? tf.mul(t, scale)
          : tf.clone(t)
    t.dispose()
  }
  return params
}

describe('routeTopK', () => {
  it('matches a hand-computed routing with capacity 2', () => {
    // Experts' queues (choice rank first, then token order):
    //   e0: t0 (1st), t2 (1st), t3 (2nd, dropped)   e1: t1 (1st), t0 (2nd), t2 (2nd, dropped)
    //   e2: t3 (1st), t1 (2nd).   t3 ties 0.2/0.2 between e0 and e1: the lower index wins.
    const probs = tf.tensor2d([
      [0.5, 0.3, 0.2],
      [0.1, 0.6, 0.3],
      [0.45, 0.35, 0.2],
      [0.2, 0.2, 0.6],
    ])
    const before = tf.memory().numTensors
    const r = tf.tidy(() => ({ ...routeTopK(probs, 2, 2) }))
    expect(r.experts.arraySync()).toEqual([
      [0, 1, 0, 2],
      [1, 2, 1, 0],
    ])
    expect(r.kept.arraySync()).toEqual([
      [1, 1, 1, 1],
      [1, 1, 0, 0],
    ])
    // Buffer rows e·C + place; 6 = E·C is the zero row of dropped choices.
    expect(r.slot.arraySync()).toEqual([
      [0, 2, 1, 4],
      [3, 5, 6, 6],
    ])
    const gates = r.gates.arraySync()
    const want = [
      [0.5 / 0.8, 0.6 / 0.9, 0.45 / 0.8, 0.6 / 0.8],
      [0.3 / 0.8, 0.3 / 0.9, 0, 0],
    ]
    for (let j = 0; j < 2; j++) for (let n = 0; n < 4; n++) expect(gates[j][n]).toBeCloseTo(want[j][n], 6)
    tf.dispose([probs, ...Object.values(r)])
    expect(tf.memory().numTensors).toBe(before - 1)
  })

  it('expertCapacity is ceil(k·N/E·factor), capped at N, and N for an infinite factor', () => {
    expect(expertCapacity(64, 8, 2, 1.25)).toBe(20)
    expect(expertCapacity(10, 4, 2, 1)).toBe(5)
    expect(expertCapacity(10, 2, 2, 2)).toBe(10)
    expect(expertCapacity(10, 8, 2, Number.POSITIVE_INFINITY)).toBe(10)
  })
})

describe('moeMlp', () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>, number][] = [
    ['gelu, no drops', {}, {}, Number.POSITIVE_INFINITY],
    ['gelu, capacity 1.0 drops tokens', {}, {}, 1.0],
    ['swiglu without biases, capacity 0.5', { activation: 'swiglu', bias: false }, {}, 0.5],
    ['relu, top-1 of 3, capacity 0.7', { activation: 'relu' }, { experts: 3, topK: 1 }, 0.7],
    ['top-3 of 5, capacity 1.25', {}, { experts: 5, topK: 3 }, 1.25],
    ['fine-grained experts (expertDFF 4 < dFF 10), gelu, capacity 1.0', {}, { expertDFF: 4 }, 1.0],
    [
      'fine-grained experts (expertDFF 5), swiglu without biases, no drops',
      { activation: 'swiglu', bias: false },
      { experts: 6, topK: 4, expertDFF: 5 },
      Number.POSITIVE_INFINITY,
    ],
  ]
  for (const [name, extra, moe, factor] of cases)
    it(`equals a per-token float64 reference (${name})`, () => {
      const spec = moeSpec(extra, moe)
      const params = sharpParams(spec, 3)
      const x = tf.randomNormal([3, 7, spec.dModel], 0, 1, 'float32', 5)
      const before = tf.memory().numTensors
      const out = tf.tidy(() => moeMlp(x, spec, params, 'layers.1.mlp', true, factor).output)
      expect(tf.memory().numTensors).toBe(before + 1)
      const N = 21
      const capacity = expertCapacity(N, spec.moe!.experts, spec.moe!.topK, factor)
      const want = referenceMoe(mat(x.reshape([N, spec.dModel])), spec, params, 'layers.1.mlp', capacity)
      const got = mat(out.reshape([N, spec.dModel]))
      let maxDiff = 0
      let zeroRows = 0
      for (let n = 0; n < N; n++) {
        if (want[n].every((v) => v === 0)) zeroRows++
        for (let d = 0; d < spec.dModel; d++) maxDiff = Math.max(maxDiff, Math.abs(got[n][d] - want[n][d]))
      }
      expect(maxDiff).toBeLessThan(2e-4)
      // A dense-enough check that dropping really happens where the capacity is tight.
      if (factor <= 0.5) expect(zeroRows).toBeGreaterThan(0)
      tf.dispose([x, out])
      disposeParams(params)
    })

  it('with identical experts and no drops equals the dense MLP; dropped tokens give exactly 0', () => {
    const spec = moeSpec({}, { experts: 4, topK: 2 })
    const params = sharpParams(spec, 4)
    for (let e = 1; e < 4; e++)
      for (const n of ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']) {
        params[`layers.1.mlp.experts.${e}.${n}`].dispose()
        params[`layers.1.mlp.experts.${e}.${n}`] = tf.clone(params[`layers.1.mlp.experts.0.${n}`])
      }
    const x = tf.randomNormal([2, 8, spec.dModel], 0, 1, 'float32', 6)
    const [moe, dense, tight] = tf.tidy(() => [
      moeMlp(x, spec, params, 'layers.1.mlp', false, Number.POSITIVE_INFINITY).output,
      denseMlp(x, spec, params, 'layers.1.mlp.experts.0'),
      moeMlp(x, spec, params, 'layers.1.mlp', true, 0.25).output,
    ])
    expect(tf.max(tf.abs(tf.sub(moe, dense))).dataSync()[0]).toBeLessThan(1e-5)
    // Capacity 0.25: 2 places per expert for 32 choices, so most rows are exactly 0 (residual only).
    const rows = mat(tight.reshape([16, spec.dModel]))
    const zero = rows.filter((r) => r.every((v) => v === 0)).length
    expect(zero).toBeGreaterThanOrEqual(16 - 4 * 2)
    tf.dispose([x, moe, dense, tight])
    disposeParams(params)
  })

  it('computes the load-balancing and z losses of a hand-computed example', () => {
    // Router = identity on a 3-wide stream, so x rows are the logits: log(p_n) + c_n has
    // softmax p_n and logsumexp c_n.
    const spec = parseSpec({
      family: 'decoder',
      vocabSize: 5,
      maxSeqLen: 4,
      dModel: 3,
      nLayers: 1,
      nHeads: 1,
      dFF: 2,
      moe: { experts: 3, topK: 2, layers: [0] },
    })
    const params = initModel(spec, 1).params
    params['layers.0.mlp.router.weight'].dispose()
    params['layers.0.mlp.router.weight'] = tf.eye(3)
    const p = [
      [0.5, 0.3, 0.2],
      [0.1, 0.6, 0.3],
      [0.45, 0.35, 0.2],
      [0.2, 0.2, 0.6],
    ]
    const c = [0, 1, 2, -1]
    const x = tf.tensor2d(p.map((row, n) => row.map((v) => Math.log(v) + c[n])))
    const r = tf.tidy(() => ({ ...moeMlp(x, spec, params, 'layers.0.mlp', true, 1) }))
    // Choices per expert: e0 {t0, t2, t3}, e1 {t0, t1, t2}, e2 {t1, t3} → f = [3, 3, 2] / 8.
    // Mean probabilities: [1.25, 1.45, 1.3] / 4.  LB = 3 · Σ f·P = 1.003125.
    expect(r.loadBalance.dataSync()[0]).toBeCloseTo(
      3 * ((3 / 8) * 0.3125 + (3 / 8) * 0.3625 + (2 / 8) * 0.325),
      5,
    )
    // z-loss = mean(c²) = (0 + 1 + 4 + 1) / 4.
    expect(r.zLoss.dataSync()[0]).toBeCloseTo(1.5, 5)
    tf.dispose([x, r.output, r.loadBalance, r.zLoss])
    disposeParams(params)
  })
})

describe('MoE in the model', () => {
  it('adds the weighted auxiliary losses (mean over MoE layers) to the cross-entropy', () => {
    for (const family of ['decoder', 'encoder', 'vit'] as const) {
      const img = family === 'vit' ? { image: { size: 4, patch: 2, channels: 1, classes: 3 } } : {}
      const spec = parseSpec({
        ...(family === 'vit' ? {} : { vocabSize: 13, maxSeqLen: 8 }),
        ...img,
        family,
        dModel: 6,
        nLayers: 3,
        nHeads: 2,
        dFF: 10,
        moe: { experts: 4, topK: 2, layers: [0, 2], auxLossWeight: 0.1, zLossWeight: 0.01 },
      })
      const model = { spec, params: sharpParams(spec, 7, 5) }
      const inputs =
        family === 'vit'
          ? tf.randomNormal([2, 4, 4, 1], 0, 1, 'float32', 1)
          : tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 6], 'int32')
      const targets = family === 'vit' ? tf.tensor1d([0, 2], 'int32') : inputs
      const before = tf.memory().numTensors
      const out = forwardDetailed(model, inputs, { training: true })
      const { loss: total, ce } = computeLoss(model, { inputs, targets }, { training: true })
      const lb = out.aux!.loadBalance.dataSync()[0]
      const z = out.aux!.zLoss.dataSync()[0]
      expect(out.auxLoss!.dataSync()[0]).toBeCloseTo(0.1 * lb + 0.01 * z, 6)
      expect(total.dataSync()[0] - ce.dataSync()[0]).toBeCloseTo(0.1 * lb + 0.01 * z, 5)
      expect(lb).toBeGreaterThanOrEqual(0.99) // ≥ 1 up to float error when routing is unbalanced
      tf.dispose([out.logits, out.auxLoss!, out.aux!.loadBalance, out.aux!.zLoss, total, ce])
      expect(tf.memory().numTensors).toBe(before)
      tf.dispose([inputs, targets])
      disposeParams(model.params)
    }
  })

  it('uses capacityFactor in training, evalCapacityFactor in evaluation, and is deterministic', () => {
    const spec = moeSpec({}, { capacityFactor: 0.25, evalCapacityFactor: 100 })
    const model = { spec, params: sharpParams(spec, 9) }
    const ids = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 1, 2, 3], [2, 8], 'int32')
    const [train, train2, evalOut, unlimited] = [
      forward(model, ids, { training: true }),
      forward(model, ids, { training: true }),
      forward(model, ids, { training: false }),
      forward(model, ids, { training: true, moeCapacityFactor: Number.POSITIVE_INFINITY }),
    ]
    const diff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0])
    expect(diff(train, train2)).toBe(0)
    expect(diff(evalOut, unlimited)).toBe(0)
    expect(diff(train, evalOut)).toBeGreaterThan(1e-3)
    tf.dispose([ids, train, train2, evalOut, unlimited])
    disposeParams(model.params)
  })

  it('counts k of E experts plus the router in FLOPs', () => {
    const spec = moeSpec({}, { experts: 8, topK: 2, layers: [0, 1] })
    const dense = parseSpec({ ...spec, moe: undefined })
    const T = 8
    const mlp = 2 * T * 2 * spec.dModel * spec.dFF
    expect(exampleFlops(spec, T).parts.mlp).toBe(2 * 2 * mlp)
    expect(exampleFlops(spec, T).parts.router).toBe(2 * 2 * T * spec.dModel * 8)
    expect(exampleFlops(spec, T).forward - exampleFlops(dense, T).forward).toBe(
      2 * mlp + 2 * 2 * T * spec.dModel * 8,
    )
  })

  it('gives fine-grained experts (moe.expertDFF) their own width in parameters, forward and FLOPs', () => {
    const spec = moeSpec({ activation: 'swiglu' }, { experts: 8, topK: 4, layers: [1], expertDFF: 5 })
    const expert = paramTable(spec).filter((p) => p.expert === 3)
    expect(expert.map((p) => [p.name, p.shape])).toEqual([
      ['layers.1.mlp.experts.3.fc1.weight', [6, 5]],
      ['layers.1.mlp.experts.3.fc1.bias', [5]],
      ['layers.1.mlp.experts.3.gate.weight', [6, 5]],
      ['layers.1.mlp.experts.3.gate.bias', [5]],
      ['layers.1.mlp.experts.3.fc2.weight', [5, 6]],
      ['layers.1.mlp.experts.3.fc2.bias', [6]],
    ])
    // The dense layer 0 keeps dFF.
    expect(paramTable(spec).find((p) => p.name === 'layers.0.mlp.fc1.weight')!.shape).toEqual([6, 10])
    const T = 8
    const dense = parseSpec({ ...spec, moe: undefined })
    // Layer 1: 4 active experts of width 5 (3 matrices) instead of one MLP of width 10, plus the router.
    const perExpert = 2 * T * 3 * spec.dModel * 5
    const denseMlp = 2 * T * 3 * spec.dModel * spec.dFF
    expect(exampleFlops(spec, T).parts.mlp - exampleFlops(dense, T).parts.mlp).toBe(4 * perExpert - denseMlp)
    const model = initModel(spec, 4)
    const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6]], [1, 6], 'int32')
    const logits = forward(model, ids)
    expect(logits.shape).toEqual([1, 6, 13])
    tf.dispose([ids, logits])
    disposeParams(model.params)
  })
})

describe('MoE gradients', () => {
  /** L(params) = Σ output ⊙ R + LB + z on one MoE layer with drops; checked by central differences. */
  it('reach the router and the experts, matching finite differences', () => {
    const spec = moeSpec({}, { experts: 3, topK: 2 })
    const params = sharpParams(spec, 11, 10)
    const x = tf.randomNormal([10, spec.dModel], 0, 1, 'float32', 12)
    const R = tf.randomNormal([10, spec.dModel], 0, 1, 'float32', 13)
    const prefix = 'layers.1.mlp'
    const names = [
      `${prefix}.router.weight`,
      `${prefix}.experts.0.fc1.weight`,
      `${prefix}.experts.2.fc2.weight`,
    ]
    const objective = (p: Params) =>
      tf.tidy(() => {
        const r = moeMlp(x, spec, p, prefix, true, 1.0)
        return tf.addN([tf.sum(tf.mul(r.output, R)), r.loadBalance, r.zLoss]) as tf.Scalar
      })
    const vars = names.map((n) => tf.variable(params[n]))
    const before = tf.memory().numTensors
    const { value, grads } = tf.variableGrads(
      () => objective({ ...params, ...Object.fromEntries(names.map((n, i) => [n, vars[i]])) }),
      vars,
    )
    const analytic = names.map((_, i) => grads[vars[i].name].arraySync() as Mat)
    tf.dispose([value, ...Object.values(grads)])
    expect(tf.memory().numTensors).toBe(before)
    const eps = 1e-2
    let checked = 0
    names.forEach((name, i) => {
      const base = params[name].arraySync() as Mat
      let norm = 0
      for (const row of analytic[i]) for (const g of row) norm += g * g
      expect(Math.sqrt(norm)).toBeGreaterThan(1e-3) // the gradient reaches this tensor
      for (const [a, b] of [
        [0, 0],
        [1, 2],
        [base.length - 1, base[0].length - 1],
      ]) {
        const at = (delta: number) => {
          const m = base.map((r) => r.slice())
          m[a][b] += delta
          const t = tf.tensor2d(m)
          const v = objective({ ...params, [name]: t }).dataSync()[0]
          t.dispose()
          return v
        }
        const fd = (at(eps) - at(-eps)) / (2 * eps)
        expect(Math.abs(fd - analytic[i][a][b])).toBeLessThan(3e-3 + 2e-2 * Math.abs(fd))
        checked++
      }
    })
    expect(checked).toBe(9)
    tf.dispose([x, R, ...vars])
    disposeParams(params)
  })

  it('flow through a whole MoE model without leaking tensors', () => {
    const spec = moeSpec({}, { layers: [0, 1] })
    const model = initModel(spec, 2)
    const vars = Object.fromEntries(Object.entries(model.params).map(([k, v]) => [k, tf.variable(v)]))
    const ids = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 1, 2, 3], [2, 8], 'int32')
    const before = tf.memory().numTensors
    const { value, grads } = tf.variableGrads(() =>
      loss({ spec, params: vars }, { inputs: ids, targets: ids }),
    )
    expect(Number.isFinite(value.dataSync()[0])).toBe(true)
    const router = grads[vars['layers.0.mlp.router.weight'].name]
    expect(tf.tidy(() => tf.norm(router).dataSync()[0])).toBeGreaterThan(0)
    expect(Object.keys(grads).length).toBe(Object.keys(vars).length)
    tf.dispose([value, ...Object.values(grads)])
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([ids, ...Object.values(vars)])
    disposeParams(model.params)
  })
})
