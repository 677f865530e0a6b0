// The queue stores: one contract run against MemoryStore and LevelStore (real
// LevelDB in temp dirs), then what only the LevelDB store promises: group commit,
// counts kept in the store, persistence across reopen and SIGKILL, the lock,
// failing writes, corrupt data and salvage, the format-1 upgrade.
import { test, describe, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cp, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { Level } from 'level'
import { ClosedError, InvalidArgumentError, StoreCorruptError, StoreError, StoreInUseError, StoreLockedError } from '../src/errors.ts'
import type { Logger } from '../src/logging.ts'
import { LevelStore, LEVEL_STORE_FORMAT } from '../src/store/level-node.ts'
import { MemoryStore } from '../src/store/memory.ts'
import type { PeerClock, QueueStore, StoreContents, StoredMessage, StoredRef, StoreSummary } from '../src/store/types.ts'

const WRITER = fileURLToPath(new URL('./fixtures/store-writer.ts', import.meta.url))
const FORMAT1 = fileURLToPath(new URL('./fixtures/format1-store', import.meta.url))
const FORMAT1_CONTENTS = fileURLToPath(new URL('./fixtures/format1-store.json', import.meta.url))
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

/** The reference that deletes `m`. */
function ref (m: StoredMessage): StoredRef {
  return { peer: m.peer, seq: m.seq, size: m.data.byteLength }
}

/** What summary() must say about `messages` (ordered by peer, then seq) and `clocks`. */
function summaryOf (messages: readonly StoredMessage[], clocks: ReadonlyArray<[string, PeerClock]> = []): ReturnType<typeof plainSummary> {
  const queues = new Map<string, { peer: string, count: number, bytes: number, nextSeq: number }>()
  for (const m of messages) {
    const q = queues.get(m.peer) ?? { peer: m.peer, count: 0, bytes: 0, nextSeq: 0 }
    q.count++
    q.bytes += m.data.byteLength
    q.nextSeq = Math.max(q.nextSeq, m.seq + 1)
    queues.set(m.peer, q)
  }
  return plainSummary({ queues: [...queues.values()].sort((a, b) => a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0), clocks: new Map(clocks) })
}

function plainSummary (summary: StoreSummary): { queues: object[], clocks: Array<[string, PeerClock]> } {
  return { queues: summary.queues.map((q) => ({ ...q })), clocks: [...summary.clocks].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0) }
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
  },
  {
    // Every write waits for LevelDB, as with `sync` (and as writes too large for the journal do).
    name: 'LevelStore without the journal',
    make: async () => {
      const dir = await tempDir()
      const subject: Subject = {
        store: await LevelStore.open(dir, { journal: false }),
        reload: async () => {
          await subject.store.close()
          subject.store = await LevelStore.open(dir, { journal: false })
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
        assert.equal(s.store.durable, name !== 'MemoryStore')
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

    void test('deletes exactly the referenced messages', async () => {
      await withStore(async (s) => {
        await s.store.write({ put: [msg('a', 1), msg('a', 2), msg('a', 3), msg('b', 1)] })
        await s.store.write({ del: [ref(msg('a', 2)), ref(msg('b', 1))] })
        assert.deepEqual(plain(await s.reload()), expected([msg('a', 1), msg('a', 3)]))
        assert.deepEqual(plainSummary(await s.store.summary()), summaryOf([msg('a', 1), msg('a', 3)]))
      })
    })

    void test('applies a batch as puts, then deletes, then clocks', async () => {
      await withStore(async (s) => {
        const clock: PeerClock = { offline: 5, since: 1_700_000_000_000, connected: false }
        await s.store.write({ put: [msg('a', 1), msg('a', 2)], del: [ref(msg('a', 1))], clocks: [['a', clock]] })
        assert.deepEqual(plain(await s.reload()), expected([msg('a', 2)], [['a', clock]]))
      })
    })

    void test('applies concurrent writes in call order', async () => {
      await withStore(async (s) => {
        const newer = msg('a', 1, { data: Uint8Array.of(2) })
        const writes = [
          s.store.write({ put: [msg('a', 1, { data: Uint8Array.of(1) })] }),
          s.store.write({ del: [{ peer: 'a', seq: 1, size: 1 }] }),
          s.store.write({ put: [newer, msg('a', 2)] }),
          s.store.write({ del: [ref(msg('a', 2))] }),
          s.store.write({})
        ]
        await Promise.all(writes)
        assert.deepEqual(plain(await s.reload()), expected([newer]))
        assert.deepEqual(plainSummary(await s.store.summary()), summaryOf([newer]))
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
        await assert.rejects(s.store.write({ del: [{ peer: 'p', seq: NaN, size: 0 }] }), InvalidArgumentError)
        for (const size of [-1, 1.5, NaN, undefined]) {
          await assert.rejects(s.store.write({ del: [{ peer: 'p', seq: 0, size } as unknown as StoredRef] }), InvalidArgumentError)
        }
        await assert.rejects(s.store.write({ clocks: [['p', { offline: NaN, since: 0, connected: false }]] }), InvalidArgumentError)
        // A good write right after still works.
        await s.store.write({ put: [msg('p', 7)] })
        assert.deepEqual(plain(await s.reload()), expected([msg('p', 7)]))
      })
    })

    void test('summary() gives each peer\'s count, bytes and next seq, and every clock, as written', async () => {
      await withStore(async (s) => {
        assert.deepEqual(plainSummary(await s.store.summary()), summaryOf([]))
        const clock: PeerClock = { offline: 7, since: 1_700_000_000_000, connected: true }
        const kept = [msg('a', 0), msg('a', 5), msg('ab', 3, { data: new Uint8Array(1000) }), msg('', 9, { data: new Uint8Array(0) }), msg('\ud800', 2)]
        await s.store.write({ put: [...kept, msg('a', 7), msg('b', 1)], clocks: [['a', clock], ['z', clock]] })
        // The last message of 'a' and all of 'b' go: 'a' ends at 5, 'b' is not summarised any more.
        await s.store.write({ del: [ref(msg('a', 7)), ref(msg('b', 1))] })
        const want = summaryOf([...kept].sort((x, y) => x.peer < y.peer ? -1 : x.peer > y.peer ? 1 : x.seq - y.seq), [['a', clock], ['z', clock]])
        assert.deepEqual(plainSummary(await s.store.summary()), want)
        await s.reload()
        assert.deepEqual(plainSummary(await s.store.summary()), want)
      })
    })

    void test('read() gives up to limit messages of one peer from a seq on, in seq order', async () => {
      await withStore(async (s) => {
        const a = [0, 1, 2, 5, 6, 9, 300].map((seq) => msg('a', seq))
        // Neighbours in key order: a name that 'a' is a prefix of, and the names around it.
        await s.store.write({ put: [...a, msg('ab', 0), msg('ab', 4), msg('', 3), msg('b', 0)] })
        await s.store.write({ put: [msg('a', 1000)], del: [ref(msg('a', 5))] })
        await s.reload()
        const seqs = async (peer: string, from: number, limit: number): Promise<number[]> => (await s.store.read(peer, from, limit)).map((m) => m.seq)
        assert.deepEqual(await seqs('a', 0, 100), [0, 1, 2, 6, 9, 300, 1000])
        assert.deepEqual(await seqs('a', 0, 3), [0, 1, 2])
        assert.deepEqual(await seqs('a', 3, 2), [6, 9])
        assert.deepEqual(await seqs('a', 301, 10), [1000])
        assert.deepEqual(await seqs('a', 1001, 10), [])
        assert.deepEqual(await seqs('a', 0, 0), [])
        assert.deepEqual(await seqs('ab', 0, 10), [0, 4])
        assert.deepEqual(await seqs('', 0, 10), [3])
        assert.deepEqual(await seqs('nobody', 0, 10), [])
        const got = await s.store.read('a', 9, 1)
        assert.deepEqual(plain({ messages: got, clocks: new Map() }), expected([msg('a', 9)]))
        const bad: Array<[string, number, number]> = [[1 as unknown as string, 0, 1], ['a', -1, 1], ['a', 1.5, 1], ['a', 0, -1], ['a', 0, 0.5]]
        for (const [peer, from, limit] of bad) await assert.rejects(s.store.read(peer, from, limit), InvalidArgumentError)
      })
    })

    void test('counts, read() and load() agree with a model through random puts, deletes and clocks', async () => {
      const peers = ['a', 'ab', '', 'b\u00e9']
      await fc.assert(fc.asyncProperty(
        fc.array(fc.array(fc.tuple(fc.constantFrom('put', 'put', 'del', 'clock'), fc.nat(3), fc.nat(50), fc.nat(200)), { maxLength: 6 }), { maxLength: 12 }),
        async (rounds) => {
          await withStore(async (s) => {
            const model = new Map<string, Map<number, StoredMessage>>(peers.map((p) => [p, new Map()]))
            const clocks = new Map<string, PeerClock>()
            const next = new Map<string, number>()
            for (const round of rounds) {
              // One write() per operation, all in the same tick: LevelStore merges them into one batch.
              const writes: Array<Promise<void>> = []
              for (const [op, p, pick, size] of round) {
                const peer = peers[p]!
                const queue = model.get(peer)!
                if (op === 'put') {
                  const seq = (next.get(peer) ?? 0) + pick
                  next.set(peer, seq + 1)
                  const m = msg(peer, seq, { data: new Uint8Array(size).fill(seq & 0xff) })
                  queue.set(seq, m)
                  writes.push(s.store.write({ put: [m] }))
                } else if (op === 'del' && queue.size > 0) {
                  const seq = [...queue.keys()][pick % queue.size]!
                  const m = queue.get(seq)!
                  queue.delete(seq)
                  writes.push(s.store.write({ del: [ref(m)] }))
                } else if (op === 'clock') {
                  const clock = { offline: pick, since: size, connected: pick % 2 === 0 }
                  clocks.set(peer, clock)
                  writes.push(s.store.write({ clocks: [[peer, clock]] }))
                }
              }
              await Promise.all(writes)
            }
            const all = [...model.entries()].sort(([x], [y]) => x < y ? -1 : x > y ? 1 : 0)
              .flatMap(([, q]) => [...q.values()].sort((x, y) => x.seq - y.seq))
            for (const reload of [false, true]) {
              if (reload) await s.reload()
              assert.deepEqual(plainSummary(await s.store.summary()), summaryOf(all, [...clocks]))
              assert.deepEqual(plain(await s.store.load()), expected(all, [...clocks]))
              for (const peer of peers) {
                const mine = all.filter((m) => m.peer === peer)
                assert.deepEqual(plain({ messages: await s.store.read(peer, 0, mine.length + 1), clocks: new Map() }), expected(mine))
              }
            }
          })
        }
      ), { numRuns: name === 'LevelStore' ? 25 : 200 })
    })

    void test('claim(): a second owner gets StoreInUseError; the same owner may claim again; release() and close() end a claim', async () => {
      const s = await make()
      const first = {}
      const second = {}
      try {
        s.store.claim(first)
        s.store.claim(first)
        assert.throws(() => { s.store.claim(second) }, (err: unknown) => {
          assert.ok(err instanceof StoreInUseError, String(err))
          assert.ok(err instanceof StoreError, 'a StoreError')
          assert.equal(err.code, 'ERR_STORE_IN_USE')
          assert.equal(err.name, 'StoreInUseError')
          return true
        })
        s.store.release(second)
        assert.throws(() => { s.store.claim(second) }, StoreInUseError)
        s.store.release(first)
        s.store.claim(second)
        assert.throws(() => { s.store.claim(first) }, StoreInUseError)
        // The claim does not stop the store working for its owner.
        await s.store.write({ put: [msg('p', 0)] })
        assert.equal((await s.store.load()).messages.length, 1)
      } finally {
        await s.close()
      }
      s.store.claim(first)
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

void test('MemoryStore refuses a put of a stored message, and a delete of one not stored or with another size, writing none of the batch', async () => {
  const store = new MemoryStore()
  await store.write({ put: [msg('p', 0), msg('p', 1)] })
  const before = plain(await store.load())
  const bad: Array<[string, Parameters<MemoryStore['write']>[0]]> = [
    ['a put of a stored seq', { put: [msg('p', 2), msg('p', 1)] }],
    ['the same seq put twice', { put: [msg('p', 3), msg('p', 3)] }],
    ['a delete of a seq never stored', { put: [msg('p', 4)], del: [{ peer: 'p', seq: 9, size: 4 }] }],
    ['a delete of another peer', { del: [{ peer: 'q', seq: 0, size: 4 }] }],
    ['a delete with the wrong size', { del: [{ peer: 'p', seq: 0, size: 99 }] }],
    ['a delete twice', { del: [ref(msg('p', 0)), ref(msg('p', 0))] }]
  ]
  for (const [what, batch] of bad) {
    await assert.rejects(store.write(batch), InvalidArgumentError, what)
    assert.deepEqual(plain(await store.load()), before, what)
  }
  // Put after delete, in call order, is a new message.
  await store.write({ put: [msg('p', 5)], del: [ref(msg('p', 5)), ref(msg('p', 0))] })
  await store.write({ put: [msg('p', 0)] })
  assert.deepEqual(plain(await store.load()), expected([msg('p', 0), msg('p', 1)]))
  await store.close()
})

void describe('LevelStore', () => {
  function dbOf (store: LevelStore): Level<string, Uint8Array> {
    return (store as unknown as { db: Level<string, Uint8Array> }).db
  }

  void test('keeps messages and clocks across close and reopen', async () => {
    const dir = await tempDir()
    const clock: PeerClock = { offline: 42, since: 1_700_000_000_000, connected: false }
    const first = await LevelStore.open(dir)
    await first.write({ put: [msg('a', 1), msg('b', 1)], clocks: [['a', clock]] })
    await first.write({ put: [msg('a', 2)], del: [ref(msg('b', 1))] })
    await first.close()
    const second = await LevelStore.open(dir)
    try {
      assert.deepEqual(plain(await second.load()), expected([msg('a', 1), msg('a', 2)], [['a', clock]]))
    } finally {
      await second.close()
    }
  })

  // Group commit is what a write without the journal waits for (and what the journal is written behind).
  void test('merges the write() calls of one tick into one LevelDB batch', async () => {
    const store = await LevelStore.open(await tempDir(), { journal: false })
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
    const store = await LevelStore.open(await tempDir(), { journal: false })
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

  void test('without the journal, a failing write rejects every merged call with StoreError, and none of it is stored', async () => {
    const dir = await tempDir()
    const errors: string[] = []
    const logger: Logger = { debug () {}, info () {}, warn () {}, error (message) { errors.push(message) } }
    const store = await LevelStore.open(dir, { logger, journal: false })
    await store.write({ put: [msg('p', 0)] })
    const batches = store.batchesWritten
    // The database fails under the store, as it would on a broken disk.
    await dbOf(store).close()
    const writes = [store.write({ put: [msg('p', 1)] }), store.write({ put: [msg('p', 2)], del: [ref(msg('p', 0))] })]
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

  void test('without the journal, a batch that fails in LevelDB rejects its calls, and later batches still go through', async () => {
    const dir = await tempDir()
    const store = await LevelStore.open(dir, { journal: false })
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

  void test('rejects corrupt data on load() with StoreCorruptError', async () => {
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
          assert.ok(err instanceof StoreCorruptError, what)
          assert.equal(err.directory, dir, what)
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
    await raw2.put('v', Uint8Array.of(LEVEL_STORE_FORMAT + 1))
    await raw2.close()
    await assert.rejects(LevelStore.open(newer), (err: unknown) => err instanceof StoreError && err.message.includes(`format version ${LEVEL_STORE_FORMAT + 1}`))
    // The refused directories were released: a raw open works.
    const check = new Level(newer)
    await check.open()
    await check.close()
  })

  void test('refuses a directory that holds other files, before writing anything there; opens an empty one, a missing one, and its own again', async () => {
    const home = await tempDir()
    await writeFile(join(home, 'notes.txt'), 'mine')
    await mkdir(join(home, 'photos'))
    await assert.rejects(LevelStore.open(home), (err: unknown) => {
      assert.ok(err instanceof StoreError, String(err))
      assert.match(err.message, /is not a snakemq queue store: it holds 2 entries \("notes.txt", "photos"\) and no LevelDB files/)
      return true
    })
    assert.deepEqual((await readdir(home)).sort(), ['notes.txt', 'photos'])
    const file = join(home, 'notes.txt')
    await assert.rejects(LevelStore.open(file), (err: unknown) => err instanceof StoreError && /it is a file/.test(err.message))
    // The refusal let go of the location: the same process can open it once it is a store's.
    await rm(join(home, 'photos'), { recursive: true })
    await rm(file)
    await (await LevelStore.open(home)).close()
    const missing = join(home, 'queues')
    const store = await LevelStore.open(missing)
    await store.close()
    await (await LevelStore.open(missing)).close()
  })

  void test('opens a format-1 store written by the previous version: upgraded to format 2 with its counts, contents unchanged', async () => {
    const dir = await tempDir()
    await cp(FORMAT1, dir, { recursive: true })
    const saved = JSON.parse(await readFile(FORMAT1_CONTENTS, 'utf8')) as {
      messages: Array<{ peer: string, seq: number, uuid: string, expiry: number | 'Infinity', flags: number, data: string }>
      clocks: Array<[string, PeerClock]>
    }
    const messages: StoredMessage[] = saved.messages.map((m) => ({
      peer: m.peer, seq: m.seq, uuid: Buffer.from(m.uuid, 'hex'), expiry: m.expiry === 'Infinity' ? Infinity : m.expiry, flags: m.flags, data: Buffer.from(m.data, 'hex')
    }))
    assert.equal(messages.length, 206)
    const infos: string[] = []
    const logger: Logger = { debug () {}, info (message) { infos.push(message) }, warn () {}, error () {} }
    for (const run of ['upgrade', 'again']) {
      const store = await LevelStore.open(dir, { logger })
      try {
        assert.deepEqual(plainSummary(await store.summary()), summaryOf(messages, saved.clocks), run)
        assert.deepEqual(plain(await store.load()), expected(messages, saved.clocks), run)
      } finally {
        await store.close()
      }
    }
    assert.equal(infos.filter((m) => m === 'queue store upgraded from format 1').length, 1)
    const raw = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    try {
      assert.deepEqual([...(await raw.get('v')) ?? []], [LEVEL_STORE_FORMAT])
      assert.equal((await raw.keys({ gte: 'n', lt: 'o' }).all()).length, 4)
    } finally {
      await raw.close()
    }
  })

  void test('counts that disagree with the messages: load() and summary() reject with StoreCorruptError, later opens refuse, salvage sets them right', async () => {
    const dir = await tempDir()
    const first = await LevelStore.open(dir)
    await first.write({ put: [msg('a', 0), msg('a', 1), msg('a', 2)] })
    await first.close()
    // Behind the store's back, as a lost batch would leave it: a message of 'a'
    // gone without its count, and one of 'b' without any.
    const raw = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    await raw.del('m0061.00000000000001')
    await raw.put('m0062.00000000000000', new Uint8Array(40))
    await raw.close()
    const store = await LevelStore.open(dir)
    try {
      await assert.rejects(store.summary(), (err: unknown) => err instanceof StoreCorruptError && err.directory === dir && /"b" has messages but no count/.test(err.message))
      await assert.rejects(store.load(), (err: unknown) => {
        assert.ok(err instanceof StoreCorruptError, String(err))
        assert.deepEqual(err.problems, [
          'the count of "a" says 3 messages (9 bytes), and there are 2 (6 bytes)',
          'the count of "b" says 0 messages (0 bytes), and there are 1 (12 bytes)'
        ])
        return true
      })
    } finally {
      await store.close()
    }
    await assert.rejects(LevelStore.open(dir), (err: unknown) => err instanceof StoreCorruptError && /an earlier open found it corrupt/.test(err.message))
    const errors: string[] = []
    const logger: Logger = { debug () {}, info () {}, warn () {}, error (message) { errors.push(message) } }
    const salvaged = await LevelStore.open(dir, { salvage: true, logger })
    try {
      const report = salvaged.salvaged
      assert.ok(report !== null, 'a report')
      assert.equal(report.directory, dir)
      assert.deepEqual(report.queues, [
        { peer: 'a', expected: 3, found: 2, expectedBytes: 9, foundBytes: 6 },
        { peer: 'b', expected: 0, found: 1, expectedBytes: 0, foundBytes: 12 }
      ])
      assert.equal(report.lostMessages, 1)
      assert.match(report.problems.join(), /an earlier open found it corrupt/)
      assert.deepEqual(errors, ['queue store salvaged'])
      assert.deepEqual(plainSummary(await salvaged.summary()).queues, [{ peer: 'a', count: 2, bytes: 6, nextSeq: 3 }, { peer: 'b', count: 1, bytes: 12, nextSeq: 1 }])
      assert.equal((await salvaged.load()).messages.length, 3)
    } finally {
      await salvaged.close()
    }
    const after = await LevelStore.open(dir)
    try {
      assert.equal(after.salvaged, null)
      assert.equal((await after.load()).messages.length, 3)
    } finally {
      await after.close()
    }
  })

  void describe('in a child process', () => {
    /** Starts the writer fixture and resolves once it printed "written" (its writes resolved). */
    async function startWriter (dir: string, count: number, mode: 'burst' | 'serial' = 'burst', journal: 'journal' | 'no-journal' = 'journal'): Promise<ReturnType<typeof spawn>> {
      const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, String(count), mode, journal], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
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

    for (const [mode, journal] of [['burst', 'journal'], ['serial', 'journal'], ['burst', 'no-journal']] as const) {
    void test(`every message whose write() resolved survives the writer being killed with SIGKILL (${mode}, ${journal})`, async () => {
      const dir = await tempDir()
      const count = 5000
      const child = await startWriter(dir, count, mode, journal)
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
    }

    /** Overwrites 64 bytes at offset 200 of the newest LevelDB log in `dir` with garbage. */
    async function damageLog (dir: string): Promise<void> {
      const log = (await readdir(dir)).filter((f) => f.endsWith('.log')).sort().at(-1)
      assert.ok(log !== undefined, 'a log file')
      const file = await open(join(dir, log), 'r+')
      try {
        assert.ok((await file.stat()).size > 264, 'a log longer than the damage')
        await file.write(new Uint8Array(64).fill(0x5a), 0, 64, 200)
      } finally {
        await file.close()
      }
    }

    async function listing (dir: string): Promise<Array<[string, number]>> {
      const names = (await readdir(dir)).filter((n) => n !== 'LOCK').sort()
      return await Promise.all(names.map(async (n): Promise<[string, number]> => [n, (await stat(join(dir, n))).size]))
    }

    void test('5,000 queued, SIGKILL, garbage in the log: open refuses with StoreCorruptError naming the directory, and keeps refusing until salvaged', async () => {
      const dir = await tempDir()
      await kill(await startWriter(dir, 5000, 'burst', 'no-journal'))
      await damageLog(dir)
      await assert.rejects(LevelStore.open(dir), (err: unknown) => {
        assert.ok(err instanceof StoreCorruptError, String(err))
        assert.ok(err instanceof StoreError, 'a StoreError')
        assert.equal(err.name, 'StoreCorruptError')
        assert.equal(err.code, 'ERR_STORE_CORRUPT')
        assert.equal(err.directory, dir)
        assert.ok(err.message.includes(dir), err.message)
        assert.match(err.message, /LevelDB dropped \d+ bytes of its log while recovering/)
        assert.match(err.message, /salvage: true/)
        return true
      })
      // LevelDB already dropped the records while opening; the refusal stays.
      await assert.rejects(LevelStore.open(dir), (err: unknown) => err instanceof StoreCorruptError && /an earlier open found it corrupt/.test(err.message))
      const errors: string[] = []
      const logger: Logger = { debug () {}, info () {}, warn () {}, error (message) { errors.push(message) } }
      const salvaged = await LevelStore.open(dir, { salvage: true, logger })
      try {
        const report = salvaged.salvaged!
        assert.ok(report.droppedBytes > 0, `dropped ${report.droppedBytes}`)
        assert.match(report.problems.join('\n'), /an earlier open found it corrupt: LevelDB dropped/)
        assert.deepEqual(errors, ['queue store salvaged'])
        // The batch holding all 5,000 is gone, and its counts with it: nothing left, nothing counted.
        assert.deepEqual((await salvaged.load()).messages, [])
        assert.deepEqual((await salvaged.summary()).queues, [])
      } finally {
        await salvaged.close()
      }
      const after = await LevelStore.open(dir)
      await after.close()
    })

    void test('garbage in a log of many batches: salvage reports, per peer, the messages the counts expected and those left', async () => {
      const dir = await tempDir()
      await kill(await startWriter(dir, 3000, 'serial', 'no-journal'))
      await damageLog(dir)
      await assert.rejects(LevelStore.open(dir), StoreCorruptError)
      const salvaged = await LevelStore.open(dir, { salvage: true })
      try {
        const report = salvaged.salvaged!
        assert.deepEqual(report.queues.map((q) => [q.peer, q.expected]), [['peer-0', 1000], ['peer-1', 1000], ['peer-2', 1000]])
        const left = (await salvaged.load()).messages
        assert.ok(left.length > 0 && left.length < 3000, `${left.length} left`)
        assert.equal(report.lostMessages, 3000 - left.length)
        const kept = new Set(left.map((m) => m.seq))
        for (const q of report.queues) {
          const lost = Array.from({ length: 3000 }, (_, seq) => seq).filter((seq) => `peer-${seq % 3}` === q.peer && !kept.has(seq))
          assert.equal(q.found, q.expected - lost.length, q.peer)
          assert.equal(q.expectedBytes - q.foundBytes, lost.reduce((sum, seq) => sum + `message ${seq}`.length, 0), q.peer)
        }
        assert.deepEqual(plainSummary(await salvaged.summary()), summaryOf(left))
      } finally {
        await salvaged.close()
      }
    })

    void test('CURRENT deleted: open refuses without touching the files; salvage repairs the store and every message is back', async () => {
      const dir = await tempDir()
      await kill(await startWriter(dir, 5000))
      // Once more, so the messages move from the log into a table (where a new, empty database would delete them).
      await (await LevelStore.open(dir)).close()
      await rm(join(dir, 'CURRENT'))
      const before = await listing(dir)
      await assert.rejects(LevelStore.open(dir), (err: unknown) => err instanceof StoreCorruptError && err.directory === dir && /CURRENT file is missing/.test(err.message))
      assert.deepEqual(await listing(dir), before)
      const salvaged = await LevelStore.open(dir, { salvage: true })
      try {
        assert.match(salvaged.salvaged!.problems.join(), /CURRENT file is missing/)
        assert.deepEqual(salvaged.salvaged!.queues, [])
        const { messages } = await salvaged.load()
        assert.deepEqual(messages.map((m) => m.seq).sort((a, b) => a - b), Array.from({ length: 5000 }, (_, i) => i))
      } finally {
        await salvaged.close()
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
