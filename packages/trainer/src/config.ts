import { dirname, isAbsolute, resolve } from 'node:path'
import { formatIssue, readJsonFile, SproutError } from '@sprout/core'
import { DATA_NAMES } from '@sprout/data'
import { z } from 'zod'
import { stageSchema } from './stages.js'

const positive = z.number().positive()
const count = z.number().int().positive()

/** A `sprout train --config` file. Relative paths are relative to the file. */
export const runConfigSchema = z
  .object({
    /** TransformerSpec file (or inline object) for a model trained from scratch. */
    spec: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
    /** A checkpoint directory to continue from (e.g. a grown model) instead of `spec`. */
    from: z.string().optional(),
    /** moby-dick, sotu, mnist, fashion-mnist, or a text file/folder. */
    data: z.string().default('moby-dick'),
    tokenizer: z.enum(['byte', 'char', 'gpt2']).default('byte'),
    batchSize: count.default(8),
    /** Tokens per example (default: the spec's maxSeqLen). */
    seqLen: count.optional(),
    steps: z.number().int().nonnegative().default(300),
    optimizer: z
      .object({
        kind: z.enum(['adamw', 'sgd']).default('adamw'),
        lr: positive.default(3e-3),
        beta1: z.number().min(0).lt(1).default(0.9),
        beta2: z.number().min(0).lt(1).default(0.99),
        eps: positive.default(1e-8),
        weightDecay: z.number().min(0).default(0.1),
        momentum: z.number().min(0).lt(1).default(0),
      })
      .strict()
      .default({
        kind: 'adamw',
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weightDecay: 0.1,
        momentum: 0,
      }),
    schedule: z
      .object({
        kind: z.enum(['cosine', 'linear', 'constant']).default('cosine'),
        warmupSteps: z.number().int().nonnegative().default(0),
        minLrRatio: z.number().min(0).max(1).default(0.1),
        decaySteps: count.optional(),
      })
      .strict()
      .default({ kind: 'cosine', warmupSteps: 0, minLrRatio: 0.1 }),
    clipNorm: positive.optional(),
    accumulate: count.default(1),
    evalEvery: count.default(50),
    evalBatches: count.default(8),
    checkpointEvery: count.optional(),
    budget: z
      .object({
        flops: positive.optional(),
        seconds: positive.optional(),
        targetValLoss: positive.optional(),
      })
      .strict()
      .default({}),
    /**
     * Parameters to keep fixed: "source" (everything but the new parameters a growth method
     * recorded, e.g. block expansion's inserted blocks), exact names or globs like "layers.*.attn.*".
     */
    freeze: z.array(z.string().min(1)).optional(),
    /** Seed for initialisation and data order. */
    seed: z.number().int().nonnegative().default(1),
    /** Growth stages of a progressive run, in order (`steps` stays the run's total). */
    stages: z.array(stageSchema).optional(),
  })
  .strict()

export type RunConfig = z.infer<typeof runConfigSchema>

/** Validates a config object; errors name the field, e.g. "config.optimizer.lr: ...". */
export function parseRunConfig(raw: unknown, where = 'config'): RunConfig {
  const r = runConfigSchema.safeParse(raw)
  if (!r.success) throw new SproutError('INPUT_INVALID', `${formatIssue(where, r.error.issues[0], raw)}`)
  const c = r.data
  if ((c.spec === undefined) === (c.from === undefined))
    throw new SproutError(
      'INPUT_INVALID',
      `${where}: give exactly one of "spec" (train from scratch) or "from" (a checkpoint)`,
    )
  return c
}

/** Reads a config file and makes its relative paths absolute (relative to the file). */
export function readRunConfig(path: string): RunConfig {
  const c = parseRunConfig(readJsonFile(path, 'config'), path)
  const base = dirname(resolve(path))
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p))
  const dataIsPath = !DATA_NAMES.includes(c.data)
  return {
    ...c,
    spec: typeof c.spec === 'string' ? abs(c.spec) : c.spec,
    from: c.from !== undefined ? abs(c.from) : undefined,
    data: dataIsPath ? abs(c.data) : c.data,
    stages: c.stages?.map((s) => ({
      ...s,
      target: typeof s.target === 'string' ? abs(s.target) : s.target,
      // A plugin given by path is relative to the config, like every other path in it.
      method: s.method.startsWith('.') ? abs(s.method) : s.method,
    })),
  }
}
