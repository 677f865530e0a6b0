// The bandwidth throttle: its rate at several speeds (generous bounds here; the
// precise figures are in benchmarks/throttle.ts), the bytes it passes (all of
// them, in order, cut into pieces), that it sleeps rather than spins, and the
// link's throttle options, with Messaging's keepalive working through a slow one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { pipe } from 'it-pipe'
import {
  Link, Messaging, throttle, InvalidArgumentError, AbortError, type Connection, type MessagingEvents,
  type SinkChunk
} from '../src/index.ts'
import { connected, take, waitFor } from './helpers/util.ts'

async function * chunks (total: number, size: number): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < total; sent += size) yield new Uint8Array(Math.min(size, total - sent))
}

/** Runs `total` bytes through a throttle of `rate` bytes/s and returns the rate achieved. */
async function measure (rate: number, total: number, size: number): Promise<number> {
  const t0 = performance.now()
  let bytes = 0
  for await (const piece of throttle(rate)(chunks(total, size))) bytes += piece.length
  const seconds = (performance.now() - t0) / 1000
  assert.equal(bytes, total)
  return bytes / seconds
}

function within (actual: number, expected: number, tolerance: number, what: string): void {
  const ratio = actual / expected
  assert.ok(Math.abs(ratio - 1) <= tolerance, `${what}: ${Math.round(actual)} B/s for ${expected} B/s asked (${(ratio * 100).toFixed(1)} %)`)
}

test('the rate holds within 30 % at 50 kB/s and at 5 MB/s over two seconds', async () => {
  within(await measure(50_000, 100_000, 4096), 50_000, 0.3, '50 kB/s')
  within(await measure(5_000_000, 10_000_000, 65_536), 5_000_000, 0.3, '5 MB/s')
})

test('a throttle sleeps while it waits: a slow transfer costs little CPU', async () => {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await measure(20_000, 20_000, 65_536)
  const wall = performance.now() - t0
  const used = process.cpuUsage(cpu0)
  const cpuMs = (used.user + used.system) / 1000
  assert.ok(wall >= 800, `took ${wall} ms`)
  assert.ok(cpuMs < wall * 0.25, `${cpuMs.toFixed(0)} ms of CPU in ${wall.toFixed(0)} ms`)
})

test('every byte comes out, in order: single chunks as pieces, batches as smaller batches', async () => {
  const data = randomBytes(300_000)
  // Chunks and batches of every size, cut from `data` in order.
  const items: SinkChunk[] = []
  let off = 0
  let i = 0
  while (off < data.length) {
    const size = [1, 7, 100, 5000, 70_000, 0][i % 6]!
    if (i % 3 === 0) {
      const batch: Uint8Array[] = []
      for (let k = 0; k < 4 && off < data.length; k++) {
        const n = Math.min(size + k * 13, data.length - off)
        batch.push(data.subarray(off, off + n))
        off += n
      }
      items.push(batch)
    } else {
      const n = Math.min(size, data.length - off)
      items.push(data.subarray(off, off + n))
      off += n
    }
    i++
  }
  const maxChunk = 4096
  const out: Buffer[] = []
  for await (const piece of throttle(50_000_000, { maxChunk })(items)) {
    const parts = piece instanceof Uint8Array ? [piece] : piece
    const size = parts.reduce((n, p) => n + p.length, 0)
    assert.ok(size <= maxChunk, `a piece of ${size} bytes`)
    out.push(...parts.map((p) => Buffer.from(p)))
  }
  assert.ok(Buffer.concat(out).equals(data))

  // The shape follows the input: a single chunk in gives single chunks out.
  const singles = []
  for await (const p of throttle(1_000_000, { maxChunk: 10 })([new Uint8Array(25)])) singles.push(p)
  assert.deepEqual(singles.map((p) => p instanceof Uint8Array ? p.length : -1), [10, 10, 5])
  const batches = []
  for await (const p of throttle(1_000_000, { maxChunk: 10 })([[new Uint8Array(4), new Uint8Array(8), new Uint8Array(3)]])) batches.push(p)
  assert.deepEqual(batches.map((b) => Array.isArray(b) ? b.map((c: Uint8Array) => c.length) : -1), [[4, 6], [2, 3]])
})

test('a throttle composes in a pipe and checks its arguments', async () => {
  let n = 0
  await pipe(chunks(10_000, 1000), throttle(10_000_000), async (source) => { for await (const c of source) n += c.length })
  assert.equal(n, 10_000)
  for (const bad of [0, -1, Number.NaN, Infinity]) assert.throws(() => throttle(bad), InvalidArgumentError)
  assert.throws(() => throttle(1000, { maxChunk: 0 }), InvalidArgumentError)
  assert.throws(() => new Link({ throttle: -5 }), InvalidArgumentError)
  assert.throws(() => new Link({ throttle: { incoming: 0 } }), InvalidArgumentError)
  await assert.rejects(new Link().listen({ port: 0, throttle: { outgoing: Number.NaN } }), InvalidArgumentError)
})

test('an aborted throttle stops waiting at once', async () => {
  const ac = new AbortController()
  const seen: number[] = []
  const run = (async () => {
    for await (const p of throttle(1000, { signal: ac.signal, maxChunk: 1000 })([new Uint8Array(5000)])) {
      seen.push(p.length)
      if (seen.length === 1) setImmediate(() => { ac.abort() })
    }
  })()
  const t0 = performance.now()
  await assert.rejects(run, AbortError)
  assert.ok(performance.now() - t0 < 500)
  assert.deepEqual(seen, [1000])
})

/** A connector and a listener on two links; resolves with both ends' connections. */
async function linked (
  linkOptions: { listener?: ConstructorParameters<typeof Link>[0], connector?: ConstructorParameters<typeof Link>[0] },
  listen: Partial<Parameters<Link['listen']>[0]>,
  connect: Partial<Parameters<Link['connect']>[0]>
): Promise<{ l: Link, c: Link, inbound: Connection, outbound: Connection }> {
  const l = new Link(linkOptions.listener)
  const c = new Link(linkOptions.connector)
  const inbound = waitFor<Connection>(l, 'connection')
  const outbound = waitFor<Connection>(c, 'connection')
  const listener = await l.listen({ port: 0, ...listen })
  c.connect({ port: listener.port, reconnect: false, ...connect })
  return { l, c, inbound: await inbound, outbound: await outbound }
}

/** Sends `total` bytes from `from` to `to` and returns the rate the receiver saw. */
async function transfer (from: Connection, to: Connection, total: number): Promise<number> {
  const reading = (async () => {
    let got = 0
    let t0 = 0
    for await (const c of to.source) {
      if (got === 0) t0 = performance.now()
      got += c.length
      if (got >= total) break
    }
    return { got, seconds: (performance.now() - t0) / 1000 }
  })()
  await from.sink(chunks(total, 65_536))
  const { got, seconds } = await reading
  assert.equal(got, total)
  return total / seconds
}

test('a connector\'s outgoing throttle and a listener\'s incoming throttle limit a real connection', async () => {
  {
    const { l, c, inbound, outbound } = await linked({}, {}, { throttle: 200_000 })
    try {
      assert.deepEqual(outbound.throttle, { outgoing: 200_000 })
      assert.equal(inbound.throttle, null)
      within(await transfer(outbound, inbound, 300_000), 200_000, 0.3, 'outgoing 200 kB/s')
    } finally {
      await c.close()
      await l.close()
    }
  }
  {
    const { l, c, inbound, outbound } = await linked({}, { throttle: { incoming: 300_000 } }, {})
    try {
      assert.deepEqual(inbound.throttle, { incoming: 300_000 })
      within(await transfer(outbound, inbound, 450_000), 300_000, 0.3, 'incoming 300 kB/s')
    } finally {
      await c.close()
      await l.close()
    }
  }
})

test('a link-wide throttle applies to every connection unless a listener or connector sets its own', async () => {
  const { l, c, inbound, outbound } = await linked({ listener: { throttle: 1_000_000 }, connector: { throttle: { outgoing: 500_000, incoming: 400_000 } } }, {}, { throttle: false })
  try {
    assert.deepEqual(inbound.throttle, { outgoing: 1_000_000 })
    assert.equal(outbound.throttle, null)
  } finally {
    await c.close()
    await l.close()
  }
  const second = await linked({ connector: { throttle: { outgoing: 500_000, incoming: 400_000 } } }, { throttle: { incoming: 123 } }, {})
  try {
    assert.deepEqual(second.outbound.throttle, { outgoing: 500_000, incoming: 400_000 })
    assert.deepEqual(second.inbound.throttle, { incoming: 123 })
  } finally {
    await second.c.close()
    await second.l.close()
  }
})

test('closing a connection ends a throttled source and sink at once', async () => {
  const { l, c, inbound, outbound } = await linked({}, { throttle: { incoming: 100 } }, { throttle: 100 })
  try {
    // More than the connection buffers ahead of its throttle, so the sink is still writing when it closes.
    const writing = outbound.sink(chunks(200_000, 1000))
    const reading = (async () => { let n = 0; for await (const x of inbound.source) n += x.length; return n })()
    await new Promise((resolve) => setTimeout(resolve, 50))
    const t0 = performance.now()
    outbound.close()
    inbound.close()
    await assert.rejects(writing)
    assert.ok(await reading < 10_000)
    assert.ok(performance.now() - t0 < 1000, 'the throttles stopped sleeping')
  } finally {
    await c.close()
    await l.close()
  }
})


test('keepalive passes through a slow throttle: many small messages, and one message bigger than a keepalive interval of bytes', async () => {
  const keepalive = { interval: 150, wait: 250 }
  const linkA = new Link({ throttle: 60_000 })
  const a = new Messaging(linkA, { identity: 'alice', keepalive })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob', keepalive })
  const drops: Array<MessagingEvents['disconnect'][0]> = []
  try {
    const listener = await linkB.listen({ port: 0 })
    linkA.connect({ port: listener.port, reconnect: { minDelay: 20, maxDelay: 100 } })
    await Promise.all([connected(a, 'bob'), connected(b, 'alice')])
    b.on('disconnect', (e) => drops.push(e))
    a.on('disconnect', (e) => drops.push(e))

    // About 1.5 s of small messages at 60 kB/s: frames arrive all the time.
    const small = take(b, 90)
    for (let i = 0; i < 90; i++) await a.send('bob', Buffer.alloc(1000, i))
    const got = await small
    assert.deepEqual(got.map((m) => m.data[0]), Array.from({ length: 90 }, (_, i) => i))

    // One 90 kB message: 1.5 s in flight, ten keepalive intervals without a whole frame.
    const big = take(b, 1)
    await a.send('bob', Buffer.alloc(90_000, 42), { wait: 'delivered' })
    const [m] = await big
    assert.equal(m!.data.length, 90_000)
    assert.deepEqual(drops.map((d) => d.error?.name), [])
  } finally {
    await a.close()
    await b.close()
  }
})

test('keepalive passes through a slow incoming throttle while messages flow', async () => {
  const keepalive = { interval: 150, wait: 250 }
  const linkA = new Link()
  const a = new Messaging(linkA, { identity: 'alice', keepalive })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob', keepalive })
  const drops: Array<MessagingEvents['disconnect'][0]> = []
  try {
    // Bob reads from each connection at 60 kB/s: alice's bytes wait in the socket buffers.
    const listener = await linkB.listen({ port: 0, throttle: { incoming: 60_000 } })
    linkA.connect({ port: listener.port, reconnect: { minDelay: 20, maxDelay: 100 } })
    await Promise.all([connected(a, 'bob'), connected(b, 'alice')])
    b.on('disconnect', (e) => drops.push(e))
    a.on('disconnect', (e) => drops.push(e))
    const got = take(b, 90)
    const t0 = performance.now()
    for (let i = 0; i < 90; i++) await a.send('bob', Buffer.alloc(1000, i))
    assert.deepEqual((await got).map((m) => m.data[0]), Array.from({ length: 90 }, (_, i) => i))
    assert.ok(performance.now() - t0 >= 1000, 'the throttle held bob to about 60 kB/s')
    assert.deepEqual(drops.map((d) => d.error?.name), [])
  } finally {
    await a.close()
    await b.close()
  }
})

test('a connection with an incoming throttle is read through its source: a consumer that stops pulling still holds the sender back, and everything arrives in order', async () => {
  const linkA = new Link()
  const a = new Messaging(linkA, { identity: 'alice', receiveBuffer: 16 })
  const linkB = new Link()
  // A window far larger than alice's buffer: only her not reading the socket can hold bob back.
  const b = new Messaging(linkB, { identity: 'bob', maxUnacked: 65_536 })
  try {
    // Fast enough to keep the test short; any incoming throttle takes the source path.
    const listener = await linkA.listen({ port: 0, throttle: { incoming: 50_000_000 } })
    linkB.connect({ port: listener.port, reconnect: { minDelay: 20, maxDelay: 100 } })
    await Promise.all([connected(a, 'bob'), connected(b, 'alice')])
    const count = 2000
    const it = a.messages()
    for (let i = 0; i < count; i++) {
      const data = Buffer.alloc(1024)
      data.writeUInt32BE(i, 0)
      await b.send('alice', data)
    }
    const first = await it.next()
    assert.equal(first.done, false)
    // What is checked is that nothing more moves while nobody reads, which no event
    // marks: the pipeline gets time to move whatever it could.
    await new Promise((resolve) => setTimeout(resolve, 200))
    // Alice holds her buffer and at most one socket chunk's messages (read before the pause).
    const held = (a as unknown as { inbox: { buffered: number } }).inbox.buffered
    assert.ok(held <= 16 + 64, `alice holds ${held} messages`)
    const order = [Buffer.from(first.value!.data).readUInt32BE(0)]
    while (order.length < count) {
      const r = await it.next()
      assert.equal(r.done, false)
      order.push(Buffer.from(r.value!.data).readUInt32BE(0))
    }
    assert.deepEqual(order, Array.from({ length: count }, (_, i) => i))
    await it.return?.()
  } finally {
    await a.close()
    await b.close()
  }
})
