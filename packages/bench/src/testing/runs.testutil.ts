import type { MethodRun } from '../records.js'

/** A finished run whose validation curve is given as [flops, valLoss] pairs (flops include growth). */
export function curveRun(
  name: string,
  seed: number,
  budget: number,
  points: [number, number][],
  extra: Partial<MethodRun> = {},
): MethodRun {
  return {
    name,
    method: name,
    seed,
    budget,
    steps: 100 * budget,
    lr: 1e-3,
    status: 'done',
    growthFlops: points[0][0],
    growthSeconds: 0,
    curve: points.map(([flops, valLoss], step) => ({ step, flops, seconds: flops / 10, valLoss })),
    finalValLoss: points.at(-1)![1],
    schedule: 'suite',
    ...(name === 'scratch' ? { lrMult: 1 } : {}),
    ...extra,
  }
}
