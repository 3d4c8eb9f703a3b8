import {
  type CommandIo,
  checkOutputDir,
  countParams,
  disposeModel,
  initModel,
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
  checkOutputDir(args.out, args.force ?? false)
  const model = initModel(spec, args.seed)
  try {
    await saveCheckpoint(args.out, model, { meta: { createdBy: 'sprout init', seed: args.seed } })
  } finally {
    disposeModel(model)
  }
  const params = countParams(spec)
  io.out(
    `initialised ${specSummary(spec)} (${params.toLocaleString('en-US')} parameters, seed ${args.seed}) -> ${args.out}`,
  )
  if (args.json) io.out(JSON.stringify({ out: args.out, spec, parameters: params, seed: args.seed }))
}
