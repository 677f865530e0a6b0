// Byte-exact checks against bytes recorded from a real snakeMQ 1.6 peer, in both
// directions. test/fixtures/snakemq-1.6.json is a copy of the project's shared
// ../shared/vectors/snakemq-1.6.json, so a clone runs on its own; where the shared
// original is present, the first test checks the copy has not drifted.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import net from 'node:net'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import {
  Link, Messaging, decodeFrame, encodeFrame, encodePacketBatch, FrameType, type Frame, type Message
} from '../src/index.ts'
import { RawPeer, nodeHello, packets, waitFor } from './helpers/util.ts'

interface Vectors {
  frames: Array<{ name: string, frame_hex: string, packet_hex: string }>
  sessions: Array<{ name: string, sent_to_snakemq_hex: string, received_from_snakemq_hex: string, connection_after: 'open' | 'closed' }>
}
const vectors = JSON.parse(readFileSync(fileURLToPath(new URL('./fixtures/snakemq-1.6.json', import.meta.url)), 'utf8')) as Vectors
const session = (prefix: string): Vectors['sessions'][number] => vectors.sessions.find((s) => s.name.startsWith(prefix))!

const shared = fileURLToPath(new URL('../../shared/vectors/snakemq-1.6.json', import.meta.url))
test('the vector fixture is the recorded file, byte for byte (where the shared original is beside the repo)', () => {
  const copy = readFileSync(fileURLToPath(new URL('./fixtures/snakemq-1.6.json', import.meta.url)))
  assert.ok(copy.length > 0)
  if (existsSync(shared)) assert.ok(readFileSync(shared).equals(copy), 'test/fixtures/snakemq-1.6.json differs from shared/vectors')
})

for (const v of vectors.frames) {
  test(`frame "${v.name}" decodes and re-encodes byte for byte`, () => {
    const frame = decodeFrame(Buffer.from(v.frame_hex, 'hex'))
    assert.ok(frame !== null)
    const payload = encodeFrame(frame)
    const bytes = Buffer.from(payload instanceof Uint8Array ? payload : payload.subarray())
    assert.equal(bytes.toString('hex'), v.frame_hex)
    assert.equal(Buffer.concat(encodePacketBatch([payload])).toString('hex'), v.packet_hex)
  })
}

test('the recorded frames decode to what their names say', () => {
  const byName = new Map(vectors.frames.map((v) => [v.name, decodeFrame(Buffer.from(v.frame_hex, 'hex'))]))
  assert.deepEqual(byName.get('protocol_version'), { type: FrameType.ProtocolVersion, version: 1 })
  assert.deepEqual(byName.get('identification bob'), { type: FrameType.Identification, identity: 'bob' })
  const hello = byName.get('message hello ttl=600 flags=0') as Extract<Frame, { type: 3 }>
  assert.equal(hello.ttl, 600)
  assert.equal(hello.flags, 0)
  assert.equal(Buffer.from(hello.data as Uint8Array).toString(), 'hello')
  const inf = byName.get('message hello ttl=None (infinite)') as Extract<Frame, { type: 3 }>
  assert.equal(inf.ttl, 0xFFFFFFFF)
  const empty = byName.get('message ttl=0 persistent empty data') as Extract<Frame, { type: 3 }>
  assert.equal(empty.flags, 1)
  assert.equal(empty.data.byteLength, 0)
})

/** Starts a Node peer "alice" listening, like the recorded snakeMQ peer. */
async function alice (options: { plainSnakeMQ?: boolean, keepalive?: { interval: number, wait: number } } = {}): Promise<{ mq: Messaging, port: number }> {
  const link = new Link()
  const l = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'alice', ...options })
  return { mq, port: l.port }
}

/**
 * Alice listening and a raw peer connected to her: `body` plays a recording
 * against them (`errors` collects what alice reports); then both are closed.
 */
async function replaying (options: Parameters<typeof alice>[0], body: (t: { mq: Messaging, peer: RawPeer, errors: Error[] }) => Promise<void>): Promise<void> {
  const { mq, port } = await alice(options)
  const errors: Error[] = []
  mq.on('error', (e) => errors.push(e.error))
  const peer = await RawPeer.connect(port)
  try {
    await body({ mq, peer, errors })
  } finally {
    peer.destroy()
    await mq.close()
  }
}

const VERSION_AND_ALICE = '000000050000000001' + '0000000602616c696365'

for (const plain of [true, false]) {
  const mode = plain ? 'in plain snakeMQ mode' : 'with extensions on'
  // What alice sends first (her EXTENSIONS carry her own nonce).
  const helloOf = (mq: Messaging): string => nodeHello(mq, plain)

  test(`replay "connect, handshake, then two queued messages to bob" ${mode}`, async () => {
    const s = session('connect, handshake')
    await replaying({ plainSnakeMQ: plain }, async ({ mq, peer }) => {
      // Queued while bob is away, as in the recording: 600 s TTL, then no TTL and persistent.
      await mq.send('bob', 'first', { ttl: 600 })
      await mq.send('bob', 'second', { persistent: true })
      peer.write(s.sent_to_snakemq_hex)
      const expected = Buffer.from(s.received_from_snakemq_hex, 'hex')
      const hello = helloOf(mq)
      const got = await peer.bytes(hello.length / 2 + expected.length - VERSION_AND_ALICE.length / 2)
      assert.equal(got.subarray(0, hello.length / 2).toString('hex'), hello)
      const ours = packets(got.subarray(hello.length / 2))
      const theirs = packets(expected.subarray(VERSION_AND_ALICE.length / 2))
      assert.equal(ours.length, 2)
      for (let i = 0; i < 2; i++) {
        const a = ours[i]!
        const b = theirs[i]!
        // Same type, same flags and data; the UUIDs are random; the TTL has run down by less than a second.
        assert.equal(a[0], b[0])
        assert.equal(a.subarray(21).toString('hex'), b.subarray(21).toString('hex'))
        const ttlA = a.readUInt32BE(17)
        const ttlB = b.readUInt32BE(17)
        assert.ok(ttlA === ttlB || (ttlB !== 0xFFFFFFFF && ttlA === ttlB + 1), `ttl ${ttlA} vs recorded ${ttlB}`)
      }
      assert.ok(!peer.socket.destroyed, 'the connection stays open')
      // A plain peer never acknowledges: the messages count as delivered once written
      // (usually before this line runs; waiting for an event already gone would time out).
      if (mq.queued('bob') > 0) await waitFor(mq, 'delivered', () => mq.queued('bob') === 0)
      assert.equal(mq.queued('bob'), 0)
    })
  })

  test(`replay "peer answers with protocol version 2" ${mode}: refused and closed`, async () => {
    const s = session('peer answers with protocol version 2')
    await replaying({ plainSnakeMQ: plain }, async ({ peer, errors }) => {
      peer.write(s.sent_to_snakemq_hex)
      await peer.closed
      const frames = packets(peer.received)
      assert.equal(frames[0]!.toString('hex'), '0000000001', 'our PROTOCOL_VERSION comes first')
      assert.equal(peer.received.subarray(0, 9).toString('hex'), s.received_from_snakemq_hex)
      // Unlike snakeMQ 1.6 we flush INCOMPATIBLE_PROTOCOL before closing.
      assert.equal(frames.at(-1)!.toString('hex'), '01')
      assert.equal(errors[0]?.name, 'IncompatibleProtocolError')
    })
  })

  test(`replay "silent peer after handshake: keepalive ping, then close" ${mode}`, async () => {
    const s = session('silent peer')
    await replaying({ plainSnakeMQ: plain, keepalive: { interval: 100, wait: 100 } }, async ({ mq, peer, errors }) => {
      peer.write(s.sent_to_snakemq_hex)
      await peer.closed
      const expected = plain ? s.received_from_snakemq_hex : helloOf(mq) + '0000000104'
      assert.equal(peer.received.toString('hex'), expected)
      assert.equal(errors[0]?.name, 'KeepaliveTimeoutError')
    })
  })

  test(`replay "unknown frame types 16 and 17 are ignored; a ping is answered with pong" ${mode}`, async () => {
    const s = session('unknown frame types')
    await replaying({ plainSnakeMQ: plain }, async ({ mq, peer }) => {
      peer.write(s.sent_to_snakemq_hex)
      const expected = plain ? s.received_from_snakemq_hex : helloOf(mq) + '0000000105'
      const got = await peer.bytes(expected.length / 2)
      assert.equal(got.toString('hex'), expected)
      assert.ok(mq.isConnected('bob'))
      assert.ok(!peer.socket.destroyed)
    })
  })

  test(`replay "message before identification: connection closed" ${mode}`, async () => {
    const s = session('message before identification')
    const received: Message[] = []
    let consumer: Promise<void> = Promise.resolve()
    await replaying({ plainSnakeMQ: plain }, async ({ mq, peer, errors }) => {
      consumer = (async () => { for await (const m of mq.messages()) received.push(m) })()
      peer.write(s.sent_to_snakemq_hex)
      await peer.closed
      assert.ok(peer.received.toString('hex').startsWith(s.received_from_snakemq_hex))
      assert.equal(errors[0]?.name, 'ProtocolError')
      assert.equal(received.length, 0)
    })
    // The consumer's loop ends once the Messaging is closed.
    await consumer
  })
}

/**
 * A raw listener standing in for the recorded snakeMQ listener, and a Node peer
 * "bob" connected to it; `close()` closes all three.
 */
async function bobAndFakeListener (options: { plainSnakeMQ?: boolean }): Promise<{ mq: Messaging, fake: RawPeer, close: () => Promise<void> }> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  const accepted = once(server, 'connection') as Promise<[net.Socket]>
  const link = new Link()
  const mq = new Messaging(link, { identity: 'bob', ...options })
  link.connect({ port, reconnect: false })
  const [socket] = await accepted
  const fake = RawPeer.from(socket)
  return {
    mq,
    fake,
    async close () {
      fake.destroy()
      await mq.close()
      server.close()
    }
  }
}

test('a Node connector talks to a recorded snakeMQ listener: handshake bytes and both messages', async () => {
  const s = session('connect, handshake')
  const { mq, fake, close } = await bobAndFakeListener({})
  try {
    // We announce extensions between PROTOCOL_VERSION and IDENTIFICATION; snakeMQ ignores type 16.
    const ours = nodeHello(mq)
    await fake.bytes(ours.length / 2)
    assert.equal(fake.received.toString('hex'), ours)
    fake.write(s.received_from_snakemq_hex)
    const got: Message[] = []
    for await (const m of mq.messages()) {
      got.push(m)
      if (got.length === 2) break
    }
    assert.deepEqual(got.map((m) => [m.from, Buffer.from(m.data).toString(), m.ttl, m.persistent, m.uuid]), [
      ['alice', 'first', 599, false, '01'.repeat(16)],
      ['alice', 'second', null, true, '02'.repeat(16)]
    ])
    // The recorded peer announced nothing: it is a plain snakeMQ peer and gets no ACK frames.
    await new Promise<void>((resolve) => setImmediate(resolve))
    assert.equal(fake.received.toString('hex'), ours)
  } finally {
    await close()
  }
})

test('in plain snakeMQ mode the handshake is byte for byte what the recorded client sent', async () => {
  const s = session('connect, handshake')
  const { fake, close } = await bobAndFakeListener({ plainSnakeMQ: true })
  try {
    await fake.bytes(s.sent_to_snakemq_hex.length / 2)
    assert.equal(fake.received.toString('hex'), s.sent_to_snakemq_hex)
  } finally {
    await close()
  }
})
