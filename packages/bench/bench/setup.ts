/**
 * What every benchmark script in this folder starts with: numeric knobs from the environment,
 * the backend (native when built) and the mean validation loss over fixed batches (sources are
 * pretrained with the trainer's `pretrainModel`). One copy here, so the scripts hold only what they measure.
 */
import {
  type BackendChoice,
  type Batch,
  backendFromModule,
  computeLoss,
  type ForwardOptions,
  type Model,
  selectBackend,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/** A number from the environment variable `name`, or `fallback` when it is unset or empty. */
export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name]
  if (!raw) return fallback
  const value = Number(raw)
  if (!Number.isFinite(value)) throw new Error(`${name}=${raw} is not a number; set it to one or unset it`)
  return value
}

/**
 * Selects the backend: `preferred` (else SPROUT_BACKEND, else the fastest available), with the
 * native addon as the candidate beside tfjs's cpu.
 */
export function benchBackend(preferred?: string): Promise<BackendChoice> {
  return selectBackend(preferred, { candidates: [backendFromModule('native', '@sprout/backend-native')] })
}

/** Mean cross-entropy of `model` over `batches`. */
export function meanValLoss(model: Model, batches: Batch[], options?: ForwardOptions): number {
  let sum = 0
  for (const b of batches) sum += tf.tidy(() => computeLoss(model, b, options).ce.dataSync()[0])
  return sum / batches.length
}
