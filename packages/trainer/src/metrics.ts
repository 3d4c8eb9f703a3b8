// The metrics row lives apart from the loop that writes it, so the progress display can read
// its type without importing the loop (which imports the display).

/** One line of metrics.jsonl. */
export interface MetricsRow {
  step: number
  tokens: number
  flops: number
  loss: number
  valLoss: number | null
  valAccuracy?: number | null
  lr: number
  gradNorm: number
  tokensPerSecond: number
  seconds: number
  /** Growth stage of a progressive run (0 before the first growth); absent in single-stage runs. */
  stage?: number
}
