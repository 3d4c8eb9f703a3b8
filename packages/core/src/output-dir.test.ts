import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js'
import { canMountTmpfs, skipUnless } from './environment.js'
import { SproutError } from './errors.js'
import {
  checkOutputPath,
  fsError,
  lockOutput,
  lockPathOf,
  prepareOutput,
  recoverOutput,
  writeOutputDir,
} from './output-dir.js'
import { disposeParams, initModel } from './params.js'
import { parseSpec } from './spec.js'

const here = dirname(fileURLToPath(import.meta.url))
const repo = resolve(here, '../../..')
const root = mkdtempSync(join(tmpdir(), 'sprout-out-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

/** A PID that certainly belongs to no running process: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.pid'])
  return r.pid!
}

/** The folder's siblings other than itself: what an interrupted write left. */
const debris = (dir: string) => readdirSync(dirname(dir)).filter((n) => n !== basename(dir))

/** 'a'/'b' content of a complete test output (both files, same tag), or null if missing/incomplete. */
function contentOf(dir: string): string | null {
  if (!existsSync(dir)) return null
  const a = readFileSync(join(dir, 'a'), 'utf8')
  const b = readFileSync(join(dir, 'b'), 'utf8')
  expect(a).toBe(b)
  return a
}

type Exit = { code: number | null; signal: NodeJS.Signals | null; stderr: string }
function driver(dir: string, tag: string, hook?: string): Promise<Exit> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', join(here, 'testing/output-dir-driver.ts'), dir, tag],
    {
      cwd: repo,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, SPROUT_TEST_HOOK: hook ?? '' },
    },
  )
  let stderr = ''
  child.stderr!.on('data', (d) => {
    stderr += d
  })
  return new Promise((r) => child.on('exit', (code, signal) => r({ code, signal, stderr })))
}

/** The driver's write, in this process. */
const write = (dir: string, tag: string, log?: (line: string) => void) =>
  writeOutputDir(
    dir,
    (tmp) => {
      writeFileSync(join(tmp, 'a'), tag)
      writeFileSync(join(tmp, 'b'), tag)
    },
    log,
  )

describe('writeOutputDir', () => {
  it('writes a new folder and replaces an existing one, leaving no hidden siblings', async () => {
    const dir = join(root, 'plain', 'out')
    await writeOutputDir(dir, (tmp) => {
      writeFileSync(join(tmp, 'a'), 'one')
      writeFileSync(join(tmp, 'b'), 'one')
    })
    expect(contentOf(dir)).toBe('one')
    await writeOutputDir(dir, (tmp) => {
      writeFileSync(join(tmp, 'a'), 'two')
      writeFileSync(join(tmp, 'b'), 'two')
    })
    expect(contentOf(dir)).toBe('two')
    expect(debris(dir)).toEqual([])
  })

  it('a failing write leaves the old folder untouched and no debris', async () => {
    const dir = join(root, 'failing', 'out')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'a'), 'old')
    writeFileSync(join(dir, 'b'), 'old')
    await expect(
      writeOutputDir(dir, (tmp) => {
        writeFileSync(join(tmp, 'a'), 'new')
        throw new SproutError('INPUT_INVALID', 'boom')
      }),
    ).rejects.toThrow('boom')
    expect(contentOf(dir)).toBe('old')
    expect(debris(dir)).toEqual([])
  })

  // Each kill point of output-dir.ts's hook, for a first write and for a replacement: right
  // after the kill the folder is missing or complete (old or new); the next write recovers,
  // succeeds and leaves nothing hidden behind.
  const points = ['locked', 'written', 'ready', 'hidden', 'placed', 'cleaned']
  for (const replace of [false, true])
    for (const point of points) {
      if (!replace && (point === 'hidden' || point === 'cleaned')) continue // no old folder to move
      it(`SIGKILL at "${point}" ${replace ? 'while replacing' : 'on a first write'}: complete or absent, then recovered`, async () => {
        const dir = join(root, `kill-${replace}-${point}`, 'out')
        if (replace) await write(dir, 'old')
        const killed = await driver(dir, 'new', `${point}:kill`)
        expect(killed.signal).toBe('SIGKILL')
        const after = contentOf(dir)
        // The name is empty only before a first write is placed and between a swap's two renames.
        const placed = point === 'placed' || point === 'cleaned'
        expect(after).toBe(placed ? 'new' : replace && point !== 'hidden' ? 'old' : null)
        // Recovery alone (what a reader does) yields a complete folder where one existed.
        const lock = lockOutput(dir)
        const line = recoverOutput(dir)
        lock.release()
        if (point === 'hidden')
          expect(line).toMatch(/restored the previous version that process \d+ had moved aside/)
        if (point === 'ready') expect(line).toMatch(/dropped the unfinished output of process \d+/)
        // Rolled back unless the new folder was already in place.
        expect(contentOf(dir)).toBe(placed ? 'new' : replace ? 'old' : null)
        expect(debris(dir)).toEqual([])
        // A re-run (this process: another PID) succeeds without any manual cleanup.
        await write(dir, 'again')
        expect(contentOf(dir)).toBe('again')
        expect(debris(dir)).toEqual([])
      })
    }

  it('a re-run recovers leftovers itself and says so in one line', async () => {
    const dir = join(root, 'rerun', 'out')
    await write(dir, 'old')
    expect((await driver(dir, 'new', 'hidden:kill')).signal).toBe('SIGKILL')
    const lines: string[] = []
    await write(dir, 'again', (l) => lines.push(l))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(
      /out: recovered from an interrupted write: took over the lock of process \d+, which is no longer running; dropped the unfinished output of process \d+; restored the previous version/,
    )
    expect(contentOf(dir)).toBe('again')
    expect(debris(dir)).toEqual([])
  })
})

describe('recoverOutput', () => {
  const prepare = (name: string, layout: Record<string, string>) => {
    const parent = join(root, 'layouts', name)
    mkdirSync(parent, { recursive: true })
    for (const [n, tag] of Object.entries(layout)) {
      mkdirSync(join(parent, n))
      writeFileSync(join(parent, n, 'a'), tag)
      writeFileSync(join(parent, n, 'b'), tag)
    }
    return join(parent, 'out')
  }

  it('restores the old folder when the new one was never completed', () => {
    const pid = deadPid()
    const dir = prepare('rollback', { [`.out.old-${pid}`]: 'old', [`.out.tmp-${pid}`]: 'half' })
    const line = recoverOutput(dir)
    expect(line).toMatch(/removed the unfinished write of process \d+; restored the previous version/)
    expect(contentOf(dir)).toBe('old')
    expect(debris(dir)).toEqual([])
  })

  it('rolls back a complete new folder not yet in place; finishes one that was', () => {
    const pid = deadPid()
    const dir = prepare('complete', { [`.out.old-${pid}`]: 'old', [`.out.new-${pid}`]: 'new' })
    expect(recoverOutput(dir)).toMatch(/dropped the unfinished output .*; restored the previous version/)
    expect(contentOf(dir)).toBe('old')
    expect(debris(dir)).toEqual([])
    const dir2 = prepare('leftover-old', { out: 'new', [`.out.old-${pid}`]: 'old' })
    expect(recoverOutput(dir2)).toMatch(/removed the previous version left by process/)
    expect(contentOf(dir2)).toBe('new')
    expect(debris(dir2)).toEqual([])
  })

  it('leaves a running writer alone unless it holds the lock itself', () => {
    const dir = prepare('live', { [`.out.tmp-${process.ppid}`]: 'half' })
    expect(recoverOutput(dir)).toBeNull()
    expect(debris(dir)).toEqual([`.out.tmp-${process.ppid}`])
    const lock = lockOutput(dir)
    expect(recoverOutput(dir)).toMatch(/removed the unfinished write/)
    lock.release()
    expect(debris(dir)).toEqual([])
  })

  it('says nothing when there is nothing to recover', () => {
    expect(recoverOutput(prepare('clean', { out: 'x' }))).toBeNull()
  })
})

describe('lockOutput', () => {
  it('refuses a second writer while the owner runs, naming its PID; takes over a dead one with a note', () => {
    const dir = join(root, 'locks', 'out')
    mkdirSync(dirname(dir), { recursive: true })
    // A running process that is not us: our parent (vitest's main process).
    writeFileSync(lockPathOf(dir), `${process.ppid}\n`)
    expect(() => lockOutput(dir)).toThrow(
      new RegExp(`out is being written by process ${process.ppid} \\(lock .*\\.out\\.lock\\); wait for it`),
    )
    const dead = deadPid()
    writeFileSync(lockPathOf(dir), `${dead}\n`)
    const notes: string[] = []
    const lock = lockOutput(dir, (l) => notes.push(l))
    expect(notes).toEqual([`${dir}: took over the lock of process ${dead}, which is no longer running`])
    expect(readFileSync(lockPathOf(dir), 'utf8').trim()).toBe(String(process.pid))
    // Taken again by the same process (a command, then saveCheckpoint inside it): counted, not refused.
    const inner = lockOutput(dir)
    inner.release()
    expect(existsSync(lockPathOf(dir))).toBe(true)
    lock.release()
    lock.release() // idempotent
    expect(existsSync(lockPathOf(dir))).toBe(false)
    expect(readdirSync(dirname(dir))).toEqual([])
  })

  it('prepareOutput refuses outputs it must not replace and releases the lock', () => {
    const parent = join(root, 'prepare')
    mkdirSync(join(parent, 'other'), { recursive: true })
    writeFileSync(join(parent, 'other', 'x.txt'), 'x')
    writeFileSync(join(parent, 'file'), 'x')
    mkdirSync(join(parent, 'ckpt'))
    writeFileSync(join(parent, 'ckpt', 'sprout.json'), '{}')
    expect(() => prepareOutput(join(parent, 'other'))).toThrow(
      /exists and is not a Sprout checkpoint; choose another folder/,
    )
    expect(() => prepareOutput(join(parent, 'file'))).toThrow(/exists and is a file/)
    expect(() => prepareOutput(join(parent, 'file', 'sub'))).toThrow(/file is a file, not a folder/)
    expect(() => prepareOutput(join(parent, 'ckpt'))).toThrow(/already holds a checkpoint; pass --force/)
    prepareOutput(join(parent, 'ckpt'), { force: true }).release()
    expect(readdirSync(parent).sort()).toEqual(['ckpt', 'file', 'other'])
    expect(() => prepareOutput('')).toThrow(/--out is empty; name the folder to write/)
    expect(() => checkOutputPath('  ', '--out')).toThrow(/--out is empty/)
    expect(() => checkOutputPath('/')).toThrow(/root of the file system/)
  })
})

describe('file-system errors', () => {
  it('become one line naming the path and the cause', () => {
    let full: unknown
    try {
      writeFileSync('/dev/full', 'x')
    } catch (e) {
      full = e
    }
    expect(fsError(full, 'runs/x')?.message).toBe(
      'cannot write runs/x: no space left on the device (disk full)',
    )
    const file = join(root, 'a-file')
    writeFileSync(file, 'x')
    let notDir: unknown
    try {
      mkdirSync(join(file, 'sub', 'deeper'), { recursive: true })
    } catch (e) {
      notDir = e
    }
    expect(fsError(notDir, join(file, 'sub'))?.message).toBe(
      `cannot write ${join(file, 'sub')}: ${file} is a file, not a folder`,
    )
    const rofs = Object.assign(new Error('EROFS: read-only file system, mkdir'), { code: 'EROFS' })
    expect(fsError(rofs, 'o')?.message).toBe('cannot write o: the file system is read-only')
    expect(fsError(new Error('plain'))).toBeNull()
  })

  // A real read-only and a real full file system need a tmpfs mount (root): skipped elsewhere.
  const canMount = !skipUnless(canMountTmpfs(), 'root and tmpfs mounts (CI runs the tests as root)')
  it.skipIf(!canMount)(
    'a checkpoint on a full or read-only file system: one line, nothing left',
    async () => {
      const spec = parseSpec({
        family: 'decoder',
        vocabSize: 64,
        maxSeqLen: 16,
        dModel: 32,
        nLayers: 2,
        nHeads: 2,
        dFF: 64,
      })
      const model = initModel(spec, 1)
      for (const [opts, cause] of [
        ['size=64k', /cannot write .*ckpt: no space left on the device \(disk full\)/],
        ['ro,size=64k', /cannot write .*ckpt: the file system is read-only/],
      ] as const) {
        const mnt = mkdtempSync(join(tmpdir(), 'sprout-mnt-'))
        execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', mnt])
        try {
          await expect(saveCheckpoint(join(mnt, 'ckpt'), model)).rejects.toThrow(cause)
          expect(readdirSync(mnt)).toEqual([])
        } finally {
          execFileSync('umount', [mnt])
          rmSync(mnt, { recursive: true, force: true })
        }
      }
      disposeParams(model.params)
    },
  )
})

describe('checkpoints through output folders', () => {
  it('a reader finds a checkpoint that an interrupted swap left hidden', async () => {
    const spec = parseSpec({
      family: 'decoder',
      vocabSize: 8,
      maxSeqLen: 4,
      dModel: 4,
      nLayers: 1,
      nHeads: 1,
      dFF: 8,
    })
    const model = initModel(spec, 2)
    const dir = join(root, 'reader', 'ckpt')
    await saveCheckpoint(dir, model, { meta: { n: 1 } })
    const hiddenOld = join(dirname(dir), `.ckpt.old-${deadPid()}`)
    renameSync(dir, hiddenOld)
    const back = loadCheckpoint(dir)
    expect(back.meta).toEqual({ n: 1 })
    disposeParams(back.model.params)
    disposeParams(model.params)
    expect(debris(dir)).toEqual([])
  })
})
