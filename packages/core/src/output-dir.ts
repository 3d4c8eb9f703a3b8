import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { SproutError } from './errors.js'

// One mechanism for every output folder Sprout writes (checkpoints, grown models, Hugging Face
// exports, training runs). A folder NAME is written as hidden siblings in its parent:
//   .NAME.tmp-PID   being written (incomplete: always debris once PID is gone)
//   .NAME.new-PID   complete and flushed, not yet in place
//   .NAME.old-PID   the previous NAME, moved aside while the new one takes its name
//   .NAME.lock      the PID of the one process allowed to write NAME
// Replacing is rename NAME -> .old, rename .new -> NAME, remove .old, so at every instant the old
// or the new complete folder exists under NAME or under a hidden name the next writer (or reader)
// recognises: `recoverOutput` rolls back a write whose folder was not yet in place (restoring the
// old one), finishes one that was, and removes the rest.

type Log = (line: string) => void

const STAGES = ['tmp', 'new', 'old'] as const
type Stage = (typeof STAGES)[number]

const hidden = (target: string, stage: Stage | 'lock', pid?: number) =>
  join(dirname(target), `.${basename(target)}.${stage}${pid === undefined ? '' : `-${pid}`}`)

/** The lock file of an output folder (a hidden sibling, so it survives the folder's swaps). */
export const lockPathOf = (dir: string): string => hidden(resolve(dir), 'lock')

// ---------------------------------------------------------------------------------------------
// Test hook: SPROUT_TEST_HOOK="POINT[#N]:kill|stop" makes the process SIGKILL (or SIGSTOP) itself
// the N-th time (default 1st) it reaches POINT, so tests can die at each step of a write:
//   locked   the lock is held, nothing written yet
//   written  the temporary folder is complete (before it is flushed and renamed to .new)
//   ready    renamed to .new-PID (before the old folder, if any, is moved aside)
//   hidden   the old folder is at .old-PID and NAME does not exist (before .new takes its name)
//   placed   the new folder is NAME (before the old one is removed)
//   cleaned  the old folder is removed
// ---------------------------------------------------------------------------------------------
const hookCounts = new Map<string, number>()
export function testHook(point: string): void {
  const spec = process.env.SPROUT_TEST_HOOK
  if (!spec) return
  const m = /^([a-z]+)(?:#(\d+))?:(kill|stop)$/.exec(spec)
  if (!m || m[1] !== point) return
  const n = (hookCounts.get(point) ?? 0) + 1
  hookCounts.set(point, n)
  if (n === Number(m[2] ?? 1)) process.kill(process.pid, m[3] === 'kill' ? 'SIGKILL' : 'SIGSTOP')
}

// ---------------------------------------------------------------------------------------------
// File-system errors as one line naming the path and the cause
// ---------------------------------------------------------------------------------------------
const CAUSES: Record<string, string> = {
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device (disk full)',
  EDQUOT: 'the disk quota is exhausted',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder, not a file',
  EEXIST: 'something else already exists there',
  ENOENT: 'a folder on the way does not exist',
  ENAMETOOLONG: 'the name is too long',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  EIO: 'an input/output error of the device',
  ENOTEMPTY: 'the folder is not empty',
  EBUSY: 'it is busy (in use or a mount point)',
  ELOOP: 'too many symbolic links',
  EXDEV: 'it is on another file system',
}

/** The first ancestor of `path` (or `path` itself) that exists and is not a folder. */
function fileOnTheWay(path: string): string | null {
  let p = resolve(path)
  const chain: string[] = []
  for (;;) {
    chain.unshift(p)
    const up = dirname(p)
    if (up === p) break
    p = up
  }
  for (const c of chain) {
    try {
      if (!statSync(c).isDirectory()) return c
    } catch {
      return null
    }
  }
  return null
}

/**
 * A Node file-system error (errno code and path) as a SproutError('IO') whose one line names the
 * path and the cause; null for anything else. `path` overrides the error's own path (e.g. the
 * --out the user named rather than a hidden temporary beside it).
 */
export function fsError(e: unknown, path?: string): SproutError | null {
  // A SproutError('IO') that wraps one (writeFileAtomic's) is re-described for `path`.
  if (e instanceof SproutError && e.code === 'IO' && e.cause instanceof Error) return fsError(e.cause, path)
  const err = e as NodeJS.ErrnoException
  if (!(e instanceof Error) || typeof err.code !== 'string' || !(err.code in CAUSES)) return null
  const where = path ?? err.path ?? '(unknown path)'
  if (err.code === 'ENOTDIR' || (err.code === 'EEXIST' && err.syscall === 'mkdir')) {
    const file = fileOnTheWay(where) ?? (err.path ? fileOnTheWay(err.path) : null)
    if (file) return new SproutError('IO', `cannot write ${where}: ${file} is a file, not a folder`)
  }
  // mkdir -p on a read-only file system reports ENOENT (the first missing folder): ask the
  // deepest folder that exists why it cannot be written.
  if (err.code === 'ENOENT' && err.syscall === 'mkdir') {
    const why = whyNotWritable(err.path ?? where)
    if (why) return new SproutError('IO', `cannot write ${where}: ${why}`, { cause: e })
  }
  return new SproutError('IO', `cannot write ${where}: ${CAUSES[err.code]}`, { cause: e })
}

function whyNotWritable(path: string): string | null {
  let p = resolve(path)
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p)
  try {
    accessSync(p, constants.W_OK)
    return null
  } catch (e) {
    return CAUSES[(e as NodeJS.ErrnoException).code ?? ''] ?? null
  }
}

/** Runs `fn`, turning file-system errors into one-line SproutErrors about `path`. */
export function withFsErrors<T>(path: string, fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    throw fsError(e, path) ?? e
  }
}

/** Refuses an output path that cannot name a folder: empty, or the root of the file system. */
export function checkOutputPath(dir: string, flag = '--out'): string {
  if (typeof dir !== 'string' || dir.trim() === '')
    throw new SproutError('INPUT_INVALID', `${flag} is empty; name the folder to write`)
  const target = resolve(dir)
  if (dirname(target) === target)
    throw new SproutError(
      'INPUT_INVALID',
      `${flag} ${dir} is the root of the file system; name a folder in it`,
    )
  return target
}

// ---------------------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------------------

/** True when a process with this id is running (EPERM: it runs as another user). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readPid(path: string): number | null {
  try {
    const n = Number(readFileSync(path, 'utf8').trim())
    return Number.isInteger(n) && n > 0 ? n : null
  } catch {
    return null
  }
}

/** Creates `path` holding our PID, atomically with its content (link of a written file); false if it exists. */
function tryCreateLock(path: string): boolean {
  const mine = `${path}-${process.pid}`
  writeFileSync(mine, `${process.pid}\n`)
  try {
    linkSync(mine, path)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw e
  } finally {
    rmSync(mine, { force: true })
  }
}

export interface OutputLock {
  readonly dir: string
  release(): void
}

// Locks this process holds, by folder, with a count: saveCheckpoint inside a command that already
// locked the same --out takes it again without refusing itself.
const held = new Map<string, number>()
const pendingNotes = new Map<string, string>()

/**
 * Takes the lock of output folder `dir` (creating its parent folders). Another running process
 * holding it: one-line SproutError naming its PID. A lock left by a dead process is taken over,
 * with a one-line note through `log`.
 */
export function lockOutput(dir: string, log: Log = () => {}): OutputLock {
  const target = checkOutputPath(dir)
  const path = hidden(target, 'lock')
  const release = () => {
    const n = (held.get(target) ?? 1) - 1
    if (n > 0) {
      held.set(target, n)
      return
    }
    held.delete(target)
    if (readPid(path) === process.pid) rmSync(path, { force: true })
  }
  const count = held.get(target)
  if (count !== undefined) {
    held.set(target, count + 1)
    return { dir: target, release: once(release) }
  }
  withFsErrors(dir, () => mkdirSync(dirname(target), { recursive: true }))
  for (let attempt = 0; ; attempt++) {
    if (withFsErrors(dir, () => tryCreateLock(path))) break
    const owner = readPid(path)
    if (owner !== null && owner !== process.pid && processAlive(owner))
      throw new SproutError(
        'IO',
        `${dir} is being written by process ${owner} (lock ${path}); wait for it to finish or stop it`,
      )
    if (attempt >= 3) throw new SproutError('IO', `cannot take the lock ${path}: it keeps changing`)
    // Stale: move it aside (atomic, so two processes cannot both remove it), then check that what
    // was moved is the dead owner's lock and not one a third process has just created.
    const grave = `${path}.stale-${process.pid}`
    try {
      renameSync(path, grave)
    } catch {
      continue
    }
    if (readPid(grave) !== owner) {
      try {
        linkSync(grave, path)
      } catch {}
      rmSync(grave, { force: true })
      continue
    }
    rmSync(grave, { force: true })
    const note = `took over the lock of process ${owner ?? '(unknown)'}, which is no longer running`
    // With leftovers to recover, the note joins recoverOutput's line (one line per recovery).
    if (leftovers(target).size > 0) pendingNotes.set(target, note)
    else log(`${dir}: ${note}`)
  }
  held.set(target, 1)
  testHook('locked')
  return { dir: target, release: once(release) }
}

function once(fn: () => void): () => void {
  let done = false
  return () => {
    if (done) return
    done = true
    fn()
  }
}

// ---------------------------------------------------------------------------------------------
// Recovery
// ---------------------------------------------------------------------------------------------

/** Leftovers of writes to `target`: hidden siblings by PID (our own only when `includeOwn`). */
function leftovers(target: string): Map<number, Set<Stage>> {
  const prefix = `.${basename(target)}.`
  const byPid = new Map<number, Set<Stage>>()
  let names: string[] = []
  try {
    names = readdirSync(dirname(target))
  } catch {
    return byPid
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    const m = /^(tmp|new|old)-(\d+)$/.exec(name.slice(prefix.length))
    if (!m) continue
    const pid = Number(m[2])
    const set = byPid.get(pid) ?? new Set<Stage>()
    set.add(m[1] as Stage)
    byPid.set(pid, set)
  }
  return byPid
}

/**
 * Completes or rolls back interrupted writes to output folder `dir` and removes their debris;
 * returns (and logs) one line saying what was done, or null when there was nothing. Call it with
 * the folder's lock held: every leftover then belongs to a process that is gone.
 */
export function recoverOutput(dir: string, log: Log = () => {}): string | null {
  const target = resolve(dir)
  const done: string[] = []
  for (const [pid, stages] of [...leftovers(target)].sort((a, b) => a[0] - b[0])) {
    if (pid !== process.pid && processAlive(pid) && !held.has(target)) continue
    const at = (s: Stage) => hidden(target, s, pid)
    if (stages.has('tmp')) {
      rmSync(at('tmp'), { recursive: true, force: true })
      done.push(`removed the unfinished write of process ${pid}`)
    }
    // A write that had not put its folder in place is rolled back, so an interrupted command
    // has no effect and re-running it needs no --force; once placed, it only finishes cleaning up.
    if (stages.has('new')) {
      rmSync(at('new'), { recursive: true, force: true })
      done.push(`dropped the unfinished output of process ${pid}`)
    }
    if (stages.has('old')) {
      if (existsSync(target)) {
        rmSync(at('old'), { recursive: true, force: true })
        done.push(`removed the previous version left by process ${pid}`)
      } else {
        renameSync(at('old'), target)
        done.push(`restored the previous version that process ${pid} had moved aside`)
      }
    }
  }
  const note = pendingNotes.get(target)
  pendingNotes.delete(target)
  if (done.length === 0) {
    if (note) log(`${dir}: ${note}`)
    return null
  }
  if (note) done.unshift(note)
  fsyncDir(dirname(target))
  const line = `${dir}: recovered from an interrupted write: ${done.join('; ')}`
  log(line)
  return line
}

/** True when an interrupted write left something for `recoverOutput` (e.g. for a reader to mention). */
export function hasLeftovers(dir: string): boolean {
  return leftovers(resolve(dir)).size > 0
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

function fsyncPath(path: string, flags: string): void {
  let fd: number
  try {
    fd = openSync(path, flags)
  } catch {
    return // some file systems refuse to open folders; nothing to flush then
  }
  try {
    fsyncSync(fd)
  } catch (e) {
    // EINVAL: the file system does not support fsync on this kind of file.
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e
  } finally {
    closeSync(fd)
  }
}

function fsyncDir(path: string): void {
  fsyncPath(path, 'r')
}

/** Flushes every file and folder under `dir` to the device, so a rename never publishes unwritten data. */
function fsyncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    if (entry.isDirectory()) fsyncTree(p)
    else if (entry.isFile()) fsyncPath(p, 'r+')
  }
  fsyncDir(dir)
}

/**
 * One write of output folder `dir`: `tmp` is an empty hidden sibling to fill; `commit()` flushes
 * it and puts it in place of `dir` (replacing what is there); `abort()` removes it. Holds the
 * folder's lock (taken again if the caller holds it) from construction to commit/abort, and
 * recovers leftovers of earlier writes first.
 */
export class OutputWriter {
  readonly target: string
  readonly tmp: string
  private readonly lock: OutputLock
  private finished = false

  constructor(
    readonly dir: string,
    log: Log = () => {},
  ) {
    this.lock = lockOutput(dir, log)
    this.target = this.lock.dir
    this.tmp = hidden(this.target, 'tmp', process.pid)
    try {
      withFsErrors(dir, () => {
        recoverOutput(dir, log)
        rmSync(this.tmp, { recursive: true, force: true })
        mkdirSync(this.tmp)
      })
    } catch (e) {
      this.lock.release()
      throw e
    }
  }

  commit(): void {
    if (this.finished) throw new Error(`OutputWriter(${this.dir}) already finished`)
    this.finished = true
    const ready = hidden(this.target, 'new', process.pid)
    const old = hidden(this.target, 'old', process.pid)
    try {
      withFsErrors(this.dir, () => {
        testHook('written')
        fsyncTree(this.tmp)
        renameSync(this.tmp, ready)
        fsyncDir(dirname(this.target))
        testHook('ready')
        if (existsSync(this.target) || isDanglingLink(this.target)) {
          renameSync(this.target, old)
          testHook('hidden')
          renameSync(ready, this.target)
          fsyncDir(dirname(this.target))
          testHook('placed')
          rmSync(old, { recursive: true, force: true })
          testHook('cleaned')
        } else {
          renameSync(ready, this.target)
          fsyncDir(dirname(this.target))
          testHook('placed')
        }
      })
    } catch (e) {
      // Put back whatever the failed step left: the old folder if it was moved aside, no debris.
      try {
        if (!existsSync(this.target) && existsSync(old)) renameSync(old, this.target)
        rmSync(this.tmp, { recursive: true, force: true })
        rmSync(ready, { recursive: true, force: true })
        if (existsSync(this.target)) rmSync(old, { recursive: true, force: true })
      } catch {}
      throw e
    } finally {
      this.lock.release()
    }
  }

  abort(): void {
    if (this.finished) return
    this.finished = true
    try {
      rmSync(this.tmp, { recursive: true, force: true })
    } finally {
      this.lock.release()
    }
  }
}

function isDanglingLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink()
  } catch {
    return false
  }
}

/**
 * Writes output folder `dir` atomically: `write(tmp)` fills a hidden sibling folder, which then
 * replaces `dir` as described above. On any error nothing new is left behind and the old `dir`
 * (if any) is untouched; file-system errors become one line naming `dir` and the cause.
 */
export async function writeOutputDir(
  dir: string,
  write: (tmp: string) => void | Promise<void>,
  log?: Log,
): Promise<void> {
  const w = new OutputWriter(dir, log)
  try {
    await write(w.tmp)
  } catch (e) {
    w.abort()
    throw fsError(e, dir) ?? e
  }
  w.commit()
}

// ---------------------------------------------------------------------------------------------
// What a command does before its expensive work
// ---------------------------------------------------------------------------------------------

export interface PrepareOutputOptions {
  /** Replace an existing output of the same kind (--force). */
  force?: boolean
  /** The file that marks a folder as this kind of output (default sprout.json). */
  marker?: string
  /** What the output is, for messages (default "a checkpoint"). */
  what?: string
  /** What a folder of another kind is not, for messages (default "a Sprout checkpoint"). */
  kind?: string
  /** The flag the user named the folder with (default --out). */
  flag?: string
  log?: Log
}

/**
 * Takes the lock of `dir`, recovers interrupted writes, and refuses (one line, lock released)
 * a folder the output must not replace: a file, a non-empty folder of another kind, or without
 * `force` an existing output. The caller releases the returned lock when done.
 */
export function prepareOutput(dir: string, options: PrepareOutputOptions = {}): OutputLock {
  const flag = options.flag ?? '--out'
  checkOutputPath(dir, flag)
  const lock = lockOutput(dir, options.log)
  try {
    withFsErrors(dir, () => recoverOutput(dir, options.log))
    checkOutputContent(dir, options)
  } catch (e) {
    lock.release()
    throw e
  }
  return lock
}

/** checkOutputDir's rules for any kind of output (see prepareOutput). */
export function checkOutputContent(dir: string, options: PrepareOutputOptions = {}): void {
  const flag = options.flag ?? '--out'
  const marker = options.marker ?? 'sprout.json'
  const what = options.what ?? 'a checkpoint'
  if (!existsSync(dir)) {
    const file = fileOnTheWay(dir)
    if (file) throw new SproutError('IO', `${flag} ${dir}: ${file} is a file, not a folder`)
    return
  }
  if (!statSync(dir).isDirectory())
    throw new SproutError('IO', `${flag} ${dir} exists and is a file; choose another folder`)
  const entries = readdirSync(dir)
  if (entries.length === 0) return
  if (!entries.includes(marker))
    throw new SproutError(
      'IO',
      `${flag} ${dir} exists and is not ${options.kind ?? 'a Sprout checkpoint'}; choose another folder`,
    )
  if (!options.force)
    throw new SproutError('IO', `${flag} ${dir} already holds ${what}; pass --force to replace it`)
}
