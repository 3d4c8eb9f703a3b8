/**
 * Typed errors. Every error a user can cause is a SproutError with a stable `code`
 * and a message that names the problem and says what to do next.
 */
export type SproutErrorCode =
  | 'SPEC_INVALID'
  | 'PARAMS_INVALID'
  | 'INPUT_INVALID'
  | 'CHECKPOINT_NOT_FOUND'
  | 'CHECKPOINT_INVALID'
  | 'CHECKPOINT_TRUNCATED'
  | 'CHECKPOINT_HEADER'
  | 'CHECKPOINT_OFFSETS'
  | 'CHECKPOINT_DTYPE'
  /** Weights holding NaN or Inf (refused at load unless allowed). */
  | 'WEIGHTS_NON_FINITE'
  /** The work would need more memory than the limit (estimated before allocating). */
  | 'TOO_LARGE'
  | 'GROWTH_UNSUPPORTED'
  | 'GROWTH_OPTIONS'
  | 'METHOD_UNKNOWN'
  | 'METHOD_DUPLICATE'
  | 'METHOD_INVALID'
  | 'BACKEND_UNAVAILABLE'
  | 'DATA_INVALID'
  | 'TRAINING_DIVERGED'
  | 'USAGE'
  | 'IO'
  /** The user stopped a long command (Ctrl-C); its finished work is kept for --resume. */
  | 'INTERRUPTED'

export class SproutError extends Error {
  readonly code: SproutErrorCode
  constructor(code: SproutErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SproutError'
    this.code = code
  }
}

/** A growth operator refuses a (source, target, options) combination it cannot handle. */
export class GrowthError extends SproutError {
  constructor(message: string, code: SproutErrorCode = 'GROWTH_UNSUPPORTED') {
    super(code, message)
    this.name = 'GrowthError'
  }
}

export function isSproutError(e: unknown): e is SproutError {
  return (
    e instanceof Error &&
    typeof (e as SproutError).code === 'string' &&
    e.name.endsWith('Error') &&
    'code' in e
  )
}
