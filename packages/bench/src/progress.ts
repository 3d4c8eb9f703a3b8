import { MultiBar, Presets, type SingleBar } from 'cli-progress'

/** Where a comparison reports what it is doing: bars on a terminal, plain lines otherwise. */
export interface BenchProgress {
  /** A run (source pretraining or one method) starts; `total` is its training steps. */
  startRun(name: string, total: number): void
  /** The current run finished `step` of its steps; `valLoss` when it evaluated. */
  step(name: string, step: number, loss: number, valLoss: number | null): void
  /** The run is over (done, skipped or stopped); advances the overall bar. */
  endRun(name: string): void
  /** A line of text, printed above the bars on a terminal. */
  log(line: string): void
  stop(): void
}

/**
 * One overall bar across the planned runs plus one bar per active run on a TTY; on a pipe or
 * file only `log` lines are written (the trainer's evaluation lines carry the progress).
 */
export function createBenchProgress(
  totalRuns: number,
  tty: boolean,
  err: (line: string) => void,
): BenchProgress {
  if (!tty) {
    return {
      startRun() {},
      step() {},
      endRun() {},
      log: err,
      stop() {},
    }
  }
  const multi = new MultiBar(
    {
      format: '{label} |{bar}| {value}/{total} {info}',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      autopadding: true,
    },
    Presets.shades_classic,
  )
  const overall = multi.create(totalRuns, 0, { label: 'methods'.padEnd(12), info: '' })
  const runs = new Map<string, SingleBar>()
  let finished = 0
  // Growth and fitting can run long without returning to the event loop, where MultiBar's redraw
  // timer lives: redraw by hand on every update, at most ten times a second.
  let lastDraw = 0
  const redraw = (force = false) => {
    const now = performance.now()
    if (!force && now - lastDraw < 100) return
    lastDraw = now
    multi.update()
  }
  return {
    startRun(name, total) {
      runs.set(name, multi.create(total, 0, { label: name.slice(0, 12).padEnd(12), info: '' }))
      overall.update(finished, { info: [...runs.keys()].join(', ') })
      redraw(true)
    },
    step(name, step, loss, valLoss) {
      runs.get(name)?.update(step, {
        info: `loss ${loss.toFixed(4)}${valLoss === null ? '' : ` val ${valLoss.toFixed(4)}`}`,
      })
      redraw()
    },
    endRun(name) {
      const bar = runs.get(name)
      if (bar) {
        multi.remove(bar)
        runs.delete(name)
      }
      finished += 1
      overall.update(finished, { info: [...runs.keys()].join(', ') })
      redraw(true)
    },
    log(line) {
      multi.log(`${line}\n`)
      redraw(true)
    },
    stop() {
      multi.stop()
    },
  }
}
