import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  Link, Messaging, DuplicateIdentityError, MessageDroppedError, QueueFullError, AbortError, InvalidArgumentError,
  LevelStore, RpcClient, RpcCodecError, RpcRemoteError, RpcServer, messagingDefaults, type ConnectOptions, type ListenOptions, type Message, type MessagingOptions
} from '../src/index.ts'
import { randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import { DedupWindow } from '../src/messaging/dedup.ts'
import { PlainPeer } from './helpers/plain-peer.ts'
import { LogWatch, RawPeer, connected, pair, payload, take, waitFor } from './helpers/util.ts'


test('messages flow both ways, whichever side listens', async () => {
  const { a, b } = await pair()
  try {
    const fromB = take(a, 3)
    const fromA = take(b, 3)
    for (let i = 0; i < 3; i++) {
      await b.send('alice', payload(i))
      await a.send('bob', payload(100 + i), { ttl: 60 })
    }
    const [atA, atB] = await Promise.all([fromB, fromA])
    assert.deepEqual(atA.map((m) => [m.from, Buffer.from(m.data).readUInt32BE(0), m.ttl]), [['bob', 0, null], ['bob', 1, null], ['bob', 2, null]])
    assert.deepEqual(atB.map((m) => [m.from, Buffer.from(m.data).readUInt32BE(0)]), [['alice', 100], ['alice', 101], ['alice', 102]])
    assert.ok(atB.every((m) => m.ttl !== null && m.ttl >= 59 && m.ttl <= 60))
  } finally {
    await a.close()
    await b.close()
  }
})

test('a message sent before the peer ever connected is delivered once it connects', async () => {
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice' })
  const sent = await a.send('bob', 'waiting for you', { ttl: 600 })
  assert.equal(a.queued('bob'), 1)
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob' })
  linkB.connect({ port: l.port })
  try {
    const [m] = await take(b, 1)
    assert.equal(Buffer.from(m!.data).toString(), 'waiting for you')
    assert.equal(m!.uuid, sent.uuid)
    // The acknowledgement may have come already: wait only if it has not.
    if (a.queued('bob') > 0) await waitFor(a, 'delivered', (e: { uuid: string }) => e.uuid === sent.uuid)
    assert.equal(a.queued('bob'), 0)
  } finally {
    await a.close()
    await b.close()
  }
})

test("send with wait: 'delivered' resolves once the receiving application took the message", async () => {
  const { a, b } = await pair()
  try {
    let taken = false
    const consumer = (async () => {
      for await (const m of a.messages()) {
        taken = true
        assert.equal(Buffer.from(m.data).toString(), 'x')
        break
      }
    })()
    await b.send('alice', 'x', { wait: 'delivered' })
    assert.ok(taken)
    await consumer
  } finally {
    await a.close()
    await b.close()
  }
})

test('a connector reconnects after the listener restarts, and queued messages then flow', async () => {
  const linkA = new Link()
  const l1 = await linkA.listen({ port: 0 })
  const port = l1.port
  const a = new Messaging(linkA, { identity: 'alice' })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob' })
  linkB.connect({ port, reconnect: { minDelay: 20, maxDelay: 100 } })
  let a2: Messaging | null = null
  try {
    await connected(b, 'alice')
    const gone = waitFor(b, 'disconnect')
    await a.close()
    await gone
    await b.send('alice', 'after restart')
    const linkA2 = new Link()
    await linkA2.listen({ port })
    a2 = new Messaging(linkA2, { identity: 'alice' })
    const [m] = await take(a2, 1)
    assert.equal(Buffer.from(m!.data).toString(), 'after restart')
  } finally {
    await b.close()
    await a2?.close()
  }
})

test('a TTL that runs out while the peer is disconnected drops the message with a drop event and a rejected delivery', async () => {
  const link = new Link()
  const a = new Messaging(link, { identity: 'alice' })
  try {
    const drops: Array<{ to: string, uuid: string, reason: string }> = []
    a.on('drop', (d) => drops.push(d))
    const started = Date.now()
    const p = a.send('nobody', 'short-lived', { ttl: 0.2, wait: 'delivered' })
    await assert.rejects(p, (err: unknown) => err instanceof MessageDroppedError && err.reason === 'expired')
    assert.ok(Date.now() - started >= 190)
    assert.equal(drops.length, 1)
    assert.equal(drops[0]!.reason, 'expired')
    assert.equal(a.queued('nobody'), 0)
  } finally {
    await a.close()
  }
})

test('TTL 0 means "only if connected now": refused for an absent peer, delivered to a connected one', async () => {
  const { a, b } = await pair()
  try {
    await assert.rejects(a.send('nobody', 'x', { ttl: 0 }), (err: unknown) => err instanceof MessageDroppedError && err.reason === 'not-connected')
    const got = take(b, 1)
    await a.send('bob', 'now', { ttl: 0 })
    const [m] = await got
    assert.equal(Buffer.from(m!.data).toString(), 'now')
    assert.equal(m!.ttl, 0)
  } finally {
    await a.close()
    await b.close()
  }
})

test('the TTL runs down only while the peer is disconnected', async () => {
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice' })
  try {
    await a.send('bob', 'ttl', { ttl: 10 })
    // While nobody is connected the clock runs; the remaining whole seconds go on the wire.
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const linkB = new Link()
    const b = new Messaging(linkB, { identity: 'bob' })
    linkB.connect({ port: l.port })
    const [m] = await take(b, 1)
    assert.ok(m!.ttl === 8 || m!.ttl === 7, `ttl on the wire ${m!.ttl}`)
    await b.close()
  } finally {
    await a.close()
  }
})

test('a second connection with an identity already connected is closed with DuplicateIdentityError', async () => {
  const { a, b, port } = await pair()
  const linkC = new Link()
  const c = new Messaging(linkC, { identity: 'bob' })
  try {
    const err = waitFor<{ error: Error }>(a, 'error')
    linkC.connect({ port, reconnect: false })
    const { error } = await err
    assert.ok(error instanceof DuplicateIdentityError)
    assert.equal(error.identity, 'bob')
    assert.ok(a.isConnected('bob'), 'the first bob stays connected')
    const got = take(b, 1)
    await a.send('bob', 'still here')
    assert.equal(Buffer.from((await got)[0]!.data).toString(), 'still here')
  } finally {
    await a.close()
    await b.close()
    await c.close()
  }
})

test('keepalive closes a connection whose peer went silent, and keeps a live one open', async () => {
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice', keepalive: { interval: 100, wait: 100 } })
  const raw = await RawPeer.connect(l.port)
  try {
    const errored = waitFor<{ error: Error }>(a, 'error')
    raw.write('000000050000000001' + '0000000402626f62')
    const { error } = await errored
    assert.equal(error.name, 'KeepaliveTimeoutError')
    await raw.closed
    // Two peers that both answer PINGs stay connected across several intervals.
    const linkB = new Link()
    const b = new Messaging(linkB, { identity: 'carol', keepalive: { interval: 50, wait: 100 } })
    linkB.connect({ port: l.port })
    await connected(a, 'carol')
    const pings = new Promise((resolve) => setTimeout(resolve, 500))
    await pings
    assert.ok(a.isConnected('carol'))
    await b.close()
  } finally {
    raw.destroy()
    await a.close()
  }
})

for (const [transport, receiver] of [['tcp', 'the same'], ['ws', 'the same'], ['tcp', 'the default']] as const) {
  test(`${transport}: a large message crossing a slow path is not cut off by the sender's keepalive while the receiver (keepalive: ${receiver}) reads it`, async () => {
    // The receiver reads 100 kB/s: 150 KB takes 1.5 s, well past the sender's keepalive (200 ms and 200 ms).
    // Meanwhile the receiver owes no acknowledgement, and the sender's own bytes sit in the kernel.
    // A receiver on the default keepalive (10 s) cannot know the sender's: it still PINGs in time.
    const keepalive = { interval: 200, wait: 200 }
    const linkA = new Link()
    const l = await linkA.listen({ port: 0, throttle: { incoming: 100_000 }, ...(transport === 'ws' ? { websocket: true } : {}) })
    const a = new Messaging(linkA, { identity: 'alice', ...(receiver === 'the same' ? { keepalive } : {}) })
    const linkB = new Link()
    const b = new Messaging(linkB, { identity: 'bob', keepalive })
    linkB.connect(transport === 'ws' ? { url: `ws://127.0.0.1:${l.port}`, reconnect: { minDelay: 20, maxDelay: 200 } } : { port: l.port, reconnect: { minDelay: 20, maxDelay: 200 } })
    let onError = (_e: { error: Error }): void => {}
    try {
      await connected(b, 'alice')
      const data = Buffer.alloc(150_000, 5)
      const got = take(a, 1)
      // Before, the sender closed the connection with KeepaliveTimeoutError, and again at every resend.
      const failed = new Promise<never>((_resolve, reject) => { onError = (e) => { reject(e.error) } })
      b.on('error', onError)
      await Promise.race([b.send('alice', data, { wait: 'delivered' }), failed])
      assert.ok(Buffer.from((await got)[0]!.data).equals(data))
      assert.equal(b.stats().totals.reconnects, 0)
    } finally {
      b.off('error', onError)
      await b.close()
      await a.close()
    }
  })
}

test("a full queue makes send wait, or reject with QueueFullError when asked", async () => {
  const link = new Link()
  const a = new Messaging(link, { identity: 'alice', queueLimits: { messages: 2 } })
  try {
    await a.send('bob', '1')
    await a.send('bob', '2')
    await assert.rejects(a.send('bob', '3', { whenFull: 'reject' }), QueueFullError)
    const ac = new AbortController()
    const waiting = a.send('bob', '3', { signal: ac.signal })
    ac.abort()
    await assert.rejects(waiting, AbortError)
    const late = new AbortController()
    const timer = setTimeout(() => { late.abort() }, 50)
    await assert.rejects(a.send('bob', '3', { signal: late.signal }), AbortError)
    clearTimeout(timer)
    assert.equal(a.queued('bob'), 2)
  } finally {
    await a.close()
  }
})

test('a byte limit bounds the queue too', async () => {
  const link = new Link()
  const a = new Messaging(link, { identity: 'alice', queueLimits: { bytes: 100 } })
  try {
    await a.send('bob', Buffer.alloc(60))
    await assert.rejects(a.send('bob', Buffer.alloc(60), { whenFull: 'reject' }), QueueFullError)
    await a.send('bob', Buffer.alloc(40))
    assert.equal(a.queued('bob'), 2)
  } finally {
    await a.close()
  }
})

test('a waiting sender gets room as soon as the peer connects and takes messages', async () => {
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice', queueLimits: { messages: 5 } })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob' })
  try {
    const sends = Array.from({ length: 50 }, async (_, i) => await a.send('bob', payload(i)))
    linkB.connect({ port: l.port })
    const got = await take(b, 50)
    await Promise.all(sends)
    assert.deepEqual(got.map((m) => Buffer.from(m.data).readUInt32BE(0)), Array.from({ length: 50 }, (_, i) => i))
  } finally {
    await a.close()
    await b.close()
  }
})

test('a consumer that stops pulling stops the socket from being read: the sender backs up, memory stays bounded', async () => {
  // A window far larger than alice's buffer: only her not reading the socket can hold bob back.
  const { a, b } = await pair({ receiveBuffer: 16 }, { maxUnacked: 65_536, queueLimits: { messages: 100_000 } })
  try {
    const it = a.messages()
    const data = Buffer.alloc(1024)
    for (let i = 0; i < 5000; i++) await b.send('alice', data)
    const first = await it.next()
    assert.equal(first.done, false)
    // Give the pipeline turns to move whatever it can (what is checked is that
    // nothing more moves, which no event marks).
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setTimeout(resolve, 200))
    // The receiver holds at most its buffer and one socket chunk's messages (read
    // before the pause); the rest waits in the sockets and the sender's queue.
    const held = (a as unknown as { inbox: { buffered: number } }).inbox.buffered
    assert.ok(held <= 16 + 64, `alice holds ${held} messages`)
    assert.ok(b.queued('alice') >= 5000 - 16 - 1, `sender still holds ${b.queued('alice')}`)
    let n = 1
    for await (const _m of { [Symbol.asyncIterator]: () => it }) {
      if (++n === 5000) break
    }
    assert.equal(n, 5000)
  } finally {
    await a.close()
    await b.close()
  }
})

test('a loop of awaited sends keeps to the pace of a slower reader: the queue stays near the pacing limit, not its own', async () => {
  // bob's window of 64 fills at once; alice reads a message a turn, acknowledging each as she goes.
  const { a, b } = await pair({}, { maxUnacked: 64 })
  const count = 20_000
  try {
    const reading = (async () => {
      let n = 0
      for await (const m of a.messages()) {
        assert.equal(Buffer.from(m.data).readUInt32BE(0), n)
        if (++n === count) break
        await new Promise((resolve) => setImmediate(resolve))
      }
      return n
    })()
    let most = 0
    for (let i = 0; i < count; i++) {
      await b.send('alice', payload(i))
      most = Math.max(most, b.queued('alice'))
    }
    assert.equal(await reading, count)
    // 2,048 unsent past which send() paces, the 64 in flight, and one batch's slack; unpaced, bob ran thousands ahead.
    assert.ok(most <= 2048 + 64 + 256, `bob held up to ${most} messages for alice`)
  } finally {
    await a.close()
    await b.close()
  }
})

test('a remote that reads but acknowledges nothing does not hold send() up: past a short wait the queue takes the backlog', async () => {
  // alice's buffer takes everything, and she never pulls, so she never acknowledges: bob's window of 64 stays full.
  const { a, b } = await pair({ receiveBuffer: 100_000 }, { maxUnacked: 64, queueLimits: { messages: 100_000 } })
  try {
    for (let i = 0; i < 5000; i++) await b.send('alice', payload(i))
    assert.ok(b.queued('alice') >= 5000 - 64, `bob holds ${b.queued('alice')}`)
    const got = await take(a, 5000)
    assert.deepEqual(got.map((m) => Buffer.from(m.data).readUInt32BE(0)), Array.from({ length: 5000 }, (_, i) => i))
  } finally {
    await a.close()
    await b.close()
  }
})

test('break out of for await frees the consumer; the next consumer gets the following messages', async () => {
  const { a, b } = await pair()
  try {
    for (let i = 0; i < 10; i++) await b.send('alice', payload(i))
    const first = await take(a, 3)
    const rest = await take(a, 7)
    assert.deepEqual([...first, ...rest].map((m) => Buffer.from(m.data).readUInt32BE(0)), Array.from({ length: 10 }, (_, i) => i))
  } finally {
    await a.close()
    await b.close()
  }
})

test('consumers with a prefix filter and a catch-all share one Messaging without stealing', async () => {
  const { a, b } = await pair()
  try {
    const rpcish = take(a, 2, { prefix: 'rpc:' })
    const app = take(a, 2)
    await b.send('alice', 'rpc:1')
    await b.send('alice', 'hello')
    await b.send('alice', 'rpc:2')
    await b.send('alice', 'world')
    assert.deepEqual((await rpcish).map((m) => Buffer.from(m.data).toString()), ['rpc:1', 'rpc:2'])
    assert.deepEqual((await app).map((m) => Buffer.from(m.data).toString()), ['hello', 'world'])
  } finally {
    await a.close()
    await b.close()
  }
})

test('a message that arrives before any consumer waits for one', async () => {
  const { a, b } = await pair()
  try {
    await b.send('alice', 'early', { wait: 'queued' })
    const delivered = waitFor(b, 'delivered')
    const [m] = await take(a, 1)
    assert.equal(Buffer.from(m!.data).toString(), 'early')
    await delivered
  } finally {
    await a.close()
    await b.close()
  }
})

test('with manual acks an unacknowledged message is redelivered after a reconnect, and the application sees each once', async () => {
  const { a, b, linkA } = await pair()
  try {
    const it = a.messages({ ack: 'manual' })
    await b.send('alice', 'one')
    await b.send('alice', 'two')
    const m1 = (await it.next()).value as Message
    const m2 = (await it.next()).value as Message
    m1.ack()
    await waitFor(b, 'delivered')
    assert.equal(b.queued('alice'), 1)
    // Drop the connection before 'two' is acknowledged.
    const back = waitFor(a, 'connect')
    for (const c of linkA.connectionsOpen) c.close()
    await back
    m2.ack()
    await waitFor(b, 'delivered', () => b.queued('alice') === 0)
    await b.send('alice', 'three')
    const m3 = (await it.next()).value as Message
    assert.equal(Buffer.from(m3.data).toString(), 'three', 'the redelivered duplicate of "two" was filtered')
    m3.ack()
    await it.return!()
  } finally {
    await a.close()
    await b.close()
  }
})

test('a connection dropped after delivery but before the ack: resent, and still seen once', async () => {
  const { a, b, linkB } = await pair()
  try {
    const it = a.messages({ ack: 'manual' })
    await b.send('alice', 'once')
    const m = (await it.next()).value as Message
    // Reset the link while the message is unacknowledged; bob resends it on the new connection.
    const back = waitFor(b, 'connect')
    for (const c of linkB.connectionsOpen) c.close()
    await back
    await b.send('alice', 'next')
    m.ack()
    const n = (await it.next()).value as Message
    assert.equal(Buffer.from(n.data).toString(), 'next')
    n.ack()
    await waitFor(b, 'delivered', () => b.queued('alice') === 0)
    await it.return!()
  } finally {
    await a.close()
    await b.close()
  }
})

test('bad options and arguments are InvalidArgumentErrors naming what is wrong', async () => {
  const link = new Link()
  assert.throws(() => new Messaging(link, { identity: '' }), InvalidArgumentError)
  assert.throws(() => new Messaging(link, { identity: 'x'.repeat(51) }), /1 to 50/)
  assert.throws(() => new Messaging(link, { identity: 'a', maxUnacked: -1 }), /maxUnacked/)
  // What a hand used to other libraries types by reflex is named, not a TypeError from inside.
  assert.throws(() => new Messaging(link, 'bob' as unknown as MessagingOptions), /takes an options object with this peer's identity, got "bob"/)
  assert.throws(() => new Messaging(link, undefined as unknown as MessagingOptions), InvalidArgumentError)
  assert.throws(() => new Messaging({ identity: 'bob' } as unknown as Link, { identity: 'bob' }), /the first argument must be a Link/)
  await assert.rejects(link.listen(4000 as unknown as ListenOptions), /listen takes an options object \(listen\(\{ port \}\)\), got 4000/)
  assert.throws(() => link.connect(4000 as unknown as ConnectOptions), /connect takes an options object/)
  assert.throws(() => link.connect({ port: 0 }), /port must be an integer from 1 to 65535, got 0/)
  await assert.rejects(LevelStore.open(undefined as unknown as string), InvalidArgumentError)
  assert.throws(() => new RpcClient(link as unknown as Messaging), /the first argument must be a Messaging/)
  assert.throws(() => new RpcServer(link as unknown as Messaging), /the first argument must be a Messaging/)
  const a = new Messaging(link, { identity: 'a' })
  try {
    await assert.rejects(a.send('', 'x'), InvalidArgumentError)
    await assert.rejects(a.send('b', 42 as unknown as string), InvalidArgumentError)
    await assert.rejects(a.send('b', 'x', { ttl: Number.NaN }), /ttl/)
    await assert.rejects(a.send('b', 'x', { ttl: '600' as unknown as number }), /got "600"/)
    // The same checks hold once a queue for the peer exists (the fast path).
    await a.send('b', Buffer.from('queued'))
    await assert.rejects(a.send('b', Buffer.from('x'), { ttl: Number.NaN }), InvalidArgumentError)
    await assert.rejects(a.send('b', Buffer.from('x'), { ttl: '5' as unknown as number }), InvalidArgumentError)
    assert.equal(a.queued('b'), 1)
  } finally {
    await a.close()
  }
})

test('peer names like __proto__ and constructor are plain names', async () => {
  const { a, b } = await pair({}, { identity: '__proto__' })
  try {
    const got = take(b, 1)
    await a.send('__proto__', 'hi')
    assert.equal(Buffer.from((await got)[0]!.data).toString(), 'hi')
    assert.deepEqual(a.connectedPeers(), ['__proto__'])
    await a.send('constructor', 'queued')
    assert.equal(a.queued('constructor'), 1)
  } finally {
    await a.close()
    await b.close()
  }
})

test('close() is idempotent, ends consumers and leaves nothing running', async () => {
  const { a, b } = await pair()
  const it = a.messages()
  const pending = it.next()
  await Promise.all([a.close(), a.close()])
  assert.deepEqual(await pending, { value: undefined, done: true })
  await b.close()
  await b.close()
})

test('events() streams typed events and leaving the loop removes its listeners', async () => {
  const { a, b } = await pair()
  try {
    const seen: string[] = []
    const consumer = (async () => {
      for await (const e of b.events({ types: ['delivered', 'drop'] })) {
        seen.push(e.type === 'drop' ? `drop:${e.reason}` : e.type)
        if (seen.length === 2) break
      }
    })()
    const got = take(a, 1)
    await b.send('alice', 'x')
    await got
    await assert.rejects(b.send('nobody', 'y', { ttl: 0 }), MessageDroppedError)
    await consumer
    assert.deepEqual(seen.sort(), ['delivered', 'drop:not-connected'])
    assert.equal(b.listenerCount('delivered'), 0)
  } finally {
    await a.close()
    await b.close()
  }
})

test('events() listens from the call, not from the first step of the loop; return() ends it at once, even while a step waits', async () => {
  const { a, b } = await pair()
  try {
    // Called, then something happens, then the loop: the event is there for it (it was lost).
    const events = b.events({ types: ['delivered'] })
    const got = take(a, 1)
    const { uuid } = await b.send('alice', 'x', { wait: 'delivered' })
    await got
    // Already held: the step settles within this turn of the event loop (it waited for good).
    const first = await Promise.race([events.next(), new Promise((resolve) => { setImmediate(resolve, 'nothing held') })])
    assert.deepEqual(first, { value: { type: 'delivered', to: 'alice', uuid }, done: false })
    // return() while a step waits: both settle now (the step waited for the next event).
    const waiting = events.next()
    assert.deepEqual(await events.return(undefined), { value: undefined, done: true })
    assert.deepEqual(await waiting, { value: undefined, done: true })
    assert.equal(b.listenerCount('delivered'), 0)
    // A stream returned before its first step leaves no listener behind.
    const unused = b.events({ types: ['drop'] })
    assert.equal(b.listenerCount('drop'), 1)
    await unused.return(undefined)
    assert.equal(b.listenerCount('drop'), 0)
    // A type it cannot stream is refused at the call (it listened for it and waited for good).
    assert.throws(() => b.events({ types: ['message' as never] }), InvalidArgumentError)
    assert.throws(() => b.events({ types: ['closed' as never] }), InvalidArgumentError)
  } finally {
    await a.close()
    await b.close()
  }
})

test('console.log of a received message shows its fields, not the packet, duplicate window and inbox it holds', async () => {
  const { a, b } = await pair()
  try {
    const got = take(a, 1)
    const { uuid } = await b.send('alice', 'hello', { persistent: true })
    const [m] = await got
    const shown = inspect(m, { breakLength: Infinity })
    assert.equal(shown, `Message { from: 'bob', uuid: '${uuid}', ttl: null, persistent: true, flags: 1, data: ${inspect(m!.data)} }`)
    assert.equal(inspect({ m }, { depth: 0 }), '{ m: [Message] }')
  } finally {
    await a.close()
    await b.close()
  }
})

test('two peers that each connect to the other settle on one connection, quietly, and lose nothing', async () => {
  const linkB = new Link()
  const linkJ = new Link()
  const lb = await linkB.listen({ port: 0 })
  const lj = await linkJ.listen({ port: 0 })
  const bob = new Messaging(linkB, { identity: 'bob' })
  const jack = new Messaging(linkJ, { identity: 'jack' })
  const errors: Error[] = []
  bob.on('error', (e) => errors.push(e.error))
  jack.on('error', (e) => errors.push(e.error))
  const reconnect = { minDelay: 10, maxDelay: 50 }
  linkB.connect({ port: lj.port, reconnect })
  linkJ.connect({ port: lb.port, reconnect })
  try {
    const atJack = take(jack, 200)
    const atBob = take(bob, 200)
    for (let i = 0; i < 200; i++) {
      await bob.send('jack', payload(i))
      await jack.send('bob', payload(i))
    }
    const [j, b] = await Promise.all([atJack, atBob])
    const order = Array.from({ length: 200 }, (_, i) => i)
    assert.deepEqual(j.map((m) => Buffer.from(m.data).readUInt32BE(0)), order)
    assert.deepEqual(b.map((m) => Buffer.from(m.data).readUInt32BE(0)), order)
    // Both sides keep the connection bob opened ("bob" < "jack"); the redundant one is not an error.
    assert.deepEqual(errors, [])
    assert.ok(bob.isConnected('jack') && jack.isConnected('bob'))
  } finally {
    await bob.close()
    await jack.close()
  }
})

test('close() flushes the acknowledgement of the message the loop holds, so the sender does not resend it', async () => {
  const { a, b } = await pair()
  try {
    const n = 50
    const consumer = (async () => {
      let got = 0
      for await (const _m of a.messages()) {
        if (++got === n) await a.close()
      }
      return got
    })()
    for (let i = 0; i < n; i++) await b.send('alice', payload(i))
    assert.equal(await consumer, n)
    if (b.queued('alice') > 0) await waitFor(b, 'delivered', () => b.queued('alice') === 0)
    assert.equal(b.queued('alice'), 0)
  } finally {
    await a.close()
    await b.close()
  }
})

test('messages no consumer wants do not stall a peer that reads only with a filter (an RPC-only peer)', async () => {
  const { a, b } = await pair({ receiveBuffer: 64 })
  try {
    const it = a.messages({ prefix: 'rpc:' })
    for (let i = 0; i < 2000; i++) await b.send('alice', `plain ${i}`)
    await b.send('alice', 'rpc:reply')
    const m = (await it.next()).value as Message
    assert.equal(Buffer.from(m.data).toString(), 'rpc:reply')
    await it.return!()
    // Past the receive buffer the unwanted ones were dropped as received (and logged):
    // only the last receiveBuffer of them still wait for a consumer, unacknowledged.
    if (b.queued('alice') > 64) await waitFor(b, 'delivered', () => b.queued('alice') <= 64)
    assert.ok(b.queued('alice') <= 64, `sender still holds ${b.queued('alice')}`)
  } finally {
    await a.close()
    await b.close()
  }
})

test('an application between two loops of messages() loses nothing while a filtered consumer (its RpcServer) is there, and RPC goes on meanwhile', async () => {
  const log = new LogWatch()
  const { a, b } = await pair({ receiveBuffer: 100, logger: log.logger })
  const server = new RpcServer(a)
  server.register('calc', { add: (x: number, y: number) => x + y })
  const client = new RpcClient(b)
  try {
    const n = 1000
    const sent = Promise.all(Array.from({ length: n }, async (_, i) => await b.send('alice', payload(i), { wait: 'delivered' })))
    const first = await take(a, 100)
    // Between the loops, with only the RpcServer's consumer there: before, past the
    // receive buffer the oldest were dropped, and acknowledged to bob as delivered.
    // Now they are set aside unacknowledged, and reading goes on: RPC is answered.
    await log.until((msg) => msg.startsWith('a message no consumer takes now was set aside'))
    assert.equal(await client.proxy<{ add(x: number, y: number): Promise<number> }>('alice', 'calc').add(2, 3), 5)
    const seen = new Set(first.map((m) => Buffer.from(m.data).readUInt32BE(0)))
    // The next loop: bob, reconnected, sends what was set aside again. It reads up
    // to a marker bob sends once all its sends were acknowledged.
    const marked = sent.then(async () => await b.send('alice', 'end'))
    for await (const m of a.messages()) {
      if (Buffer.from(m.data).toString() === 'end') break
      const k = Buffer.from(m.data).readUInt32BE(0)
      assert.ok(!seen.has(k), `message ${k} seen twice`)
      seen.add(k)
    }
    await marked
    assert.equal(seen.size, n)
  } finally {
    await client.close()
    await server.close()
    await a.close()
    await b.close()
  }
})

test('between two loops, a plain snakeMQ peer\'s messages (never sent again) are not let go of: they wait, reading pauses past the receive buffer, and the next loop gets them all', async () => {
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const log = new LogWatch()
  const a = new Messaging(linkA, { identity: 'alice', receiveBuffer: 50, logger: log.logger })
  const server = new RpcServer(a)
  const p = await PlainPeer.connect(l.port, 'snake')
  try {
    await connected(a, 'snake')
    p.send(Buffer.from('first'))
    const [first] = await take(a, 1)
    assert.equal(Buffer.from(first!.data).toString(), 'first')
    // Between the loops: 300 messages, six times the receive buffer.
    for (let i = 0; i < 300; i++) p.send(payload(i))
    p.send(Buffer.from('end'))
    await log.until((msg) => msg === 'receive buffer full, reading paused')
    assert.equal(log.messages('debug').filter((msg) => msg.startsWith('a message no consumer takes now was set aside')).length, 0)
    const got = new Set<number>()
    for await (const m of a.messages()) {
      if (Buffer.from(m.data).toString() === 'end') break
      got.add(Buffer.from(m.data).readUInt32BE(0))
    }
    assert.equal(got.size, 300)
  } finally {
    p.destroy()
    await server.close()
    await a.close()
  }
})

test('past maxIdleWindowBytes the duplicate windows of the longest-gone idle peers are forgotten, the others kept', async () => {
  // What one window holds after 20 messages, to fit about two and a half of them.
  const probe = new DedupWindow(messagingDefaults.dedupWindow)
  for (let i = 0; i < 20; i++) probe.add(randomBytes(16), 0)
  const forgotten: string[] = []
  const logger = { debug (msg: string, f?: Record<string, unknown>) { if (msg === 'forgot the duplicate window of an idle peer') forgotten.push(String(f?.peer)) }, info () {}, warn () {}, error () {} }
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice', maxIdleWindowBytes: Math.floor(probe.bytes * 2.5), logger })
  const got: string[] = []
  let onMessage = null as (() => void) | null
  const loop = (async () => { for await (const m of a.messages()) { got.push(Buffer.from(m.data).toString()); onMessage?.() } })()
  /** Resolves once the application has `n` messages. */
  const arrived = async (n: number): Promise<void> => {
    while (got.length < n) await new Promise<void>((resolve) => { onMessage = resolve })
    onMessage = null
  }
  try {
    const sent = new Map<string, Buffer>()
    for (let v = 0; v < 4; v++) {
      const name = `visitor-${v}`
      const p = await PlainPeer.connect(l.port, name)
      await connected(a, name)
      for (let i = 0; i < 20; i++) {
        const uuid = randomBytes(16)
        if (i === 0) sent.set(name, uuid)
        p.send(Buffer.from(`${name} ${i}`), 0, 0, uuid)
      }
      await arrived((v + 1) * 20)
      const gone = waitFor(a, 'disconnect')
      p.destroy()
      await gone
    }
    // Four windows left, room for two and a half: the two longest gone are forgotten.
    assert.deepEqual(forgotten, ['visitor-0', 'visitor-1'])
    // visitor-0's first message again is new to alice; visitor-3's is a duplicate, dropped.
    for (const name of ['visitor-0', 'visitor-3']) {
      const p = await PlainPeer.connect(l.port, name)
      await connected(a, name)
      const before = got.length
      p.send(Buffer.from(`${name} 0`), 0, 0, sent.get(name))
      p.send(Buffer.from(`${name} after`))
      // The marker sent after it shows whether the resent one got through.
      while (got.length === before || !got[got.length - 1]!.endsWith('after')) await arrived(got.length + 1)
      assert.deepEqual(got.slice(before), name === 'visitor-0' ? ['visitor-0 0', 'visitor-0 after'] : ['visitor-3 after'])
      const gone = waitFor(a, 'disconnect')
      p.destroy()
      await gone
    }
    assert.throws(() => new Messaging(new Link(), { identity: 'x', maxIdleWindowBytes: 0 }), /maxIdleWindowBytes/)
  } finally {
    await a.close()
    await loop
  }
})

test('a remote cycling through identities cannot grow per-peer state past maxIdlePeers', async () => {
  const forgotten: string[] = []
  const logger = { debug (msg: string, f?: Record<string, unknown>) { if (msg === 'forgot an idle peer') forgotten.push(String(f?.peer)) }, info () {}, warn () {}, error () {} }
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice', maxIdlePeers: 5, logger })
  try {
    for (let i = 0; i < 20; i++) {
      const name = `visitor-${i}`
      const raw = await RawPeer.connect(l.port)
      const ident = Buffer.from(name)
      const packet = Buffer.alloc(4 + 1 + ident.length)
      packet.writeUInt32BE(1 + ident.length, 0)
      packet[4] = 2
      ident.copy(packet, 5)
      const up = connected(a, name)
      raw.write(Buffer.concat([Buffer.from('000000050000000001', 'hex'), packet]))
      await up
      const gone = waitFor(a, 'disconnect')
      raw.destroy()
      await gone
    }
    // The 15 longest gone were forgotten, oldest first; the last 5 are remembered.
    assert.deepEqual(forgotten, Array.from({ length: 15 }, (_, i) => `visitor-${i}`))
    // A peer with messages waiting is never forgotten: its queue is its state.
    await a.send('visitor-0', 'still queued')
    assert.equal(a.queued('visitor-0'), 1)
  } finally {
    await a.close()
  }
})

test('peers only ever addressed, never connected, leave no state behind once their messages expired, were refused or were taken back', async () => {
  const mq = new Messaging(new Link(), { identity: 'lonely' })
  const client = new RpcClient(mq, { format: 'native' })
  try {
    const n = 200
    let drops = 0
    let allDropped!: () => void
    const dropped = new Promise<void>((resolve) => { allDropped = resolve })
    mq.on('drop', () => { if (++drops === 2 * n) allDropped() })
    // TTL sends that expire, TTL 0 sends refused at once, RPC calls that time out (their requests taken back).
    await Promise.all(Array.from({ length: n }, (_, i) => mq.send(`expires-${i}`, 'x', { ttl: 0.05 })))
    const refused = await Promise.allSettled(Array.from({ length: n }, (_, i) => mq.send(`refused-${i}`, 'x', { ttl: 0 })))
    assert.ok(refused.every((r) => r.status === 'rejected' && r.reason instanceof MessageDroppedError && r.reason.reason === 'not-connected'))
    const calls = await Promise.allSettled(Array.from({ length: n }, (_, i) => client.call(`absent-${i}`, 'svc', 'm', [], { timeout: 20 })))
    assert.ok(calls.every((r) => r.status === 'rejected' && (r.reason as Error).name === 'RpcTimeoutError'))
    await dropped
    // Before, each kept a queue (about 1 KB), and maxIdlePeers did not bound them.
    assert.deepEqual(Object.keys(mq.stats().peers), [])
    assert.equal(mq.queued(), 0)
    // A peer with a message still waiting is kept, of course.
    await mq.send('later', 'y')
    assert.deepEqual(Object.keys(mq.stats().peers), ['later'])
  } finally {
    await client.close()
    await mq.close()
  }
})

test('a message larger than the maxPacketSize its peer announced is dropped as too-large, not sent to close the connection at every reconnect; the messages behind it go on', async () => {
  // alice listens and takes packets of up to 64 KiB; bob sends her a small message, one of 100 KiB, and another small one.
  const { a: alice, b: bob } = await pair({ maxPacketSize: 64 * 1024 }, {})
  const errors: unknown[] = []
  alice.on('error', (e) => errors.push(e.error))
  bob.on('error', (e) => errors.push(e.error))
  try {
    const dropped = waitFor<{ to: string, uuid: string, reason: string }>(bob, 'drop')
    await bob.send('alice', 'before')
    const big = bob.send('alice', Buffer.alloc(100 * 1024, 7), { wait: 'delivered' })
    await bob.send('alice', 'after')
    await assert.rejects(big, (e: unknown) => e instanceof MessageDroppedError && e.reason === 'too-large' && e.to === 'alice')
    const drop = await dropped
    assert.equal(drop.reason, 'too-large')
    const got = await take(alice, 2)
    assert.deepEqual(got.map((m) => Buffer.from(m.data).toString()), ['before', 'after'])
    // One exactly at the limit still goes (a MESSAGE's body is 25 bytes before its data).
    const [exact] = await Promise.all([take(alice, 1), bob.send('alice', Buffer.alloc(64 * 1024 - 25, 1), { wait: 'delivered' })])
    assert.equal(exact[0]!.data.byteLength, 64 * 1024 - 25)
    assert.deepEqual(errors, [], 'no connection was closed')
    assert.ok(bob.isConnected('alice'))
  } finally {
    await bob.close()
    await alice.close()
  }
})

for (const format of ['native', 'snakemq'] as const) {
  test(`format ${format}: an RPC call whose request is larger than the server accepts fails with MessageDroppedError (too-large) instead of waiting for its timeout; the next calls are served`, async () => {
    const { a: alice, b: bob } = await pair({ maxPacketSize: 64 * 1024 }, {})
    new RpcServer(alice).register('svc', { size (body: Uint8Array): number { return body.byteLength } })
    const svc = new RpcClient(bob, { format }).proxy<{ size(body: Uint8Array): Promise<number> }>('alice', 'svc')
    try {
      // Without the drop reaching the call, it would end only by this timeout.
      await assert.rejects(svc.size.with({ timeout: 20_000 })(new Uint8Array(100 * 1024)), (e: unknown) => e instanceof MessageDroppedError && e.reason === 'too-large')
      assert.equal(await svc.size(new Uint8Array(1000)), 1000)
    } finally {
      await bob.close()
      await alice.close()
    }
  })
}

test('an RPC result larger than the caller accepts is answered with RpcCodecError saying so, not dropped with the caller left waiting', async () => {
  const { a: alice, b: bob } = await pair({}, { maxPacketSize: 64 * 1024 })
  new RpcServer(alice).register('svc', { make (n: number): Uint8Array { return new Uint8Array(n) } })
  const svc = new RpcClient(bob).proxy<{ make(n: number): Promise<Uint8Array> }>('alice', 'svc')
  try {
    await assert.rejects(svc.make(100 * 1024), (e: unknown) => e instanceof RpcCodecError && /more than "bob" accepts/.test(e.message))
    assert.equal((await svc.make(1000)).byteLength, 1000)
  } finally {
    await bob.close()
    await alice.close()
  }
})

test('an RPC error whose reply is larger than the caller accepts reaches it cut to its name and the start of its message, or as RpcCodecError saying so', async () => {
  const { a: alice, b: bob } = await pair({}, { maxPacketSize: 64 * 1024 })
  new RpcServer(alice).register('svc', {
    longMessage (n: number): never { throw new RangeError('x'.repeat(n)) },
    largeData (n: number): never { throw Object.assign(new Error('with a blob'), { code: 'E_BLOB', blob: new Uint8Array(n) }) }
  })
  const svc = new RpcClient(bob, { timeout: 20_000 }).proxy<{ longMessage(n: number): never, largeData(n: number): never }>('alice', 'svc')
  try {
    // Before, such a reply was dropped by the server's Messaging, and the call waited for its timeout.
    await assert.rejects(svc.longMessage(100 * 1024), (e: unknown) => e instanceof RpcRemoteError && e.remoteName === 'RangeError' && e.message === 'x'.repeat(4096))
    await assert.rejects(svc.largeData(100 * 1024), (e: unknown) => e instanceof RpcRemoteError && e.remoteName === 'Error' && e.message === 'with a blob' && e.remoteCode === 'E_BLOB')
  } finally {
    await bob.close()
    await alice.close()
  }
})
