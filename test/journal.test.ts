// The queue store's journal (src/store/journal.ts and its use in level-base.ts):
// in Node a write() resolves once its record is appended to the journal, LevelDB
// is written behind it, and open replays what LevelDB had not got. These tests
// prove what that must not change (reads see every resolved write; a write that
// resolved survives SIGKILL; a store that cannot be read is refused) and what it
// adds (the replay, the journal started over, LevelDB failing under resolved
// writes).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { appendFile, mkdtemp, open, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import { StoreCorruptError, StoreError } from '../src/errors.ts'
import type { Logger } from '../src/logging.ts'
import { JOURNAL_FILE } from '../src/store/journal.ts'
import { LevelStore, LEVEL_STORE_FORMAT } from '../src/store/level-node.ts'
import type { StoredMessage } from '../src/store/types.ts'

const WRITER = fileURLToPath(new URL('./fixtures/store-writer.ts', import.meta.url))
const REPO = fileURLToPath(new URL('..', import.meta.url))

const tempDirs: string[] = []
after(async () => {
  await Promise.all(tempDirs.map(async (dir) => await rm(dir, { recursive: true, force: true })))
})

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-journal-'))
  tempDirs.push(dir)
  return dir
}

function msg (peer: string, seq: number, size = 8): StoredMessage {
  const uuid = new Uint8Array(16)
  new DataView(uuid.buffer).setUint32(12, seq)
  return { peer, seq, uuid, expiry: Infinity, flags: 1, data: new Uint8Array(size).fill(seq & 0xff) }
}

/** A logger that keeps every message, and calls `on` with each. */
function recorder (on: (level: string, message: string) => void = () => {}): Logger & { lines: string[] } {
  const lines: string[] = []
  const log = (level: string) => (message: string): void => { lines.push(`${level} ${message}`); on(level, message) }
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }
}

/** The database under a store (a test reaching in, as a failing disk would). */
function dbOf (store: LevelStore): { close: () => Promise<void> } {
  return (store as unknown as { db: { close: () => Promise<void> } }).db
}

/** The store's journal mark, read from its LevelDB (a closed store): how far into the journal LevelDB has every record. */
async function journalMark (dir: string): Promise<{ epoch: number, offset: number }> {
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
  try {
    const value = await db.get('j')
    assert.ok(value?.byteLength === 16, 'a journal mark')
    const view = new DataView(value.buffer, value.byteOffset, 16)
    return { epoch: view.getFloat64(0, false), offset: view.getFloat64(8, false) }
  } finally {
    await db.close()
  }
}

/** Overwrites 8 bytes of the journal at `at`. */
async function damageJournal (dir: string, at: number): Promise<void> {
  const file = await open(join(dir, JOURNAL_FILE), 'r+')
  try {
    await file.write(new Uint8Array(8).fill(0x5a), 0, 8, at)
  } finally {
    await file.close()
  }
}

/** Runs the writer fixture to its end: it exits by SIGKILL, its own or ours. */
async function runWriter (dir: string, count: number, mode: 'burst' | 'serial', end: 'wait' | 'kill-self'): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, String(count), mode, 'journal', end], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { if (chunk.includes('written\n')) child.kill('SIGKILL') })
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)))
  assert.equal(signal, 'SIGKILL', `the writer ended by itself: ${stderr}`)
}

test('a journaled write() resolves before LevelDB has its batch, and a read made after it sees it', async () => {
  const store = await LevelStore.open(await tempDir())
  try {
    const before = store.batchesWritten
    await store.write({ put: [msg('p', 0)] })
    // LevelDB reports a batch written on a later turn of the event loop; the write resolved in this one.
    assert.equal(store.batchesWritten, before)
    const read = await store.read('p', 0, 10)
    assert.deepEqual(read.map((m) => m.seq), [0])
    assert.equal(store.batchesWritten, before + 1)
  } finally {
    await store.close()
  }
})

test('with sync: true, or journal: false, a write() resolves only once LevelDB has written it', async () => {
  for (const options of [{ sync: true }, { journal: false }]) {
    const store = await LevelStore.open(await tempDir(), options)
    try {
      const before = store.batchesWritten
      await store.write({ put: [msg('p', 0)] })
      assert.equal(store.batchesWritten, before + 1, JSON.stringify(options))
    } finally {
      await store.close()
    }
  }
})

test('writes that resolved and were only in the journal when the writer was killed are replayed at open, each once', async () => {
  const dir = await tempDir()
  const count = 5000
  await runWriter(dir, count, 'serial', 'kill-self')
  const logger = recorder()
  const store = await LevelStore.open(dir, { logger })
  try {
    assert.ok(logger.lines.includes('info queue store journal replayed'), logger.lines.join('\n'))
    const { messages } = await store.load()
    assert.deepEqual(messages.map((m) => m.seq).sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i))
    const summary = (await store.summary()).queues.map((q) => [q.peer, q.count])
    assert.deepEqual(summary, [['peer-0', 1667], ['peer-1', 1667], ['peer-2', 1666]])
  } finally {
    await store.close()
  }
  // Replayed once: a second open finds nothing left to replay, and the same messages.
  const again = recorder()
  const reopened = await LevelStore.open(dir, { logger: again })
  try {
    assert.ok(!again.lines.includes('info queue store journal replayed'), again.lines.join('\n'))
    assert.equal((await reopened.load()).messages.length, count)
  } finally {
    await reopened.close()
  }
})

test('a burst of writes killed with SIGKILL after they resolved: every one is there after open', async () => {
  const dir = await tempDir()
  await runWriter(dir, 3000, 'burst', 'kill-self')
  const store = await LevelStore.open(dir)
  try {
    assert.equal((await store.load()).messages.length, 3000)
  } finally {
    await store.close()
  }
})

test('a record cut short at the end of the journal is dropped as a write that never finished, and the rest is kept', async () => {
  const dir = await tempDir()
  await runWriter(dir, 500, 'serial', 'kill-self')
  // A record whose header says 200 bytes, and only 10 of them: an append the kill cut short.
  const torn = new Uint8Array(18)
  new DataView(torn.buffer).setUint32(0, 200)
  await appendFile(join(dir, JOURNAL_FILE), torn)
  const logger = recorder()
  const store = await LevelStore.open(dir, { logger })
  try {
    assert.ok(logger.lines.includes('info queue store journal ended in a write cut short, dropped'), logger.lines.join('\n'))
    assert.equal((await store.load()).messages.length, 500)
  } finally {
    await store.close()
  }
})

test('a damaged record inside the journal: open refuses with StoreCorruptError naming it; salvage keeps what came before it and reports the rest', async () => {
  const dir = await tempDir()
  // The last writes only in the journal: many records, so one in the middle can be damaged.
  await runWriter(dir, 2000, 'serial', 'kill-self')
  const path = join(dir, JOURNAL_FILE)
  const size = (await stat(path)).size
  // Past the mark: in records LevelDB has not got, with more records after them.
  const { offset } = await journalMark(dir)
  assert.ok(size - offset > 4096, `a journal of ${size} bytes, LevelDB has ${offset} of it`)
  await damageJournal(dir, Math.floor((offset + size) / 2))
  const journalBefore = await readFile(path)
  await assert.rejects(LevelStore.open(dir), (err: unknown) => {
    assert.ok(err instanceof StoreCorruptError, String(err))
    assert.equal(err.directory, dir)
    assert.match(err.message, /journal .* has a damaged record at byte \d+/)
    return true
  })
  assert.deepEqual(await readFile(path), journalBefore, 'a refused open leaves the journal as it was')
  const salvaged = await LevelStore.open(dir, { salvage: true, logger: recorder() })
  try {
    assert.match(salvaged.salvaged!.problems.join('\n'), /damaged record .* \(what follows it is dropped\)/)
    const seqs = (await salvaged.load()).messages.map((m) => m.seq).sort((a, b) => a - b)
    // What LevelDB had and the records before the damage are there, in an unbroken run from 0; the rest is gone.
    assert.ok(seqs.length > 0 && seqs.length < 2000, `${seqs.length} kept`)
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i))
  } finally {
    await salvaged.close()
  }
  const reopened = await LevelStore.open(dir)
  await reopened.close()
})

test('damage in the journal before its mark (records LevelDB already has) does not refuse the open, and nothing is lost', async () => {
  const dir = await tempDir()
  await runWriter(dir, 2000, 'serial', 'kill-self')
  const { offset } = await journalMark(dir)
  const size = (await stat(join(dir, JOURNAL_FILE))).size
  assert.ok(offset > 4096 && size > offset, `LevelDB has ${offset} of a journal of ${size} bytes: records on both sides of the mark`)
  await damageJournal(dir, Math.floor(offset / 2))
  const logger = recorder()
  const store = await LevelStore.open(dir, { logger })
  try {
    // What lies past the mark is replayed as though nothing were wrong before it.
    assert.ok(logger.lines.includes('info queue store journal replayed'), logger.lines.join('\n'))
    assert.ok(!logger.lines.some((l) => l.startsWith('error ')), logger.lines.join('\n'))
    const seqs = (await store.load()).messages.map((m) => m.seq).sort((a, b) => a - b)
    assert.deepEqual(seqs, Array.from({ length: 2000 }, (_, i) => i))
  } finally {
    await store.close()
  }
})

test('LevelDB failing under journaled writes: the writes that resolved are written once it is reopened; writes meanwhile fail with StoreError', async () => {
  const dir = await tempDir()
  let failed: () => void = () => {}
  const failure = new Promise<void>((resolve) => { failed = resolve })
  const logger = recorder((level, message) => { if (level === 'error' && message === 'queue store write failed') failed() })
  const store = await LevelStore.open(dir, { logger })
  try {
    await store.write({ put: [msg('p', 0)] })
    await store.read('p', 0, 1)
    // The database fails under the store, as a broken disk would; these writes are journaled and resolve.
    await dbOf(store).close()
    await store.write({ put: [msg('p', 1)] })
    await store.write({ put: [msg('p', 2)], del: [{ peer: 'p', seq: 0, size: 8 }] })
    await failure
    await assert.rejects(store.write({ put: [msg('p', 3)] }), (err: unknown) => {
      assert.ok(err instanceof StoreError)
      assert.match(err.message, /writing to the queue store .* failed: .*kept in its journal/)
      return true
    })
    // A read waits for the resolved writes: the store reopens the database and writes them.
    assert.deepEqual((await store.read('p', 0, 10)).map((m) => m.seq), [1, 2])
    await store.write({ put: [msg('p', 4)] })
    assert.ok(logger.lines.includes('info queue store reopened after a failed write'), logger.lines.join('\n'))
  } finally {
    await store.close()
  }
  const again = await LevelStore.open(dir)
  try {
    assert.deepEqual((await again.load()).messages.map((m) => m.seq), [1, 2, 4])
    assert.deepEqual((await again.summary()).queues.map((q) => [q.count, q.bytes]), [[3, 24]])
  } finally {
    await again.close()
  }
})

test('the journal is started over once LevelDB has everything in it, and stays small under a long run of writes', async () => {
  const dir = await tempDir()
  const store = await LevelStore.open(dir)
  const path = join(dir, JOURNAL_FILE)
  let largest = 0
  try {
    // About 10 MiB of records, each write awaited as a loop of persistent sends would.
    for (let seq = 0; seq < 50_000; seq++) {
      await store.write({ put: [msg('p', seq, 150)] })
      if (seq % 1000 === 0) largest = Math.max(largest, (await stat(path)).size)
    }
    await store.read('p', 0, 1)
    assert.equal((await stat(path)).size, 16, 'just the header once LevelDB has caught up')
    assert.ok(largest <= 3 * 1024 * 1024, `the journal grew to ${largest} bytes`)
    assert.equal((await store.summary()).queues[0]?.count, 50_000)
  } finally {
    await store.close()
  }
})

test('a format-2 store (before the journal) is upgraded to format 3 on open, contents unchanged', async () => {
  const dir = await tempDir()
  const store = await LevelStore.open(dir, { journal: false })
  await store.write({ put: [msg('p', 0), msg('p', 1)] })
  await store.close()
  const raw = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
  await raw.put('v', Uint8Array.of(2))
  await raw.close()
  const logger = recorder()
  const upgraded = await LevelStore.open(dir, { logger })
  try {
    assert.ok(logger.lines.includes('info queue store upgraded from format 2'))
    assert.deepEqual((await upgraded.load()).messages.map((m) => m.seq), [0, 1])
  } finally {
    await upgraded.close()
  }
  const check = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
  try {
    assert.deepEqual([...(await check.get('v')) ?? []], [LEVEL_STORE_FORMAT])
    assert.equal(LEVEL_STORE_FORMAT, 3)
  } finally {
    await check.close()
  }
})

test('a loop of awaited journaled writes still yields to the event loop: LevelDB is written during it, and what it has not got stays bounded', async () => {
  const store = await LevelStore.open(await tempDir())
  let turns = 0
  let ticking = true
  const tick = (): void => { turns++; if (ticking) setImmediate(tick) }
  setImmediate(tick)
  try {
    const during: number[] = []
    let largestBehind = 0
    for (let seq = 0; seq < 20_000; seq++) {
      await store.write({ put: [msg('p', seq, 16)] })
      largestBehind = Math.max(largestBehind, (store as unknown as { journaledBytes: number }).journaledBytes)
      if (seq % 2000 === 1999) during.push(store.batchesWritten)
    }
    ticking = false
    assert.ok(turns > 0, 'the event loop turned during the loop')
    assert.ok(during.at(-1)! > during[0]!, `LevelDB batches written during the loop: ${during.join(', ')}`)
    // The bound (256 KiB) plus the one write that crossed it.
    assert.ok(largestBehind <= 256 * 1024 + 128, `${largestBehind} bytes were waiting for LevelDB`)
  } finally {
    ticking = false
    await store.close()
  }
})
