// The queue stores: one contract run against MemoryStore and LevelStore (real
// LevelDB in temp dirs), then what only the LevelDB store promises: group commit,
// persistence across reopen and SIGKILL, the lock, failing writes, corrupt data.
import { test, describe, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import { ClosedError, InvalidArgumentError, StoreError, StoreLockedError } from '../src/errors.ts'
import type { Logger } from '../src/logging.ts'
import { LevelStore } from '../src/store/level.ts'
import { MemoryStore } from '../src/store/memory.ts'
import type { PeerClock, QueueStore, StoreContents, StoredMessage } from '../src/store/types.ts'

const WRITER = fileURLToPath(new URL('./fixtures/store-writer.ts', import.meta.url))
const REPO = fileURLToPath(new URL('..', import.meta.url))

const tempDirs: string[] = []
after(async () => {
  await Promise.all(tempDirs.map(async (dir) => await rm(dir, { recursive: true, force: true })))
})

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-store-'))
  tempDirs.push(dir)
  return dir
}

function msg (peer: string, seq: number, extra: Partial<StoredMessage> = {}): StoredMessage {
  const uuid = new Uint8Array(16)
  new DataView(uuid.buffer).setUint32(12, seq)
  uuid[0] = peer.length & 0xff
  return { peer, seq, uuid, expiry: 1000 + seq, flags: 1, data: new TextEncoder().encode(`${peer}#${seq}`), ...extra }
}

/** What load() returns, in a shape deepStrictEqual compares by value (Buffer vs Uint8Array aside). */
function plain (contents: StoreContents): { messages: object[], clocks: Array<[string, PeerClock]> } {
  return {
    messages: contents.messages.map((m) => ({ ...m, uuid: [...m.uuid], data: Buffer.from(m.data).toString('hex') })),
    clocks: [...contents.clocks].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  }
}

function expected (messages: StoredMessage[], clocks: Array<[string, PeerClock]> = []): ReturnType<typeof plain> {
  return plain({ messages, clocks: new Map(clocks) })
}

function order (messages: readonly StoredMessage[]): Array<[string, number]> {
  return messages.map((m) => [m.peer, m.seq])
}

/** A store under test; `reload()` reads it back the hardest way it has (LevelStore: close, reopen, load). */
interface Subject {
  store: QueueStore
  reload: () => Promise<StoreContents>
  close: () => Promise<void>
}

const subjects: Array<{ name: string, make: () => Promise<Subject> }> = [
  {
    name: 'MemoryStore',
    make: async () => {
      const store = new MemoryStore()
      return { store, reload: async () => await store.load(), close: async () => await store.close() }
    }
  },
  {
    name: 'LevelStore',
    make: async () => {
      const dir = await tempDir()
      const subject: Subject = {
        store: await LevelStore.open(dir),
        reload: async () => {
          await subject.store.close()
          subject.store = await LevelStore.open(dir)
          return await subject.store.load()
        },
        close: async () => await subject.store.close()
      }
      return subject
    }
  }
]

for (const { name, make } of subjects) {
  void describe(`${name} (queue-store contract)`, () => {
    async function withStore (fn: (s: Subject) => Promise<void>): Promise<void> {
      const s = await make()
      try {
        await fn(s)
      } finally {
        await s.close()
      }
    }

    void test('a new store is empty', async () => {
      await withStore(async (s) => {
        assert.deepEqual(plain(await s.store.load()), expected([]))
        assert.equal(s.store.durable, name === 'LevelStore')
      })
    })

    void test('loads messages ordered by peer, then seq, whatever order they were put in', async () => {
      await withStore(async (s) => {
        const b1 = msg('b', 1)
        const a3 = msg('a', 3)
        const ab0 = msg('ab', 0)
        const a1 = msg('a', 1)
        const empty7 = msg('', 7)
        const b0 = msg('b', 0)
        const a16 = msg('a', 16)
        await s.store.write({ put: [b1, a3] })
        await s.store.write({ put: [ab0, a16, a1] })
        await s.store.write({ put: [empty7, b0] })
        const loaded = await s.reload()
        assert.deepEqual(order(loaded.messages), [['', 7], ['a', 1], ['a', 3], ['a', 16], ['ab', 0], ['b', 0], ['b', 1]])
        assert.deepEqual(plain(loaded), expected([empty7, a1, a3, a16, ab0, b0, b1]))
      })
    })

    void test('keeps seqs in numeric order up to Number.MAX_SAFE_INTEGER', async () => {
      await withStore(async (s) => {
        const seqs = [Number.MAX_SAFE_INTEGER, 0, 2 ** 32, 255, 256, 2 ** 40 + 1]
        await s.store.write({ put: seqs.map((seq) => msg('p', seq)) })
        assert.deepEqual((await s.reload()).messages.map((m) => m.seq), [...seqs].sort((a, b) => a - b))
      })
    })

    void test('deletes exactly the referenced messages; deleting what is not there is a no-op', async () => {
      await withStore(async (s) => {
        await s.store.write({ put: [msg('a', 1), msg('a', 2), msg('a', 3), msg('b', 1)] })
        await s.store.write({ del: [{ peer: 'a', seq: 2 }, { peer: 'b', seq: 1 }, { peer: 'b', seq: 99 }, { peer: 'nobody', seq: 0 }] })
        assert.deepEqual(plain(await s.reload()), expected([msg('a', 1), msg('a', 3)]))
      })
    })

    void test('applies a batch as puts, then deletes, then clocks', async () => {
      await withStore(async (s) => {
        const clock: PeerClock = { offline: 5, since: 1_700_000_000_000, connected: false }
        await s.store.write({ put: [msg('a', 1), msg('a', 2)], del: [{ peer: 'a', seq: 1 }], clocks: [['a', clock]] })
        assert.deepEqual(plain(await s.reload()), expected([msg('a', 2)], [['a', clock]]))
      })
    })

    void test('applies concurrent writes in call order', async () => {
      await withStore(async (s) => {
        const newer = msg('a', 1, { data: Uint8Array.of(2) })
        const writes = [
          s.store.write({ put: [msg('a', 1, { data: Uint8Array.of(1) })] }),
          s.store.write({ del: [{ peer: 'a', seq: 1 }] }),
          s.store.write({ put: [newer, msg('a', 2)] }),
          s.store.write({ del: [{ peer: 'a', seq: 2 }] }),
          s.store.write({})
        ]
        await Promise.all(writes)
        assert.deepEqual(plain(await s.reload()), expected([newer]))
      })
    })

    void test('keeps the latest clock of each peer', async () => {
      await withStore(async (s) => {
        const c1: PeerClock = { offline: 0, since: 1_700_000_000_000, connected: true }
        const c2: PeerClock = { offline: 12_345.5, since: 1_700_000_100_000, connected: false }
        const c3: PeerClock = { offline: 1, since: 2, connected: true }
        await s.store.write({ clocks: [['x', c1], ['y', c3]] })
        await s.store.write({ clocks: [['x', c2]] })
        const loaded = await s.reload()
        assert.deepEqual(plain(loaded), expected([], [['x', c2], ['y', c3]]))
        assert.ok(loaded.clocks instanceof Map)
      })
    })

    void test('stores any string as a peer name, without collisions', async () => {
      await withStore(async (s) => {
        const peers = ['__proto__', 'constructor', 'a:b', 'a.b', 'a', '', '\u00ff\uffff', '\xff', '\ud800', '\udc00\ud800', '😀', 'x'.repeat(2000), 'toString']
        const messages = peers.map((peer, i) => msg(peer, i))
        const clocks = peers.map((peer, i): [string, PeerClock] => [peer, { offline: i, since: i * 10, connected: i % 2 === 0 }])
        await s.store.write({ put: messages, clocks })
        const loaded = await s.reload()
        const sorted = [...messages].sort((a, b) => a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0)
        assert.deepEqual(plain(loaded), expected(sorted, clocks))
        assert.equal(loaded.clocks.get('__proto__')?.offline, 0)
        assert.equal(loaded.messages.length, peers.length)
      })
    })

    void test('round-trips Infinity and negative expiries, all flag bits, empty and 1 MiB data', async () => {
      await withStore(async (s) => {
        const big = new Uint8Array(1024 * 1024)
        for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff
        const messages = [
          msg('p', 0, { expiry: Infinity }),
          msg('p', 1, { expiry: -Infinity, flags: 0 }),
          msg('p', 2, { expiry: -12.75, flags: 0xffffffff }),
          msg('p', 3, { data: new Uint8Array(0) }),
          msg('p', 4, { data: big })
        ]
        await s.store.write({ put: messages })
        const loaded = await s.reload()
        assert.deepEqual(plain(loaded), expected(messages))
        assert.equal(loaded.messages[0]?.expiry, Infinity)
        assert.equal(loaded.messages[3]?.data.byteLength, 0)
        assert.equal(loaded.messages[4]?.data.byteLength, big.byteLength)
      })
    })

    void test('keeps what was written, not the caller\'s buffers', async () => {
      await withStore(async (s) => {
        const m = msg('p', 1, { data: Uint8Array.of(1, 2, 3) })
        const written = s.store.write({ put: [m] })
        m.data[0] = 9
        m.uuid[15] = 9
        await written
        const loaded = await s.reload()
        assert.deepEqual([...(loaded.messages[0]?.data ?? [])], [1, 2, 3])
        assert.equal(loaded.messages[0]?.uuid[15], 1)
      })
    })

    void test('rejects a batch it cannot store with InvalidArgumentError, writing none of it', async () => {
      await withStore(async (s) => {
        const bad: StoredMessage[] = [
          msg('p', -1), msg('p', 1.5), msg('p', 2 ** 53), msg('p', 1, { uuid: new Uint8Array(15) }),
          msg('p', 1, { expiry: NaN }), msg('p', 1, { flags: 2 ** 32 }), msg('p', 1, { flags: -1 })
        ]
        for (const m of bad) {
          await assert.rejects(s.store.write({ put: [msg('p', 0), m] }), InvalidArgumentError)
        }
        await assert.rejects(s.store.write({ del: [{ peer: 'p', seq: NaN }] }), InvalidArgumentError)
        await assert.rejects(s.store.write({ clocks: [['p', { offline: NaN, since: 0, connected: false }]] }), InvalidArgumentError)
        // A good write right after still works.
        await s.store.write({ put: [msg('p', 7)] })
        assert.deepEqual(plain(await s.reload()), expected([msg('p', 7)]))
      })
    })

    void test('close() is idempotent; write() and load() after it reject with a StoreError caused by ClosedError', async () => {
      const s = await make()
      await s.store.write({ put: [msg('p', 1)] })
      await Promise.all([s.store.close(), s.store.close()])
      await s.store.close()
      for (const attempt of [s.store.write({ put: [msg('p', 2)] }), s.store.load()]) {
        await assert.rejects(attempt, (err: unknown) => {
          assert.ok(err instanceof StoreError)
          assert.ok(err.cause instanceof ClosedError)
          return true
        })
      }
    })
  })
}

void describe('LevelStore', () => {
  function dbOf (store: LevelStore): Level<string, Uint8Array> {
    return (store as unknown as { db: Level<string, Uint8Array> }).db
  }

  void test('keeps messages and clocks across close and reopen', async () => {
    const dir = await tempDir()
    const clock: PeerClock = { offline: 42, since: 1_700_000_000_000, connected: false }
    const first = await LevelStore.open(dir)
    await first.write({ put: [msg('a', 1), msg('b', 1)], clocks: [['a', clock]] })
    await first.write({ put: [msg('a', 2)], del: [{ peer: 'b', seq: 1 }] })
    await first.close()
    const second = await LevelStore.open(dir)
    try {
      assert.deepEqual(plain(await second.load()), expected([msg('a', 1), msg('a', 2)], [['a', clock]]))
    } finally {
      await second.close()
    }
  })

  void test('merges the write() calls of one tick into one LevelDB batch', async () => {
    const store = await LevelStore.open(await tempDir())
    try {
      const before = store.batchesWritten
      const writes: Array<Promise<void>> = []
      for (let seq = 0; seq < 1000; seq++) writes.push(store.write({ put: [msg(`p${seq % 5}`, seq)] }))
      await Promise.all(writes)
      assert.equal(store.batchesWritten, before + 1)
      assert.equal((await store.load()).messages.length, 1000)
    } finally {
      await store.close()
    }
  })

  void test('merges the write() calls made while a batch is in flight into the next batch', async () => {
    const store = await LevelStore.open(await tempDir())
    try {
      const before = store.batchesWritten
      const first = store.write({ put: [msg('p', 0)] })
      // The store starts its batch on the next tick; after that tick it is in flight.
      await new Promise<void>((resolve) => process.nextTick(resolve))
      const later: Array<Promise<void>> = []
      for (let seq = 1; seq <= 100; seq++) later.push(store.write({ put: [msg('p', seq)] }))
      await first
      assert.equal(store.batchesWritten, before + 1)
      await Promise.all(later)
      assert.equal(store.batchesWritten, before + 2)
      assert.deepEqual((await store.load()).messages.map((m) => m.seq), Array.from({ length: 101 }, (_, i) => i))
    } finally {
      await store.close()
    }
  })

  void test('writes with sync: true', async () => {
    const dir = await tempDir()
    const store = await LevelStore.open(dir, { sync: true })
    await Promise.all([store.write({ put: [msg('p', 1)] }), store.write({ put: [msg('p', 2)] })])
    await store.close()
    const again = await LevelStore.open(dir)
    try {
      assert.deepEqual(plain(await again.load()), expected([msg('p', 1), msg('p', 2)]))
    } finally {
      await again.close()
    }
  })

  void test('creates a missing directory, parents included', async () => {
    const dir = join(await tempDir(), 'a', 'b', 'queues')
    const store = await LevelStore.open(dir)
    try {
      assert.equal(store.directory, dir)
      await store.write({ put: [msg('p', 1)] })
      assert.equal((await store.load()).messages.length, 1)
    } finally {
      await store.close()
    }
  })

  void test('a second store on the same directory gets StoreLockedError naming the directory', async () => {
    const dir = await tempDir()
    const first = await LevelStore.open(dir)
    try {
      await assert.rejects(LevelStore.open(dir), (err: unknown) => {
        assert.ok(err instanceof StoreLockedError)
        assert.ok(err instanceof StoreError)
        assert.equal(err.code, 'ERR_STORE_LOCKED')
        assert.equal(err.directory, dir)
        assert.match(err.message, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
        return true
      })
    } finally {
      await first.close()
    }
    const second = await LevelStore.open(dir)
    await second.close()
  })

  void test('close() waits for writes already made; writes after it reject', async () => {
    const dir = await tempDir()
    const store = await LevelStore.open(dir)
    const before: Array<Promise<void>> = []
    for (let seq = 0; seq < 50; seq++) before.push(store.write({ put: [msg('p', seq)] }))
    const closed = store.close()
    const afterClose = store.write({ put: [msg('p', 50)] })
    await assert.rejects(afterClose, (err: unknown) => err instanceof StoreError && err.cause instanceof ClosedError)
    await Promise.all(before)
    await closed
    const again = await LevelStore.open(dir)
    try {
      assert.deepEqual((await again.load()).messages.map((m) => m.seq), Array.from({ length: 50 }, (_, i) => i))
    } finally {
      await again.close()
    }
  })

  void test('a failing write rejects every merged call with StoreError, and none of it is stored', async () => {
    const dir = await tempDir()
    const errors: string[] = []
    const logger: Logger = { debug () {}, info () {}, warn () {}, error (message) { errors.push(message) } }
    const store = await LevelStore.open(dir, { logger })
    await store.write({ put: [msg('p', 0)] })
    const batches = store.batchesWritten
    // The database fails under the store, as it would on a broken disk.
    await dbOf(store).close()
    const writes = [store.write({ put: [msg('p', 1)] }), store.write({ put: [msg('p', 2)], del: [{ peer: 'p', seq: 0 }] })]
    for (const w of writes) {
      await assert.rejects(w, (err: unknown) => {
        assert.ok(err instanceof StoreError)
        assert.equal((err.cause as { code?: string }).code, 'LEVEL_DATABASE_NOT_OPEN')
        assert.match(err.message, /writing to the queue store/)
        return true
      })
    }
    assert.equal(store.batchesWritten, batches)
    assert.deepEqual(errors, ['queue store write failed'])
    await store.close()
    const again = await LevelStore.open(dir)
    try {
      assert.deepEqual(plain(await again.load()), expected([msg('p', 0)]))
    } finally {
      await again.close()
    }
  })

  void test('a batch that fails in LevelDB rejects its calls, and later batches still go through', async () => {
    const dir = await tempDir()
    const store = await LevelStore.open(dir)
    try {
      const db = dbOf(store)
      // Make LevelDB's own write fail once: the batch is formed, then rejected.
      const original = Object.getPrototypeOf(db) as { batch: (...args: unknown[]) => unknown }
      const realBatch = original.batch
      let fail = true
      Object.defineProperty(db, 'batch', {
        configurable: true,
        value: function (this: unknown, ...args: unknown[]): unknown {
          const chained = realBatch.apply(this, args) as { write: (...a: unknown[]) => Promise<void> }
          if (fail) {
            fail = false
            chained.write = async () => { throw Object.assign(new Error('IO error: No space left on device'), { code: 'LEVEL_IO_ERROR' }) }
          }
          return chained
        }
      })
      const failed = [store.write({ put: [msg('p', 1)] }), store.write({ put: [msg('p', 2)] })]
      for (const w of failed) {
        await assert.rejects(w, (err: unknown) => err instanceof StoreError && /No space left/.test(err.message))
      }
      await store.write({ put: [msg('p', 3)] })
      assert.deepEqual((await store.load()).messages.map((m) => m.seq), [3])
    } finally {
      await store.close()
    }
  })

  void test('rejects corrupt data on load() with StoreError', async () => {
    const cases: Array<[string, string, Uint8Array]> = [
      ['message value too short', 'm0070.00000000000001', Uint8Array.of(1, 2, 3)],
      ['message key without a seq', 'm0070', new Uint8Array(40)],
      ['peer that is not hex', 'mzz70.00000000000001', new Uint8Array(40)],
      ['seq that is not hex', 'm0070.0000000000000g', new Uint8Array(40)],
      ['clock of the wrong size', 'c0070', new Uint8Array(3)],
      ['unknown key', 'q', new Uint8Array(1)]
    ]
    for (const [what, key, value] of cases) {
      const dir = await tempDir()
      await (await LevelStore.open(dir)).close()
      const raw = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
      await raw.put(key, value)
      await raw.close()
      const store = await LevelStore.open(dir)
      try {
        await assert.rejects(store.load(), (err: unknown) => {
          assert.ok(err instanceof StoreError, what)
          assert.match(err.message, /is corrupt/, what)
          return true
        })
      } finally {
        await store.close()
      }
    }
  })

  void test('refuses a LevelDB database that is not a queue store, or a newer format', async () => {
    const foreign = await tempDir()
    const raw = new Level<string, string>(foreign)
    await raw.put('hello', 'world')
    await raw.close()
    await assert.rejects(LevelStore.open(foreign), (err: unknown) => err instanceof StoreError && /not a snakemq queue store/.test(err.message))

    const newer = await tempDir()
    await (await LevelStore.open(newer)).close()
    const raw2 = new Level<string, Uint8Array>(newer, { valueEncoding: 'view' })
    await raw2.put('v', Uint8Array.of(2))
    await raw2.close()
    await assert.rejects(LevelStore.open(newer), (err: unknown) => err instanceof StoreError && /format version 2/.test(err.message))
    // The refused directories were released: a raw open works.
    const check = new Level(newer)
    await check.open()
    await check.close()
  })

  void describe('in a child process', () => {
    /** Starts the writer fixture and resolves once it printed "written" (its writes resolved). */
    async function startWriter (dir: string, count: number): Promise<ReturnType<typeof spawn>> {
      const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, String(count)], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
      await new Promise<void>((resolve, reject) => {
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
          stdout += chunk
          if (stdout.includes('written\n')) resolve()
        })
        child.once('exit', (code, signal) => reject(new Error(`writer exited (${code ?? signal}) before writing: ${stderr}`)))
        child.once('error', reject)
      })
      return child
    }

    async function kill (child: ReturnType<typeof spawn>): Promise<void> {
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)))
      child.kill('SIGKILL')
      assert.equal(await exited, 'SIGKILL')
    }

    void test('every message whose write() resolved survives the writer being killed with SIGKILL', async () => {
      const dir = await tempDir()
      const count = 5000
      const child = await startWriter(dir, count)
      await kill(child)
      const store = await LevelStore.open(dir)
      try {
        const { messages } = await store.load()
        assert.equal(messages.length, count)
        const seqs = messages.map((m) => m.seq).sort((a, b) => a - b)
        assert.deepEqual(seqs, Array.from({ length: count }, (_, i) => i))
        for (const m of messages) {
          assert.equal(m.peer, `peer-${m.seq % 3}`)
          assert.equal(new TextDecoder().decode(m.data), `message ${m.seq}`)
          assert.equal(new DataView(m.uuid.buffer, m.uuid.byteOffset, 16).getUint32(12), m.seq)
          assert.equal(m.expiry, Infinity)
        }
      } finally {
        await store.close()
      }
    })

    void test('a store open in another process gets StoreLockedError naming the directory', async () => {
      const dir = await tempDir()
      const child = await startWriter(dir, 1)
      try {
        await assert.rejects(LevelStore.open(dir), (err: unknown) => err instanceof StoreLockedError && err.directory === dir && err.message.includes(dir))
      } finally {
        await kill(child)
      }
      const store = await LevelStore.open(dir)
      try {
        assert.equal((await store.load()).messages.length, 1)
      } finally {
        await store.close()
      }
    })
  })
})
