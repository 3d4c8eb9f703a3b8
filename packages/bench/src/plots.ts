import { Resvg } from '@resvg/resvg-js'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'

export interface CurvePoint {
  method: string
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
 * Validation loss against compute or wall time, one line per method (growth cost included, so a
 * grown model's line starts right of zero), with scratch's final loss as a dashed target line.
 */
export function lossCurveSpec(
  points: CurvePoint[],
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

/** Compute savings per method (1 − FLOPs to reach scratch's final loss / scratch's FLOPs). */
export function savingsSpec(rows: { method: string; savings: number | null }[], title: string): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    ...base,
    title,
    data: {
      values: rows.filter((r) => r.savings !== null).map((r) => ({ ...r, percent: 100 * r.savings! })),
    },
    mark: 'bar',
    encoding: {
      y: { field: 'method', type: 'nominal', sort: '-x', title: null },
      x: { field: 'percent', type: 'quantitative', title: 'compute saved vs scratch (%)' },
      color: { condition: { test: 'datum.percent < 0', value: '#c0392b' }, value: '#2e86c1' },
    },
  }
}
