// Messaging as streams: `messages()` as the source of it-pipe and Node stream
// pipelines, `sink()` as their destination, and backpressure from a slow
// consumer all the way back to the sender's source. Real Messaging pairs over loopback.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { pipe } from 'it-pipe'
import { Link, Messaging, type Message } from '../src/index.ts'
import { pair, waitFor } from './helpers/util.ts'

/** Polls `cond` every few milliseconds until it holds; fails after `ms`. */
async function until (cond: () => boolean, what: string, ms = 10_000, every = 5): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, every))
  }
}

/** Lets every pending callback and I/O event run a few times over. */
async function settle (ms = 100): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** An it-pipe stage that ends the pipeline after `n` items. */
function take<T> (n: number) {
  return async function * (source: AsyncIterable<T>): AsyncGenerator<T> {
    let i = 0
    for await (const item of source) {
      yield item
      if (++i === n) return
    }
  }
}

async function collect<T> (source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of source) out.push(item)
  return out
}

const text = (m: Message): string => Buffer.from(m.data).toString()

/** A source that counts how many items were pulled from it. */
function counted (n: number, make: (i: number) => string | Uint8Array = (i) => `m${i}`): { source: Generator<string | Uint8Array>, pulled: () => number } {
  let pulled = 0
  function * source (): Generator<string | Uint8Array> {
    for (let i = 0; i < n; i++) { pulled = i + 1; yield make(i) }
  }
  return { source: source(), pulled: () => pulled }
}

/** A Writable that holds every write until `open()` is called, then takes them at once. */
function gatedWritable (onMessage: (m: Message) => void): { writable: Writable, open: () => void, writes: () => number } {
  let gate: (() => void) | null = null
  let isOpen = false
  let writes = 0
  const gateOpen = new Promise<void>((resolve) => { gate = resolve })
  const writable = new Writable({
    objectMode: true,
    highWaterMark: 1,
    write (m: Message, _encoding, done) {
      writes++
      const handle = (): void => { onMessage(m); m.ack(); done() }
      if (isOpen) handle()
      else void gateOpen.then(handle)
    }
  })
  return { writable, open: () => { isOpen = true; gate?.() }, writes: () => writes }
}

test('it-pipe: messages() is a pipeline source, in order, and ending the pipeline leaves the rest to the next consumer', async () => {
  const { a, b } = await pair()
  try {
    for (let i = 0; i < 10; i++) await b.send('alice', `m${i}`)
    const first = await pipe(a.messages(), take<Message>(4), async (source) => (await collect(source)).map(text))
    assert.deepEqual(first, ['m0', 'm1', 'm2', 'm3'])
    // Nothing was read ahead: the next consumer starts where the pipeline stopped.
    const rest = await pipe(a.messages(), take<Message>(6), async (source) => (await collect(source)).map(text))
    assert.deepEqual(rest, ['m4', 'm5', 'm6', 'm7', 'm8', 'm9'])
    await until(() => b.queued('alice') === 0, 'every message is acknowledged')
  } finally {
    await a.close()
    await b.close()
  }
})

test('it-pipe: sink() sends every item with its ttl and holds the source back while the queue is full', async () => {
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob', queueLimits: { messages: 5 } })
  const linkA = new Link()
  const a = new Messaging(linkA, { identity: 'alice' })
  try {
    const { source, pulled } = counted(20)
    // Alice is not connected yet: nothing can leave bob's queue.
    const sending = pipe(source, b.sink('alice', { ttl: 60 }))
    await until(() => b.queued('alice') === 5, 'the queue is full')
    await settle()
    assert.equal(b.queued('alice'), 5)
    assert.equal(pulled(), 6, 'five queued and one waiting for room; no more pulled from the source')

    const listener = await linkA.listen({ port: 0 })
    linkB.connect({ port: listener.port, reconnect: { minDelay: 20, maxDelay: 200 } })
    const received = pipe(a.messages(), take<Message>(20), async (source) => await collect(source))
    await sending
    const got = await received
    assert.deepEqual(got.map(text), Array.from({ length: 20 }, (_, i) => `m${i}`))
    for (const m of got) assert.ok(m.ttl !== null && m.ttl > 0 && m.ttl <= 60, `ttl ${m.ttl}`)
  } finally {
    await a.close()
    await b.close()
  }
})

test('sink() rejects, and the pipeline with it, when messaging is closed mid-stream', async () => {
  const link = new Link()
  const b = new Messaging(link, { identity: 'bob', queueLimits: { messages: 2 } })
  const { source } = counted(10)
  const sending = pipe(source, b.sink('alice'))
  await until(() => b.queued('alice') === 2, 'the queue is full')
  await b.close()
  await assert.rejects(sending, { name: 'ClosedError' })
})

test('Node streams: Readable.from(messages()) into a slow Writable holds back the sender\'s Readable through acknowledgements', async () => {
  const { a, b } = await pair({}, { queueLimits: { messages: 4 } })
  const N = 40
  try {
    const got: string[] = []
    const { writable, open, writes } = gatedWritable((m) => { got.push(text(m)) })
    const receiving = pipeline(Readable.from(a.messages({ ack: 'manual' })), take<Message>(N), writable)

    const { source, pulled } = counted(N)
    const sending = pipeline(Readable.from(source), b.sink('alice', { ttl: 30 }))
    // If an assertion below fails, closing rejects these; the failure to report is the assertion's.
    for (const p of [sending, receiving]) p.catch(() => {})

    await until(() => b.queued('alice') === 4 && writes() === 1, 'bob\'s queue is full and alice\'s Writable is busy')
    await settle()
    // Four messages unacknowledged, one waiting for room in send(), one in the Readable's buffer.
    assert.ok(pulled() <= 6, `pulled ${pulled()} of ${N} while the Writable was blocked`)
    assert.equal(b.queued('alice'), 4)

    open()
    await Promise.all([sending, receiving])
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => `m${i}`))
    await until(() => b.queued('alice') === 0, 'every message is acknowledged')
  } finally {
    await a.close()
    await b.close()
  }
})

test('Node streams: with plain snakeMQ (no acknowledgements) backpressure goes through TCP to the sender\'s Readable', async () => {
  const size = 64 * 1024
  const N = 640 // 40 MiB: more than the loopback socket buffers hold
  const { a, b } = await pair(
    { plainSnakeMQ: true, receiveBuffer: 2 },
    { plainSnakeMQ: true, queueLimits: { bytes: 4 * size } }
  )
  try {
    assert.equal(a.isConnected('bob'), true)
    let received = 0
    let inOrder = true
    const { writable, open, writes } = gatedWritable((m) => {
      if (Buffer.from(m.data).readUInt32BE(0) !== received) inOrder = false
      received++
    })
    const receiving = pipeline(Readable.from(a.messages()), take<Message>(N), writable)
    const { source, pulled } = counted(N, (i) => { const buf = Buffer.alloc(size); buf.writeUInt32BE(i, 0); return buf })
    const sending = pipeline(Readable.from(source), b.sink('alice'))
    for (const p of [sending, receiving]) p.catch(() => {})

    // The socket buffers take a few MiB before the sender stalls: wait until the source is no longer pulled.
    await until(() => writes() === 1, 'alice\'s Writable is busy')
    let last = -1
    let still = 0
    await until(() => { still = pulled() === last ? still + 1 : 0; last = pulled(); return still >= 10 }, 'the sender stalls', 30_000, 20)
    const stalledAt = pulled()
    assert.ok(stalledAt < N, `pulled ${stalledAt} of ${N} while the receiver was blocked`)
    assert.equal(b.queued('alice'), 4, 'bob\'s queue is full')
    await settle(200)
    assert.equal(pulled(), stalledAt, 'the source is not pulled while the receiver is blocked')

    open()
    await Promise.all([sending, receiving])
    assert.equal(received, N)
    assert.ok(inOrder)
  } finally {
    await a.close()
    await b.close()
  }
})

test('Node streams: stream.pipeline ending early ends the messages() consumer; later messages go to the next one', async () => {
  const { a, b } = await pair()
  try {
    for (let i = 0; i < 10; i++) await b.send('alice', `m${i}`)
    const got: string[] = []
    const sink = new Writable({ objectMode: true, write (m: Message, _e, done) { got.push(text(m)); done() } })
    await pipeline(Readable.from(a.messages()), take<Message>(3), sink)
    assert.deepEqual(got, ['m0', 'm1', 'm2'])
    // Readable.from() reads ahead by its highWaterMark (1): with automatic acks that
    // message was taken, and leaving counts as received (see docs/TUTORIAL.md).
    const rest = await pipe(a.messages(), take<Message>(6), async (source) => (await collect(source)).map(text))
    assert.deepEqual(rest, ['m4', 'm5', 'm6', 'm7', 'm8', 'm9'])
  } finally {
    await a.close()
    await b.close()
  }
})

test('Node streams with manual acks: a pipeline ending early hands its unacknowledged read-ahead to the next consumer', async () => {
  const { a, b } = await pair()
  try {
    for (let i = 0; i < 10; i++) await b.send('alice', `m${i}`)
    const got: string[] = []
    const sink = new Writable({ objectMode: true, write (m: Message, _e, done) { got.push(text(m)); m.ack(); done() } })
    await pipeline(Readable.from(a.messages({ ack: 'manual' })), take<Message>(3), sink)
    assert.deepEqual(got, ['m0', 'm1', 'm2'])
    const rest = await pipe(a.messages(), take<Message>(7), async (source) => (await collect(source)).map(text))
    assert.deepEqual(rest, ['m3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9'])
    if (b.queued('alice') > 0) await waitFor(b, 'delivered', () => b.queued('alice') === 0)
    assert.equal(b.queued('alice'), 0, 'every message was acknowledged exactly through one consumer')
  } finally {
    await a.close()
    await b.close()
  }
})

test('Node streams: sink() is a stream.pipeline destination for a byte stream of lines', async () => {
  const { a, b } = await pair()
  try {
    const lines = Readable.from(['one\ntwo\nthr', 'ee\nfour\n'])
    async function * splitLines (source: AsyncIterable<string>): AsyncGenerator<string> {
      let rest = ''
      for await (const chunk of source) {
        const parts = (rest + chunk).split('\n')
        rest = parts.pop()!
        yield * parts
      }
      if (rest !== '') yield rest
    }
    await pipeline(lines, splitLines, b.sink('alice'))
    const got = await pipe(a.messages(), take<Message>(4), async (source) => (await collect(source)).map(text))
    assert.deepEqual(got, ['one', 'two', 'three', 'four'])
  } finally {
    await a.close()
    await b.close()
  }
})
