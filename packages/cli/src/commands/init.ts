import {
  type CommandIo,
  countParams,
  disposeModel,
  initModel,
  prepareOutput,
  readSpecFile,
  saveCheckpoint,
  specSummary,
} from '@sprout/core'

export interface InitArgs {
  spec: string
  seed: number
  out: string
  force?: boolean
  json?: boolean
}

export async function runInit(args: InitArgs, io: CommandIo): Promise<void> {
  const spec = readSpecFile(args.spec)
  const log = (line: string) => io.err(line)
  const lock = prepareOutput(args.out, { force: args.force, log })
  try {
    const model = initModel(spec, args.seed)
    try {
      await saveCheckpoint(args.out, model, { meta: { createdBy: 'sprout init', seed: args.seed }, log })
    } finally {
      disposeModel(model)
    }
  } finally {
    lock.release()
  }
  const params = countParams(spec)
  io.out(
    `initialised ${specSummary(spec)} (${params.toLocaleString('en-US')} parameters, seed ${args.seed}) -> ${args.out}`,
  )
  if (args.json) io.out(JSON.stringify({ out: args.out, spec, parameters: params, seed: args.seed }))
}
