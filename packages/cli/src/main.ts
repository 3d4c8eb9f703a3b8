import { runBenchCompare, runBenchReport, runThroughput } from '@sprout/bench'
import { type CommandIo, describeBackend, isSproutError, processIo, selectBackend } from '@sprout/core'
import { runConvert, runForward } from '@sprout/interop'
import { runEval, runTrain } from '@sprout/trainer'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { runGrow } from './commands/grow.js'
import { runInit } from './commands/init.js'
import { runList } from './commands/list.js'
import { builtinRegistry, resolveMethod } from './methods.js'

/** Exit codes: 0 ok, 1 a user error Sprout detected, 2 bad command-line usage, 70 an internal bug. */
export const EXIT = { ok: 0, error: 1, usage: 2, internal: 70 } as const

function integer(name: string) {
  return (value: string) => {
    const n = Number(value)
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`)
    return n
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value]

async function withBackend(flag: string | undefined, io: CommandIo): Promise<void> {
  const choice = await selectBackend(flag)
  io.err(`sprout: ${describeBackend(choice)}`)
}

export function buildProgram(io: CommandIo): Command {
  const registry = builtinRegistry()
  const program = new Command('sprout')
    .description('Grow pretrained transformers into larger ones, and measure the compute it saves')
    .version('0.1.0')
    .addOption(
      new Option(
        '--backend <name>',
        'tensorflow | native | cpu (default: fastest available; env SPROUT_BACKEND)',
      ),
    )
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride()
    .showHelpAfterError('(run `sprout --help` for usage)')

  program
    .command('init')
    .description('write a randomly initialised checkpoint for a spec')
    .requiredOption('--spec <file>', 'TransformerSpec JSON file')
    .requiredOption('--out <dir>', 'checkpoint directory to create')
    .option('--seed <n>', 'initialisation seed', integer('--seed'), 1)
    .option('--force', 'overwrite an existing checkpoint in --out')
    .option('--json', 'print a JSON summary as the last line')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      await runInit(opts, io)
    })

  program
    .command('grow')
    .description('grow a checkpoint into a larger target spec with a growth method')
    .requiredOption(
      '--method <name|path|package>',
      'built-in method name, or a module that default-exports a GrowthOperator',
    )
    .requiredOption('--from <dir>', 'source checkpoint directory')
    .requiredOption('--target <file>', 'target TransformerSpec JSON file')
    .requiredOption('--out <dir>', 'checkpoint directory for the grown model')
    .option(
      '--option <key=value>',
      'method option (repeatable; values parsed as JSON when possible)',
      collect,
      [],
    )
    .option(
      '--data <name|path>',
      'data for methods that learn: moby-dick, sotu, mnist, or a text file/folder',
    )
    .option(
      '--batch-size <n>',
      'batch size of the operator-fitting batches (default 8)',
      integer('--batch-size'),
    )
    .option('--seed <n>', 'seed for the method and data order', integer('--seed'), 1)
    .option('--verify', 'compare source and grown logits on random inputs (maxAbsLogitDiff)')
    .option('--force', 'overwrite an existing checkpoint in --out')
    .option('--json', 'print the growth report as one JSON object on the last line')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      await runGrow(opts, registry, io)
    })

  program
    .command('train')
    .description('train a model from a run config (or resume an interrupted run)')
    .option(
      '--config <file>',
      'run config JSON: spec or from, data, optimizer, schedule, budget, eval cadence',
    )
    .option('--resume <dir>', 'continue the run in DIR from its last checkpoint')
    .option('--out <dir>', 'directory for checkpoints and metrics.jsonl')
    .option('--steps <n>', 'override the number of steps', integer('--steps'))
    .option('--checkpoint-every <k>', 'write a checkpoint every K steps', integer('--checkpoint-every'))
    .option('--seed <n>', 'override the seed', integer('--seed'))
    .option('--json', 'print {step, trainLoss, valLoss, tokens, flops, seconds} as the last line')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      await runTrain(opts, io)
    })

  program
    .command('eval')
    .description('validation loss and perplexity (accuracy for images) of a checkpoint')
    .requiredOption('--checkpoint <dir>', 'a Sprout checkpoint')
    .requiredOption('--data <name|path>', 'moby-dick, sotu, mnist, fashion-mnist, or a text file/folder')
    .option('--batches <n>', 'validation batches to average (default 16)', integer('--batches'))
    .option('--json', 'print {valLoss, perplexity} or {valLoss, accuracy} as the last line')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      await runEval(opts, io)
    })

  const bench = program.command('bench').description('compare growth methods against training from scratch')
  bench
    .command('compare')
    .description('train scratch and every method on a suite; write results.json, report.md and plots')
    .requiredOption('--suite <name|file>', 'smoke, quick, vit, paper, or a suite JSON file')
    .option('--methods <list>', 'comma-separated methods (default: all installed, plus the suite variants)')
    .option('--out <dir>', 'output directory (default runs/bench-<suite>)')
    .option('--resume', 'continue an interrupted comparison in --out, keeping finished methods')
    .option('--jobs <n>', 'methods trained at once, each in its own process (default 1)', integer('--jobs'))
    .option(
      '--plugin <path|package>',
      'also compare a method from a plugin folder, file or installed package (repeatable)',
      collect,
      [],
    )
    .option('--json', 'print a JSON summary as the last line')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      // Workers re-run this command line, so they load the same plugins.
      for (const ref of opts.plugin as string[]) {
        const op = await resolveMethod(ref, registry)
        if (!registry.has(op.name)) registry.register(op)
      }
      await runBenchCompare(opts, registry.list(), io)
    })
  bench
    .command('throughput')
    .description('train a GPT-2-style decoder on random tokens and print seconds per step and tokens/s')
    .option('--layers <n>', 'layers', integer('--layers'), 2)
    .option('--d-model <n>', 'model width', integer('--d-model'), 128)
    .option('--heads <n>', 'attention heads', integer('--heads'), 4)
    .option('--seq-len <n>', 'tokens per sequence', integer('--seq-len'), 64)
    .option('--batch <n>', 'sequences per step', integer('--batch'), 8)
    .option('--vocab <n>', 'vocabulary size', integer('--vocab'), 256)
    .option('--steps <n>', 'timed steps (after one warm-up step)', integer('--steps'), 10)
    .option('--json', 'print {backend, params, stepSeconds, tokensPerSecond} as one JSON line')
    .action(async (opts) => {
      await runThroughput({ ...opts, backend: program.opts().backend }, io)
    })
  bench
    .command('report')
    .description('re-render report.md and the plots of a comparison directory')
    .argument('<dir>', 'a directory written by `sprout bench compare`')
    .action(async (dir) => {
      await withBackend(program.opts().backend, io)
      await runBenchReport({ dir }, io)
    })

  program
    .command('convert')
    .description('convert between Hugging Face safetensors directories and Sprout checkpoints')
    .option('--from <format>', 'read this format into a Sprout checkpoint (hf)')
    .option('--to <format>', 'write a Sprout checkpoint in this format (hf)')
    .requiredOption('--in <dir>', 'directory to read')
    .requiredOption('--out <dir>', 'directory to write')
    .option('--dtype <type>', '--to hf: f32 (default), f16 or bf16')
    .option('--arch <name>', '--to hf: gpt2, llama, bert or vit (default: inferred from the spec)')
    .option('--shard-mb <n>', '--to hf: shard weights into files of at most N MB', integer('--shard-mb'))
    .option('--force', 'overwrite an existing directory in --out')
    .option('--json', 'print a JSON summary as the last line')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      await runConvert(opts, io)
    })

  program
    .command('forward')
    .description('run a checkpoint on token ids or images and save the logits (to compare with PyTorch)')
    .requiredOption('--checkpoint <dir>', 'a Sprout checkpoint or a Hugging Face directory')
    .option('--tokens <file>', 'JSON array of token-id sequences (text models)')
    .option('--images <file>', 'JSON array of images [H][W][C] (vit models)')
    .requiredOption('--out <file>', 'safetensors file for the logits')
    .option('--json', 'print a JSON summary as the last line')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      await runForward(opts, io)
    })

  program
    .command('list')
    .description('list installed growth methods and their capabilities')
    .option('--json', 'machine-readable output')
    .action((opts) => runList(registry, opts.json ?? false, io))

  return program
}

/** Runs the CLI; returns the exit code. User errors print one line, never a stack trace. */
export async function main(argv: string[], io: CommandIo = processIo): Promise<number> {
  const program = buildProgram(io)
  try {
    await program.parseAsync(argv, { from: 'user' })
    return EXIT.ok
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return EXIT.ok
      return EXIT.usage
    }
    if (isSproutError(e)) {
      io.err(`sprout: error: ${e.message}`)
      return e.code === 'USAGE' ? EXIT.usage : EXIT.error
    }
    const err = e as Error
    io.err(`sprout: internal error: ${err?.message ?? String(e)}`)
    io.err(
      process.env.SPROUT_DEBUG
        ? String(err?.stack)
        : 'this is a bug in Sprout; rerun with SPROUT_DEBUG=1 for the stack trace and report it',
    )
    return EXIT.internal
  }
}
