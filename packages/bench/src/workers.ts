import { type ChildProcess, fork } from 'node:child_process'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import type { BenchProgress } from './progress.js'

/** Set in a worker's environment to the name of the one run it trains. */
export const WORKER_ENV = 'SPROUT_BENCH_WORKER'

/** How to start a worker: a Node script and its arguments (it must call runBenchCompare). */
export interface WorkerCommand {
  script: string
  args: string[]
  execArgv?: string[]
}

type Message =
  | { type: 'start'; name: string; total: number }
  | { type: 'step'; name: string; step: number; loss: number; valLoss: number | null }
  | { type: 'end'; name: string }
  | { type: 'stop' }

/**
 * The worker's side: progress goes to the parent over IPC, text to stderr (the parent prefixes
 * and forwards it). It stops after the current step when the parent writes `stopFile`: the
 * worker may be inside work that does not return to the event loop (a growth operator's fit, an
 * older trainer), where a signal or IPC message would wait; a file is checked synchronously.
 */
export function workerMessenger(
  err: (line: string) => void,
  stopFile: string,
): {
  progress: BenchProgress
  stopped: () => boolean
  close(): void
} {
  let stop = false
  const send = (m: Message) => {
    if (process.connected) process.send?.(m)
  }
  const onSigint = () => {
    stop = true
  }
  const onMessage = (m: Message) => {
    if (m?.type === 'stop') stop = true
  }
  process.on('SIGINT', onSigint)
  process.on('message', onMessage)
  return {
    progress: {
      startRun: (name, total) => send({ type: 'start', name, total }),
      step: (name, step, loss, valLoss) => send({ type: 'step', name, step, loss, valLoss }),
      endRun: (name) => send({ type: 'end', name }),
      log: err,
      stop() {},
    },
    stopped: () => stop || existsSync(stopFile),
    close() {
      process.off('SIGINT', onSigint)
      process.off('message', onMessage)
      // An open IPC channel would keep the worker alive after its run.
      if (process.connected) process.disconnect()
    },
  }
}

/**
 * Trains the named runs in up to `jobs` child processes at once. Resolves, once every started
 * worker has exited, with a description of each worker that failed; `stop()` (SIGINT) starts no
 * new worker and asks running ones to stop after their current step.
 */
export function runInWorkers(
  names: string[],
  jobs: number,
  command: WorkerCommand,
  progress: BenchProgress,
  stop: () => boolean,
  stopFile: string,
): Promise<string[]> {
  rmSync(stopFile, { force: true })
  return new Promise((resolvePromise) => {
    const queue = [...names]
    const running = new Set<ChildProcess>()
    const failed: string[] = []
    let stopSent = false
    const watch = setInterval(() => {
      if (!stop() || stopSent) return
      stopSent = true
      queue.length = 0
      writeFileSync(stopFile, 'stop after the current step\n')
      for (const child of running) if (child.connected) child.send({ type: 'stop' } satisfies Message)
    }, 200)
    const next = () => {
      while (running.size < jobs && queue.length > 0 && !stop()) launch(queue.shift()!)
      if (running.size === 0) {
        clearInterval(watch)
        rmSync(stopFile, { force: true })
        resolvePromise(failed)
      }
    }
    const launch = (name: string) => {
      const child = fork(command.script, command.args, {
        env: { ...process.env, [WORKER_ENV]: name },
        execArgv: command.execArgv ?? process.execArgv,
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      })
      running.add(child)
      let lastLine = ''
      let ended = false
      for (const stream of [child.stdout!, child.stderr!])
        createInterface({ input: stream }).on('line', (line) => {
          if (line.trim()) lastLine = line.trim()
          progress.log(`[${name}] ${line}`)
        })
      child.on('message', (m: Message) => {
        if (m.type === 'start') progress.startRun(m.name, m.total)
        else if (m.type === 'step') progress.step(m.name, m.step, m.loss, m.valLoss)
        else if (m.type === 'end') {
          ended = true
          progress.endRun(m.name)
        }
      })
      let finished = false
      const finish = (problem: string | null) => {
        if (finished) return
        finished = true
        running.delete(child)
        if (!ended) progress.endRun(name)
        if (problem) failed.push(`${name}: ${problem}`)
        next()
      }
      child.on('error', (e) => finish(`could not start a worker (${e.message})`))
      // 'close' waits for stdout/stderr to drain, so the last lines are forwarded first.
      child.on('close', (code, signal) =>
        finish(code === 0 ? null : `${lastLine || 'worker failed'} (exit ${code ?? signal})`),
      )
    }
    next()
  })
}
