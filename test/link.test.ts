import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import { Link, ClosedError, InvalidArgumentError, type Connection } from '../src/index.ts'

async function nextConnection (link: Link): Promise<Connection> {
  const [c] = await once(link, 'connection') as [Connection]
  return c
}

test('listen on port 0 returns the bound address; a connector reaches it and both ends get a connection', async () => {
  const server = new Link()
  const client = new Link()
  try {
    const l = await server.listen({ port: 0 })
    assert.equal(l.host, '127.0.0.1')
    assert.ok(l.port > 0)
    const inbound = nextConnection(server)
    const outbound = nextConnection(client)
    const connector = client.connect({ port: l.port })
    const [a, b] = await Promise.all([inbound, outbound])
    assert.equal(a.direction, 'inbound')
    assert.equal(b.direction, 'outbound')
    assert.equal(connector.connection, b)
    // Bytes flow both ways through source and sink.
    const reader = a.source[Symbol.asyncIterator]()
    await b.sink((async function * () { yield Buffer.from('ping') })())
    assert.equal(Buffer.from((await reader.next()).value as Uint8Array).toString(), 'ping')
    assert.throws(() => a.source, /already being read/)
  } finally {
    await client.close()
    await server.close()
  }
})

test('a connector retries with growing, jittered delays while nothing listens, and gets through once something does', async () => {
  const probe = net.createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as net.AddressInfo).port
  probe.close()
  await once(probe, 'close')
  const link = new Link()
  const delays: number[] = []
  link.on('connect-error', ({ delay }) => { if (delay !== null) delays.push(delay) })
  const connector = link.connect({ port, reconnect: { minDelay: 10, maxDelay: 80, factor: 2 } })
  try {
    while (delays.length < 6) await once(link, 'connect-error')
    // Each delay lies in [ceiling/2, ceiling] with ceiling = min(80, 10 * 2^attempt).
    delays.slice(0, 6).forEach((d, i) => {
      const ceiling = Math.min(80, 10 * 2 ** i)
      assert.ok(d >= ceiling / 2 && d <= ceiling, `delay ${i} = ${d}, ceiling ${ceiling}`)
    })
    // Now a listener appears on that port: the connector gets through by itself.
    const server = new Link()
    await server.listen({ port })
    const up = nextConnection(link)
    await up
    assert.ok(connector.connection !== null)
    await server.close()
  } finally {
    await link.close()
  }
})

test('reconnect: false connects once and gives up', async () => {
  const link = new Link()
  const errors: Array<number | null> = []
  link.on('connect-error', ({ delay }) => errors.push(delay))
  try {
    link.connect({ port: 1, reconnect: false })
    await once(link, 'connect-error')
    assert.deepEqual(errors, [null])
  } finally {
    await link.close()
  }
})

test('a removed listener stops accepting, a removed connector stops reconnecting', async () => {
  const server = new Link()
  const client = new Link()
  try {
    const l = await server.listen({ port: 0 })
    const connector = client.connect({ port: l.port, reconnect: { minDelay: 10, maxDelay: 20 } })
    await nextConnection(server)
    await l.close()
    await assert.rejects(new Promise<void>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: l.port })
      s.once('connect', () => { s.destroy(); resolve() })
      s.once('error', reject)
    }), /ECONNREFUSED/)
    await connector.close()
    assert.equal(connector.connection, null)
    assert.ok(connector.closed)
  } finally {
    await client.close()
    await server.close()
  }
})

test('a slow reader stops the socket from being read and the writer waits for drain (bounded memory both ways)', async () => {
  const server = new Link()
  const client = new Link()
  try {
    const l = await server.listen({ port: 0 })
    const inbound = nextConnection(server)
    const outbound = nextConnection(client)
    client.connect({ port: l.port })
    const [a, b] = await Promise.all([inbound, outbound])
    const chunk = Buffer.alloc(64 * 1024)
    let written = 0
    const total = 2000
    const writing = b.sink((async function * () { for (let i = 0; i < total; i++) { written++; yield chunk } })())
    const reader = a.source[Symbol.asyncIterator]()
    await reader.next()
    // Nothing reads: the writer can only get as far as the socket buffers allow.
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.ok(written < total / 2, `writer pulled ${written} of ${total} chunks with nobody reading`)
    let bytes = 0
    while (bytes < (total - 1) * chunk.length) bytes += ((await reader.next()).value as Uint8Array).length
    await writing
    assert.equal(written, total)
  } finally {
    await client.close()
    await server.close()
  }
})

test('connections() hands out connections when nobody listens for the event, and ends on close', async () => {
  const server = new Link()
  const client = new Link()
  const l = await server.listen({ port: 0 })
  client.connect({ port: l.port })
  const it = server.connections()
  const first = await it.next()
  assert.equal(first.done, false)
  await server.close()
  assert.deepEqual(await it.next(), { value: undefined, done: true })
  await client.close()
})

test('close() is idempotent, await using works, and a closed link refuses new work', async () => {
  let port = 0
  {
    await using link = new Link()
    port = (await link.listen({ port: 0 })).port
    link.connect({ port })
    await nextConnection(link)
  }
  const link = new Link()
  await link.close()
  await link.close()
  await assert.rejects(link.listen({ port: 0 }), ClosedError)
  assert.throws(() => link.connect({ port }), ClosedError)
  assert.throws(() => new Link().connect({ port: 70000 }), InvalidArgumentError)
})
