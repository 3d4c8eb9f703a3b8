import { Resvg } from '@resvg/resvg-js'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'

/** A point of one run's validation curve, as plotted (one line per method and seed). */
export interface PlotPoint {
  method: string
  seed: number
  flops: number
  seconds: number
  valLoss: number
}

/** Renders a Vega-Lite spec headless to SVG (no canvas needed) and to PNG with resvg. */
export async function renderChart(spec: TopLevelSpec): Promise<{ svg: string; png: Uint8Array }> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  try {
    const svg = await view.toSVG()
    const png = new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: 2 } }).render().asPng()
    return { svg, png }
  } finally {
    view.finalize()
  }
}

const base = { width: 560, height: 320, background: 'white' } as const

/**
 * Validation loss against compute or wall time, one line per method and seed (growth cost
 * included, so a grown model's line starts right of zero), with scratch's mean final loss as a
 * dashed target line.
 */
export function lossCurveSpec(
  points: PlotPoint[],
  x: 'flops' | 'seconds',
  title: string,
  target: number | null = null,
): TopLevelSpec {
  const line = {
    data: { values: points },
    mark: { type: 'line', point: { size: 18 } },
    encoding: {
      x: {
        field: x,
        type: 'quantitative',
        title: x === 'flops' ? 'FLOPs (growth included)' : 'wall time (s, growth included)',
        ...(x === 'flops' ? { axis: { format: '.2s' } } : {}),
      },
      y: { field: 'valLoss', type: 'quantitative', title: 'validation loss', scale: { zero: false } },
      color: { field: 'method', type: 'nominal', title: 'method' },
      detail: { field: 'seed', type: 'nominal' },
    },
  } as const
  const rule = {
    data: { values: target === null ? [] : [{ target }] },
    mark: { type: 'rule', strokeDash: [4, 4], color: '#555' },
    encoding: { y: { field: 'target', type: 'quantitative' } },
  } as const
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    ...base,
    title,
    layer: [line, rule],
  } as TopLevelSpec
}

/** One method's mean saving at one budget, with its 95 % interval when there are several seeds. */
export interface SavingsPoint {
  method: string
  budget: number
  mean: number
  lo: number | null
  hi: number | null
}

/**
 * Compute saved against scratch's tuned, fully-decayed run at each budget: the mean over seeds
 * with its 95 % interval as an error bar, one line per method, zero marked.
 */
export function savingsSpec(rows: SavingsPoint[], title: string): TopLevelSpec {
  const values = rows.map((r) => ({
    method: r.method,
    budget: 100 * r.budget,
    percent: 100 * r.mean,
    lo: r.lo === null ? null : 100 * r.lo,
    hi: r.hi === null ? null : 100 * r.hi,
  }))
  const x = {
    field: 'budget',
    type: 'quantitative',
    title: 'budget (% of the suite’s target steps)',
  } as const
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    ...base,
    title,
    data: { values },
    layer: [
      {
        mark: { type: 'line', point: true },
        encoding: {
          x,
          y: { field: 'percent', type: 'quantitative', title: 'compute saved vs scratch (%, mean)' },
          color: { field: 'method', type: 'nominal', title: 'method' },
        },
      },
      {
        transform: [{ filter: 'datum.lo !== null' }],
        mark: { type: 'rule' },
        encoding: {
          x,
          y: { field: 'lo', type: 'quantitative' },
          y2: { field: 'hi' },
          color: { field: 'method', type: 'nominal' },
        },
      },
      {
        data: { values: [{ zero: 0 }] },
        mark: { type: 'rule', strokeDash: [4, 4], color: '#555' },
        encoding: { y: { field: 'zero', type: 'quantitative' } },
      },
    ],
  } as TopLevelSpec
}
