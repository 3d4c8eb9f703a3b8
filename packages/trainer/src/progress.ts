import { Presets, SingleBar } from 'cli-progress'
import type { MetricsRow } from './metrics.js'

export interface Progress {
  update(row: MetricsRow): void
  stop(reason?: string): void
}

/**
 * A progress bar (loss, tokens/s, ETA) on a terminal; otherwise plain lines at each evaluation
 * so logs stay readable in CI and files.
 */
export function createProgress(
  total: number,
  tty: boolean,
  log: (line: string) => void,
  opts: { label?: string; start?: number } = {},
): Progress {
  const label = opts.label ? `${opts.label} ` : ''
  if (tty && total > 0) {
    const bar = new SingleBar(
      {
        format: `train ${label}|{bar}| {value}/{total} loss {loss} val {val} {tps} tok/s ETA {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
      },
      Presets.shades_classic,
    )
    bar.start(total, opts.start ?? 0, { loss: '-', val: '-', tps: '-' })
    let stopped = false
    let lastVal = '-'
    return {
      update(row) {
        if (row.valLoss !== null) lastVal = row.valLoss.toFixed(4)
        bar.update(row.step, {
          loss: row.loss.toFixed(4),
          val: lastVal,
          tps: Math.round(row.tokensPerSecond),
        })
      },
      stop() {
        if (!stopped) bar.stop()
        stopped = true
      },
    }
  }
  let stopped = false
  return {
    update(row) {
      if (row.valLoss === null) return
      log(
        `${label}step ${row.step}/${total} loss ${row.loss.toFixed(4)} val ${row.valLoss.toFixed(4)} lr ${row.lr.toExponential(2)} ` +
          `${Math.round(row.tokensPerSecond)} tok/s ${row.seconds.toFixed(1)} s`,
      )
    },
    stop(reason) {
      if (!stopped && reason && reason !== 'steps') log(`stopped: ${reason}`)
      if (reason) stopped = true
    },
  }
}
