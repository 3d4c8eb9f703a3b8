import { readFileSync } from 'node:fs'
import { runBenchCompare, runBenchReport, runThroughput } from '@sprout/bench'
import {
  describeBackend,
  fsError,
  isSproutError,
  parseByteSize,
  processIo,
  SproutError,
  selectBackend,
  setRuntimeLimits,
} from '@sprout/core'
import { runConvert, runForward } from '@sprout/interop'
import { runEval, runTrain } from '@sprout/trainer'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { CLI_BACKENDS, registerCliBackends } from './backends.js'
import { runDoctor } from './commands/doctor.js'
import { runGrow } from './commands/grow.js'
import { runInit } from './commands/init.js'
import { runList } from './commands/list.js'
import { type Io, jsonError, jsonRouting } from './io.js'
import { builtinRegistry, resolveMethod } from './methods.js'

/** Exit codes: 0 ok, 1 a user error Sprout detected, 2 bad command-line usage, 70 an internal bug. */
export const EXIT = { ok: 0, error: 1, usage: 2, internal: 70, interrupted: 130 } as const

function integer(name: string) {
  return (value: string) => {
    const n = Number(value)
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`)
    return n
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value]

/** An unknown `--backend` name is a command-line mistake (exit 2), like an unknown option. */
function checkBackendFlag(flag: string | undefined): void {
  const names = [...new Set([...CLI_BACKENDS.map((c) => c.name), 'cpu'])]
  if (flag !== undefined && !names.includes(flag))
    throw new SproutError('USAGE', `unknown backend "${flag}"; choose ${names.join(', ')}`)
}

async function withBackend(flag: string | undefined, io: Io): Promise<void> {
  checkBackendFlag(flag)
  const choice = await selectBackend(flag, { candidates: CLI_BACKENDS })
  io.err(`sprout: ${describeBackend(choice)}`)
}

/** The CLI's version is its package's (dist/ and src/ both sit next to package.json). */
export const VERSION: string = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version

export function buildProgram(io: Io): Command {
  const registry = builtinRegistry()
  // Library code called by commands (bench throughput) selects among the same backends.
  registerCliBackends()
  const program = new Command('sprout')
    .description('Grow pretrained transformers into larger ones, and measure the compute it saves')
    .version(VERSION)
    .addOption(
      new Option(
        '--backend <name>',
        'tensorflow | native | cpu (default: fastest available; env SPROUT_BACKEND; `sprout doctor` says why)',
      ),
    )
    .addOption(
      new Option(
        '--memory-limit <size>',
        'refuse work estimated to need more memory (e.g. 16G, 512MiB, none; env SPROUT_MEMORY_LIMIT; default 90% of available memory)',
      ),
    )
    .option(
      '--allow-non-finite',
      'load weights holding NaN/Inf instead of refusing them (env SPROUT_ALLOW_NON_FINITE=1)',
    )
    // Set for every command run by this call (and reset: main() may run again in one process).
    .hook('preAction', () => {
      const { memoryLimit, allowNonFinite } = program.opts<{
        memoryLimit?: string
        allowNonFinite?: boolean
      }>()
      setRuntimeLimits({
        memoryLimit: memoryLimit === undefined ? undefined : parseByteSize(memoryLimit, '--memory-limit'),
        allowNonFinite: allowNonFinite ? true : undefined,
      })
    })
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
    .option('--json', 'print a JSON summary as the only stdout output')
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
    .option('--json', 'print the growth report as the only stdout output (one JSON object)')
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
    .option('--json', 'print {step, trainLoss, valLoss, tokens, flops, seconds} as the only stdout output')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      // Growth stages in the config name their methods like --method does (built-in, path or package).
      await runTrain({ ...opts, resolveMethod: (ref: string) => resolveMethod(ref, registry) }, io)
    })

  program
    .command('eval')
    .description('validation loss and perplexity (accuracy for images) of a checkpoint')
    .requiredOption('--checkpoint <dir>', 'a Sprout checkpoint')
    .requiredOption('--data <name|path>', 'moby-dick, sotu, mnist, fashion-mnist, or a text file/folder')
    .option('--batches <n>', 'validation batches to average (default 16)', integer('--batches'))
    .option('--json', 'print {valLoss, perplexity} or {valLoss, accuracy} as the only stdout output')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      await runEval(opts, io)
    })

  const bench = program.command('bench').description('compare growth methods against training from scratch')
  bench
    .command('compare')
    .description('train scratch and every method on a suite; write results.json, report.md and plots')
    .requiredOption('--suite <name|file>', 'smoke, quick, text, vit, paper, or a suite JSON file')
    .option('--methods <list>', 'comma-separated methods (default: all installed, plus the suite variants)')
    .option('--out <dir>', 'output directory (default runs/bench-<suite>)')
    .option('--resume', 'continue an interrupted comparison in --out, keeping finished runs')
    .option(
      '--seeds <n>',
      "repetitions with different seeds (default: the suite's; 3 for built-in suites but smoke)",
      integer('--seeds'),
    )
    .option(
      '--budgets <list>',
      "fractions of the target steps to compare at, e.g. 0.25,0.5,1 (default: the suite's)",
    )
    .option('--jobs <n>', 'runs trained at once, each in its own process (default 1)', integer('--jobs'))
    .option(
      '--plugin <path|package>',
      'also compare a method from a plugin folder, file or installed package (repeatable)',
      collect,
      [],
    )
    .option('--json', 'print a JSON summary as the only stdout output')
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
    .option('--json', 'print {backend, params, stepSeconds, tokensPerSecond} as the only stdout output')
    .action(async (opts) => {
      checkBackendFlag(program.opts().backend)
      await runThroughput({ ...opts, backend: program.opts().backend }, io)
    })
  bench
    .command('report')
    .description('re-render report.md and the plots of a comparison directory')
    .argument('<dir>', 'a directory written by `sprout bench compare`')
    .action(async (dir) => {
      await withBackend(program.opts().backend, io)
      await runBenchReport({ dir }, io, registry.list())
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
    .option('--json', 'print a JSON summary as the only stdout output')
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
    .option('--json', 'print a JSON summary as the only stdout output')
    .action(async (opts) => {
      await withBackend(program.opts().backend, io)
      await runForward(opts, io)
    })

  program
    .command('list')
    .description('list installed growth methods and their capabilities')
    .option('--json', 'print the methods as one JSON array')
    .action((opts) => runList(registry, opts.json ?? false, io))

  program
    .command('doctor')
    .description('which backend Sprout would pick, why faster ones were passed over, and how to fix them')
    .option('--json', 'print the report as one JSON object')
    .action(async (opts) => {
      const forced = program.opts().backend ?? (process.env.SPROUT_BACKEND || undefined)
      await runDoctor(opts, CLI_BACKENDS, forced, io)
    })

  return program
}

/** `--json` anywhere before a `--` separator: stdout must then hold one JSON document only. */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--')
  const args = end === -1 ? argv : argv.slice(0, end)
  // Help and version are text for people, whatever else is on the line.
  if (args.some((a) => ['--help', '-h', '--version', '-V', 'help'].includes(a))) return false
  return args.includes('--json')
}

/**
 * Runs the CLI; returns the exit code (EXIT). User errors print one line, never a stack trace.
 * Under `--json`, stdout holds exactly one JSON document, the result or
 * `{ "error": { "code", "message" } }`, and every human line goes to stderr.
 */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  if (!wantsJson(argv)) return run(argv, io, io)
  const routing = jsonRouting(io)
  const code = await run(argv, routing.io, io)
  const doc = routing.result()
  if (code !== EXIT.ok) return code
  if (doc !== undefined) {
    io.out(doc)
    return code
  }
  // A bench worker reports to its parent over IPC, not with a document of its own.
  if (process.env.SPROUT_BENCH_WORKER) return code
  io.out(
    jsonError('INTERNAL', 'the command printed no JSON result; this is a bug in Sprout, please report it'),
  )
  return EXIT.internal
}

async function run(argv: string[], io: Io, raw: Io): Promise<number> {
  const json = io !== raw
  const fail = (code: string, message: string) => {
    if (json) raw.out(jsonError(code, message))
  }
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
      fail('USAGE', e.message.replace(/^error: /, ''))
      return EXIT.usage
    }
    if (isSproutError(e)) {
      io.err(`sprout: error: ${e.message}`)
      fail(e.code, e.message)
      return e.code === 'USAGE' ? EXIT.usage : e.code === 'INTERRUPTED' ? EXIT.interrupted : EXIT.error
    }
    // A file-system error no command translated (a full disk mid-run, ...): still one line, exit 1.
    const fs = fsError(e)
    if (fs) {
      io.err(`sprout: error: ${fs.message}`)
      fail(fs.code, fs.message)
      return EXIT.error
    }
    const err = e as Error
    io.err(`sprout: internal error: ${err?.message ?? String(e)}`)
    io.err(
      process.env.SPROUT_DEBUG
        ? String(err?.stack)
        : 'this is a bug in Sprout; rerun with SPROUT_DEBUG=1 for the stack trace and report it',
    )
    fail('INTERNAL', err?.message ?? String(e))
    return EXIT.internal
  }
}
