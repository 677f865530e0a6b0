// A full disk must not lose writes that resolved (issue "reliability", item 2),
// proved on a real 4 MiB tmpfs: a child process writes to a LevelStore there
// while the test fills the disk with a file of its own, then makes room (or
// not), and kills the writer with SIGKILL; the store opened again must hold
// every write the writer saw resolve. The same disk shows that a store reopening
// after a failed write still keeps other processes out, and that deletions of
// delivered messages that failed meanwhile are not lost. Mounting needs root;
// where the machine refuses it, the tests are skipped, saying why.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Link, Messaging, StoreError } from '../src/index.ts'
import { LevelStore } from '../src/store/level-node.ts'
import type { StoredMessage } from '../src/store/types.ts'
import { uuidHex } from '../src/messaging/uuid.ts'
import { LogWatch } from './helpers/util.ts'

const WRITER = fileURLToPath(new URL('./fixtures/store-disk-writer.ts', import.meta.url))
const OPENER = fileURLToPath(new URL('./fixtures/store-opener.ts', import.meta.url))
const REPO = fileURLToPath(new URL('..', import.meta.url))
/** Bytes of data per message. */
const SIZE = 100

let mountPoint = ''
let mounted = false
let refused = ''

before(async () => {
  mountPoint = await mkdtemp(join(tmpdir(), 'snakemq-full-disk-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint], { stdio: 'pipe' })
    mounted = true
  } catch (err) {
    refused = `mounting a tmpfs was refused: ${String((err as { stderr?: unknown }).stderr ?? err).trim()}`
  }
})

after(async () => {
  if (mounted) execFileSync('umount', [mountPoint])
  await rm(mountPoint, { recursive: true, force: true })
})

/** The writer fixture, and what it printed: the seqs whose write resolved, and the codes of those that failed. */
class Writer {
  readonly ok: number[] = []
  readonly failed: string[] = []
  private partial = ''
  private stderr = ''
  private wake: (() => void) | null = null
  private exited = false
  readonly proc: ChildProcess
  readonly exit: Promise<NodeJS.Signals | null>

  constructor (directory: string) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', WRITER, directory, String(SIZE)], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (this.partial + chunk).split('\n')
      this.partial = lines.pop() ?? ''
      for (const line of lines) {
        const [what, seq, code] = line.split(' ')
        if (what === 'ok') this.ok.push(Number(seq))
        else if (what === 'fail') this.failed.push(code ?? '')
      }
      this.wake?.()
    })
    this.proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk })
    this.exit = new Promise((resolve) => {
      this.proc.once('exit', (_code, signal) => { this.exited = true; this.wake?.(); resolve(signal) })
    })
  }

  /** Resolves once `done()` holds; rejects if the writer exits first. */
  async until (what: string, done: () => boolean): Promise<void> {
    while (!done()) {
      if (this.exited) throw new Error(`the writer exited while the test waited for ${what}: ${this.stderr}`)
      await new Promise<void>((resolve) => { this.wake = resolve })
    }
  }

  async kill (): Promise<void> {
    this.proc.kill('SIGKILL')
    assert.equal(await this.exit, 'SIGKILL')
  }
}

/** Writes a file until the disk is full; the test's own, so deleting it makes room. */
async function fill (path: string): Promise<void> {
  const file = await open(path, 'w')
  const chunk = new Uint8Array(64 * 1024)
  try {
    for (;;) await file.write(chunk)
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'ENOSPC')
  } finally {
    await file.close()
  }
}

/** Message `seq` for a store, with the data checkSurvivors expects. */
function message (seq: number): StoredMessage {
  const uuid = new Uint8Array(16)
  new DataView(uuid.buffer).setUint32(12, seq)
  return { peer: 'p', seq, uuid, expiry: Infinity, flags: 1, data: new Uint8Array(SIZE).fill(seq & 0xff) }
}

/** Opens the store in `directory` once from another process: how that went, as the opener fixture prints it. */
async function openElsewhere (directory: string): Promise<unknown> {
  const child = spawn(process.execPath, ['--import', 'tsx', OPENER, directory], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const [code] = await once(child, 'exit') as [number | null]
  assert.equal(code, 0, stderr)
  return JSON.parse(stdout)
}

/** Opens the store the writer left and checks that every write it saw resolve is there, intact. */
async function checkSurvivors (directory: string, resolved: readonly number[]): Promise<void> {
  const store = await LevelStore.open(directory)
  try {
    const { messages } = await store.load()
    const stored = new Map(messages.map((m) => [m.seq, m]))
    const lost = resolved.filter((seq) => !stored.has(seq))
    assert.equal(lost.length, 0, `${lost.length} of ${resolved.length} resolved writes are missing (the first: ${lost.slice(0, 5).join(', ')})`)
    for (const seq of resolved) {
      const m = stored.get(seq)!
      assert.equal(m.data.byteLength, SIZE)
      assert.ok(m.data.every((b) => b === (seq & 0xff)), `the data of ${seq}`)
    }
    const [queue] = (await store.summary()).queues
    assert.equal(queue?.count, messages.length)
  } finally {
    await store.close()
  }
}

test('on a full disk writes fail with StoreError, go on once there is room, and every write that resolved survives SIGKILL', async (t) => {
  if (!mounted) { t.skip(refused); return }
  const directory = join(mountPoint, 'room-made')
  const filler = join(mountPoint, 'filler')
  const writer = new Writer(directory)
  try {
    await writer.until('500 writes', () => writer.ok.length >= 500)
    await fill(filler)
    await writer.until('50 failed writes', () => writer.failed.length >= 50)
    await rm(filler)
    const before = writer.ok.length
    await writer.until('3,000 writes after room was made', () => writer.ok.length >= before + 3000)
  } finally {
    await writer.kill()
  }
  assert.deepEqual(new Set(writer.failed), new Set(['ERR_STORE']))
  await checkSurvivors(directory, writer.ok)
  await rm(directory, { recursive: true })
})

test('a writer killed while the disk is still full loses no write that resolved, and its torn log is not taken for corruption', async (t) => {
  if (!mounted) { t.skip(refused); return }
  const directory = join(mountPoint, 'still-full')
  const filler = join(mountPoint, 'filler')
  const writer = new Writer(directory)
  try {
    await writer.until('500 writes', () => writer.ok.length >= 500)
    await fill(filler)
    await writer.until('50 failed writes', () => writer.failed.length >= 50)
  } finally {
    await writer.kill()
  }
  await rm(filler)
  // Open would refuse with StoreCorruptError had LevelDB dropped anything while recovering.
  await checkSurvivors(directory, writer.ok)
  await rm(directory, { recursive: true })
})

test('a store reopening after a failed write keeps other processes out: a second open gets StoreLockedError, and the owner goes on', async (t) => {
  if (!mounted) { t.skip(refused); return }
  const directory = join(mountPoint, 'lock-gap')
  const filler = join(mountPoint, 'filler')
  const log = new LogWatch()
  // Without the journal the store has no timer of its own that reopens the database: it stays closed until the next write.
  const store = await LevelStore.open(directory, { journal: false, logger: log.logger })
  const written: number[] = []
  try {
    let seq = 0
    for (; seq < 200; seq++) {
      await store.write({ put: [message(seq)] })
      written.push(seq)
    }
    await fill(filler)
    // Write until a LevelDB batch fails and the store, which closes the database to open it again, cannot open it on the full disk.
    for (;;) {
      const from = log.lines.length
      try {
        await store.write({ put: [message(seq)] })
        written.push(seq++)
        continue
      } catch (err) {
        assert.ok(err instanceof StoreError, String(err))
        seq++
      }
      const outcome = await log.until((line) => line === 'reopening the queue store after a failed write failed' || line === 'queue store reopened after a failed write', from)
      if (outcome !== 'queue store reopened after a failed write') break
    }
    // Room again, and the database is still closed (nothing was written since): LevelDB's own lock is not held now.
    await rm(filler)
    assert.deepEqual(await openElsewhere(directory), { name: 'StoreLockedError', code: 'ERR_STORE_LOCKED' })
    // The wait after the failed reopen is long over: the owner's next write opens the database again, and resolves.
    await store.write({ put: [message(seq)] })
    written.push(seq)
    assert.ok(log.messages('info').includes('queue store reopened after a failed write'))
  } finally {
    await store.close()
    await rm(filler, { force: true })
  }
  await checkSurvivors(directory, written)
  await rm(directory, { recursive: true })
})

test('deletions of messages delivered while the disk is full are kept and written once there is room: none is left to be sent again after a clean restart', async (t) => {
  if (!mounted) { t.skip(refused); return }
  const directory = join(mountPoint, 'deletes')
  const filler = join(mountPoint, 'filler')
  const count = 2000
  const rxLink = new Link()
  const { port } = await rxLink.listen({ port: 0 })
  const rx = new Messaging(rxLink, { identity: 'rx' })
  const consumed = (async () => { for await (const _ of rx.messages()) { /* taking it is finishing it */ } })()
  const log = new LogWatch()
  const txLink = new Link()
  const tx = new Messaging(txLink, { identity: 'tx', store: await LevelStore.open(directory, { logger: log.logger }), logger: log.logger })
  const delivered = new Set<string>()
  let allDelivered!: () => void
  const whenAllDelivered = new Promise<void>((resolve) => { allDelivered = resolve })
  tx.on('delivered', ({ uuid }) => {
    delivered.add(uuid)
    if (delivered.size === count) allDelivered()
  })
  try {
    await tx.ready()
    for (let i = 0; i < count; i++) await tx.send('rx', new Uint8Array(SIZE).fill(i & 0xff), { persistent: true })
    await fill(filler)
    txLink.connect({ port })
    await whenAllDelivered
    // Their deletions come after the disk filled up: they fail (at least some of them).
    await log.until((line) => line.startsWith('deleting delivered messages from the store failed'))
    await rm(filler)
    // As an application would, send until sends resolve again: the store is writing again. A send
    // refused meanwhile (the store closed, reopening) is tried again once the store says it reopened.
    for (;;) {
      const mark = log.lines.length
      try {
        await tx.send('rx', new Uint8Array(SIZE), { persistent: true })
        break
      } catch (err) {
        assert.ok(err instanceof StoreError, String(err))
        await log.until((line) => line === 'queue store reopened after a failed write', mark)
      }
    }
  } finally {
    await tx.close()
    await rx.close()
    await consumed
    await rm(filler, { force: true })
  }
  const store = await LevelStore.open(directory)
  try {
    // load() also checks the counts against the messages: no deletion was written twice.
    const { messages } = await store.load()
    const again = messages.filter((m) => delivered.has(uuidHex(m.uuid)))
    assert.equal(again.length, 0, `${again.length} of ${delivered.size} delivered messages are still in the store, to be sent again after the restart`)
  } finally {
    await store.close()
  }
  await rm(directory, { recursive: true })
})
