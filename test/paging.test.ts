// A persistent backlog is kept in the store, not in memory: past the window,
// messages live only in LevelDB and are read back in batches as the queue
// drains; a restart reads the store's summary, not its messages. Order, TTL,
// acknowledgement and the counts stay what they are without paging.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Link, LevelStore, Messaging, type QueueStore, type MessagingEvents } from '../src/index.ts'
import { take, waitFor } from './helpers/util.ts'
import { Outbox, QueueEntry, QueueTotals, type OutboxHost } from '../src/messaging/outbox.ts'

async function tempDir (): Promise<string> { return await mkdtemp(join(tmpdir(), 'snakemq-paging-')) }

/** A store that counts what Messaging asks of it. */
function counted (store: QueueStore): { store: QueueStore, calls: { load: number, summary: number, read: number } } {
  const calls = { load: 0, summary: 0, read: 0 }
  return {
    calls,
    store: {
      durable: store.durable,
      load: async () => { calls.load++; return await store.load() },
      summary: async () => { calls.summary++; return await store.summary() },
      read: async (peer, from, limit) => { calls.read++; return await store.read(peer, from, limit) },
      write: async (batch) => { await store.write(batch) },
      claim: (owner) => { store.claim(owner) },
      release: (owner) => { store.release(owner) },
      close: async () => { await store.close() }
    }
  }
}

/** Entries of `mq`'s outbox for `peer` held in memory (what paging bounds). */
function inMemory (mq: Messaging, peer: string): number {
  const q = (mq as unknown as { queues: Map<string, { entries: () => Iterable<unknown> }> }).queues.get(peer)
  return q === undefined ? 0 : [...q.entries()].length
}

/** The counter in front of a message's data. */
const indexOf = (data: Uint8Array): number => new DataView(data.buffer, data.byteOffset, 4).getUint32(0)
const payload = (i: number): Uint8Array => { const b = new Uint8Array(16); new DataView(b.buffer).setUint32(0, i); return b }

/** bob connects to `mq`'s listener and takes `n` messages. */
async function bobTakes (port: number, n: number): Promise<{ got: number[], bob: Messaging }> {
  const link = new Link()
  const bob = new Messaging(link, { identity: 'bob' })
  link.connect({ port })
  const got = (await take(bob, n)).map((m) => indexOf(m.data))
  return { got, bob }
}

test('a backlog far deeper than the window keeps only the window in memory, and reaches the peer in order, once', async () => {
  const dir = await tempDir()
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  const store = await LevelStore.open(dir)
  const alice = new Messaging(link, { identity: 'alice', store, persistentWindow: { messages: 64 } })
  try {
    const count = 5000
    await Promise.all(Array.from({ length: count }, async (_, i) => { await alice.send('bob', payload(i), { persistent: true }) }))
    assert.equal(alice.queued('bob'), count)
    assert.ok(inMemory(alice, 'bob') <= 64, `${inMemory(alice, 'bob')} entries in memory`)
    const { got, bob } = await bobTakes(port, count)
    assert.deepEqual(got, Array.from({ length: count }, (_, i) => i))
    if (alice.queued('bob') > 0) await waitFor(alice, 'delivered', () => alice.queued('bob') === 0)
    await bob.close()
  } finally {
    await alice.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('a restart reads the summary and at most a first batch, not the messages; the backlog is read in batches as it drains, each message once', async () => {
  const dir = await tempDir()
  const count = 3000
  {
    const store = await LevelStore.open(dir)
    const first = new Messaging(new Link(), { identity: 'alice', store })
    await Promise.all(Array.from({ length: count }, async (_, i) => { await first.send('bob', payload(i), { persistent: true }) }))
    await first.close()
  }
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  const { store, calls } = counted(await LevelStore.open(dir))
  const alice = new Messaging(link, { identity: 'alice', store, persistentWindow: { messages: 100 } })
  try {
    await alice.ready()
    // The summary, and at most the first batch (read ahead for when bob connects).
    assert.equal(calls.load, 0)
    assert.equal(calls.summary, 1)
    assert.ok(calls.read <= 1, `${calls.read} reads before bob connects`)
    assert.equal(alice.queued('bob'), count)
    assert.ok(inMemory(alice, 'bob') <= 50, `${inMemory(alice, 'bob')} in memory before bob connects`)
    const { got, bob } = await bobTakes(port, count)
    assert.deepEqual(got, Array.from({ length: count }, (_, i) => i))
    assert.ok(calls.read >= count / 50, `${calls.read} reads of at most 50`)
    assert.equal(calls.load, 0)
    await bob.close()
  } finally {
    await alice.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('messages that are not persistent, sent behind a paged backlog, wait for it: the order is kept', async () => {
  const dir = await tempDir()
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  const alice = new Messaging(link, { identity: 'alice', store: await LevelStore.open(dir), persistentWindow: { messages: 16 } })
  try {
    for (let i = 0; i < 100; i++) await alice.send('bob', payload(i), { persistent: true })
    for (let i = 100; i < 110; i++) await alice.send('bob', payload(i))
    for (let i = 110; i < 160; i++) await alice.send('bob', payload(i), { persistent: true })
    assert.equal(alice.queued('bob'), 160)
    const { got, bob } = await bobTakes(port, 160)
    assert.deepEqual(got, Array.from({ length: 160 }, (_, i) => i))
    await bob.close()
  } finally {
    await alice.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('paged messages whose TTL runs out while the peer is away are dropped, with drop events, and queued() stays exact', async () => {
  const dir = await tempDir()
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  const alice = new Messaging(link, { identity: 'alice', store: await LevelStore.open(dir), persistentWindow: { messages: 16 } })
  const drops: Array<MessagingEvents['drop'][0]> = []
  alice.on('drop', (d) => drops.push(d))
  try {
    const short = new Set<string>()
    for (let i = 0; i < 100; i++) short.add((await alice.send('bob', payload(i), { persistent: true, ttl: 0.5 })).uuid)
    for (let i = 100; i < 120; i++) await alice.send('bob', payload(i), { persistent: true })
    assert.equal(alice.queued('bob'), 120)
    while (drops.length < 100) await waitFor(alice, 'drop', () => true, 5000)
    assert.ok(drops.every((d) => d.reason === 'expired' && short.has(d.uuid)))
    assert.equal(alice.queued('bob'), 20)
    const { got, bob } = await bobTakes(port, 20)
    assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => 100 + i))
    await bob.close()
  } finally {
    await alice.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('looking through a paged range for expired messages stops at its end, when the store holds later messages past a gap', async () => {
  // The range is seqs 0..4 (4 itself the first entry kept in memory after it);
  // its last stored messages are gone, so a read from its start finds seq 6, stored after it.
  const reads: number[] = []
  const failures: unknown[] = []
  const host: OutboxHost = {
    delivered () {},
    async readStored (_q, from) {
      reads.push(from)
      if (reads.length > 10) throw new Error('read the same place over and over')
      return [{ peer: 'bob', seq: 6, uuid: new Uint8Array(16), expiry: 3500, flags: 0, data: new Uint8Array(1) }]
    },
    expiredOnRead () {},
    readFailed (_q, err) { failures.push(err) },
    tooLarge () { throw new Error('no peer limit in this test') }
  }
  const q = new Outbox('bob', 0, host, new QueueTotals({ messages: 2, bytes: 1 << 20 }))
  q.restore(1, 1, 4, 1000)
  q.push(QueueEntry.create(new Uint8Array(1), q.nextSeq++, Infinity, 0, false))
  assert.equal(q.range?.end, 4)
  await q.scanRange(2000, () => {})
  assert.deepEqual(failures, [])
  assert.deepEqual(reads, [0], 'one read, which went past the end of the range')
})
