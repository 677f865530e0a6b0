// The byte path as issue "channel" asks for it: a backlog larger than one write
// batch reaches a plain snakeMQ peer whole, user transforms sit between the
// socket and the framing (both ends must agree on them), and a peer that writes
// and never reads cannot make this side hold what it owes without bound.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import { pipe } from 'it-pipe'
import {
  KeepaliveTimeoutError, Link, Messaging, PacketTooLargeError, ProtocolError, encodePacketBatch, encodeFrame, FrameType, FEATURE_ACK, EXTENSIONS_VERSION,
  type ConnectionTransform, type Duplex, type Logger, type MessagingEvents
} from '../src/index.ts'
import { connected, take, waitFor } from './helpers/util.ts'

/** alice listens with a backlog of `count` messages of `size` bytes queued for bob before he connects; both in `plainSnakeMQ` mode as given. */
async function backlog (count: number, size: number, plainSnakeMQ: boolean): Promise<void> {
  const linkA = new Link()
  const listener = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice', plainSnakeMQ, queueLimits: { messages: count, bytes: count * size + 1 } })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob', plainSnakeMQ })
  try {
    for (let i = 0; i < count; i++) {
      const data = new Uint8Array(size)
      new DataView(data.buffer).setUint32(0, i)
      await a.send('bob', data)
    }
    assert.equal(a.queued('bob'), count)
    linkB.connect({ port: listener.port })
    const got = await take(b, count)
    assert.deepEqual(got.map((m) => new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0)), Array.from({ length: count }, (_, i) => i))
    assert.ok(got.every((m) => m.data.length === size))
    // Written is delivered for a plain snakeMQ peer: nothing stays queued.
    if (a.queued('bob') > 0) await waitFor(a, 'delivered', () => a.queued('bob') === 0)
  } finally {
    await a.close()
    await b.close()
  }
}

test('in plain snakeMQ mode, 10,000 messages queued before the connection all arrive, in order', async () => {
  await backlog(10_000, 64, true)
})

test('in plain snakeMQ mode, 20 messages of 1 MiB queued before the connection all arrive', async () => {
  await backlog(20, 1024 * 1024, true)
})

test('with acknowledgements, 10,000 queued messages and 20 of 1 MiB all arrive too', async () => {
  await backlog(10_000, 64, false)
  await backlog(20, 1024 * 1024, false)
})

/** A transform that XORs every byte with `key`, both ways. */
function xor (key: number): ConnectionTransform {
  const flip = async function * (source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      const out = new Uint8Array(chunk.length)
      for (let i = 0; i < chunk.length; i++) out[i] = chunk[i]! ^ key
      yield out
    }
  }
  return (duplex: Duplex<Uint8Array>) => ({
    source: flip(duplex.source),
    sink: async (source) => { await pipe(source, flip, duplex.sink) }
  })
}

test('a transform that XORs every byte, on both ends, carries 10,000 messages intact', async () => {
  const transforms = [xor(0x5a)]
  const linkA = new Link({ transforms })
  const listener = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice' })
  const linkB = new Link({ transforms })
  const b = new Messaging(linkB, { identity: 'bob' })
  let wire = 0
  // A tap under the XOR on bob's side sees what goes on the wire: not the plain bytes.
  const tap: ConnectionTransform = (d) => ({
    source: d.source,
    sink: async (source) => {
      await pipe(source, async function * (s) {
        for await (const c of s) {
          if (wire === 0) assert.notEqual(c[3], 5, 'the first packet on the wire is XORed')
          wire += c.length
          yield c
        }
      }, d.sink)
    }
  })
  linkB.connect({ port: listener.port, transforms: [tap, ...transforms] })
  try {
    await Promise.all([connected(a, 'bob'), connected(b, 'alice')])
    const count = 10_000
    const got = take(a, count)
    for (let i = 0; i < count; i++) await b.send('alice', `message ${i}`)
    const messages = await got
    assert.deepEqual(messages.map((m) => new TextDecoder().decode(m.data)), Array.from({ length: count }, (_, i) => `message ${i}`))
    assert.ok(wire > count * 29, `bob wrote ${wire} bytes through the tap`)
  } finally {
    await a.close()
    await b.close()
  }
})

test('the XOR transform on one end only: no message is delivered, and an error event reports the protocol failure', async () => {
  const linkA = new Link()
  const listener = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice' })
  const linkB = new Link({ transforms: [xor(0x5a)] })
  const b = new Messaging(linkB, { identity: 'bob' })
  const received: string[] = []
  const consuming = (async () => { for await (const m of a.messages()) received.push(new TextDecoder().decode(m.data)) })()
  try {
    for (let i = 0; i < 10; i++) await b.send('alice', `message ${i}`)
    const errorAtA = waitFor<MessagingEvents['error'][0]>(a, 'error')
    const errorAtB = waitFor<MessagingEvents['error'][0]>(b, 'error')
    linkB.connect({ port: listener.port, reconnect: false })
    const [ea, eb] = await Promise.all([errorAtA, errorAtB])
    for (const e of [ea, eb]) {
      assert.ok(e.error instanceof PacketTooLargeError || e.error instanceof ProtocolError, `${e.error.name}: ${e.error.message}`)
    }
    await waitFor(linkA, 'close')
    assert.deepEqual(received, [])
    assert.equal(b.queued('alice'), 10)
    assert.equal(a.isConnected('bob'), false)
  } finally {
    await a.close()
    await b.close()
    await consuming
  }
})

/** A packet: 4-byte big-endian length, then the frame. */
const packetOf = (frame: Parameters<typeof encodeFrame>[0]): Buffer => Buffer.concat(encodePacketBatch([encodeFrame(frame)]))

/**
 * A remote that identifies with acknowledged delivery, then writes MESSAGE and
 * PING frames as fast as it can and never reads: alice's ACKs and PONGs fill the
 * sockets. `paused` resolves once alice logs that she stopped reading it.
 */
async function flood (port: number, logger: Logger, note: (message: string) => void): Promise<{ socket: net.Socket, paused: Promise<void>, wrote: () => number, stop: () => Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  socket.pause()
  const paused = new Promise<void>((resolve) => {
    const check = (message: string): void => { if (/reading paused/.test(message) && /does not read/.test(message)) resolve(); else note(message) }
    logger.warn = check
  })
  let stopped = false
  let wrote = 0
  socket.on('error', () => {})
  socket.write(Buffer.concat([
    packetOf({ type: FrameType.ProtocolVersion, version: 1 }),
    packetOf({ type: FrameType.Extensions, version: EXTENSIONS_VERSION, features: FEATURE_ACK }),
    packetOf({ type: FrameType.Identification, identity: 'flooder' })
  ]))
  // 2,048 messages with distinct UUIDs and a PING after every 64 of them, 1 chunk; the UUIDs change per chunk.
  let counter = 0
  const chunk = (): Buffer => {
    const parts: Buffer[] = []
    for (let i = 0; i < 2048; i++) {
      const uuid = Buffer.alloc(16)
      uuid.writeUInt32BE(counter++, 12)
      parts.push(packetOf({ type: FrameType.Message, uuid, ttl: 0xffffffff, flags: 0, data: Buffer.alloc(8) }))
      if (i % 64 === 63) parts.push(packetOf({ type: FrameType.Ping }))
    }
    return Buffer.concat(parts)
  }
  const flooding = (async () => {
    while (!stopped) {
      const c = chunk()
      wrote += c.length
      if (!socket.write(c)) {
        // Closed by alice (ECONNRESET), or by stop(): either way the flood is over.
        await Promise.race([once(socket, 'drain'), once(socket, 'close')]).catch(() => {})
        if (socket.destroyed) return
      }
    }
  })()
  return { socket, paused, wrote: () => wrote, stop: async () => { stopped = true; socket.destroy(); await flooding } }
}

test('a peer that writes MESSAGE and PING frames as fast as it can and never reads leaves the receiver\'s memory bounded', async () => {
  const lines: string[] = []
  const note = (message: string): void => { lines.push(message) }
  const logger: Logger = { debug: note, info: note, warn: note, error: note }
  const link = new Link()
  const listener = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'alice', logger })
  // The application takes every message at once: only what alice owes the flooder can pile up.
  let taken = 0
  const consuming = (async () => { for await (const _m of mq.messages()) taken++ })()
  const f = await flood(listener.port, logger, note)
  try {
    await f.paused
    const conn = [...link.connectionsOpen][0]!
    const before = { read: conn.bytesIn, memory: process.memoryUsage().arrayBuffers }
    // What is checked is that nothing more is read, which no event marks: the flooder gets time to push more.
    await new Promise((resolve) => setTimeout(resolve, 500))
    const after = { read: conn.bytesIn, memory: process.memoryUsage().arrayBuffers }
    assert.ok(after.read - before.read < 1024 * 1024, `alice read ${after.read - before.read} more bytes while paused`)
    assert.ok(after.memory - before.memory < 32 * 1024 * 1024, `alice's buffers grew by ${after.memory - before.memory} bytes`)
    assert.ok(taken > 65_536, `the application took ${taken} messages before alice stopped reading`)
    assert.ok(f.socket.writableLength > 0, 'the flooder is held back')
    await f.stop()
    console.log(`# flood: ${taken} messages taken, ${f.wrote()} bytes written by the flooder, ${after.read} read by alice before she paused; arrayBuffers +${((after.memory - before.memory) / 1e6).toFixed(1)} MB while paused`)
  } finally {
    await f.stop()
    await mq.close()
    await consuming
  }
})

test('a peer that sends and never reads is closed by keepalive once nothing has left for it for interval + wait', async () => {
  const note = (_message: string): void => {}
  const logger: Logger = { debug: note, info: note, warn: note, error: note }
  const link = new Link()
  const listener = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'alice', logger, keepalive: { interval: 150, wait: 150 } })
  const consuming = (async () => { for await (const _m of mq.messages()) { /* taken at once */ } })()
  const f = await flood(listener.port, logger, note)
  try {
    const failed = waitFor<MessagingEvents['error'][0]>(mq, 'error')
    await f.paused
    const pausedAt = Date.now()
    const { error } = await failed
    assert.ok(error instanceof KeepaliveTimeoutError, `got ${error.name}: ${error.message}`)
    assert.match(error.message, /has read nothing/)
    assert.ok(Date.now() - pausedAt >= 300, 'not before interval + wait')
    // Closed on the flooder too (reset: it still had bytes on the way).
    if (!f.socket.destroyed) await new Promise((resolve) => f.socket.once('close', resolve))
  } finally {
    await f.stop()
    await mq.close()
    await consuming
  }
})
