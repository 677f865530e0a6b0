// The extension's own test vectors (docs/vectors/extensions.json, described in
// docs/PROTOCOL.md): the frame codec against them byte for byte, then a live
// Messaging against their sessions over a raw loopback socket, and the wire-level
// rules the sessions cannot pin down byte for byte (our UUIDs are random):
// redelivery in the original order, and a duplicate acknowledged again.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import {
  Link, Messaging, ProtocolError, decodeFrame, encodeFrame, encodePacketBatch, FrameType, FLAG_UNACKED, type Frame, type Message
} from '../src/index.ts'
import { RawPeer, packets, waitFor } from './helpers/util.ts'

interface FrameVector {
  name: string
  frame: { type: 16, version: number, features: number, nonce?: string, maxPacketSize?: number } | { type: 17, uuids: string[] } | { type: 18, code: number, reason: string } | { type: 19 }
  frame_hex: string
  packet_hex: string
}
interface SessionVector {
  name: string
  node_identity: string
  sent_to_node_hex: string
  application_takes: number
  then_sent_to_node_hex?: string
  received_from_node_hex: string
}
interface Vectors {
  frames: FrameVector[]
  decode_only: Array<{ name: string, frame_hex: string, decoded: object }>
  invalid: Array<{ name: string, frame_hex: string }>
  sessions: SessionVector[]
}

const vectors = JSON.parse(readFileSync(fileURLToPath(new URL('../docs/vectors/extensions.json', import.meta.url)), 'utf8')) as Vectors

/** A decoded frame in the vectors' JSON shape. */
function asJson (frame: Frame | null): object | null {
  if (frame?.type === FrameType.Ack) {
    const uuids: string[] = []
    for (let i = 0; i < frame.uuids.length; i += 16) uuids.push(Buffer.from(frame.uuids.subarray(i, i + 16)).toString('hex'))
    return { type: frame.type, uuids }
  }
  if (frame?.type === FrameType.Extensions && frame.nonce !== undefined) return { ...frame, nonce: Buffer.from(frame.nonce).toString('hex') }
  return frame
}

function fromJson (v: FrameVector['frame']): Frame {
  if (v.type === FrameType.Ack) return { type: v.type, uuids: Buffer.from(v.uuids.join(''), 'hex') }
  if (v.type === FrameType.Extensions && v.nonce !== undefined) return { ...v, nonce: Buffer.from(v.nonce, 'hex') }
  return v as Frame
}

const NONCE = '<nonce>'

/**
 * Checks `got` (hex) against a vector's hex in which NONCE stands for the 16
 * bytes of the sender's nonce, returning the nonce seen; the rest must match byte for byte.
 */
function matchNonce (got: string, expected: string): string | null {
  const at = expected.indexOf(NONCE)
  if (at < 0) { assert.equal(got, expected); return null }
  const nonce = got.slice(at, at + 32)
  assert.match(nonce, /^[0-9a-f]{32}$/)
  assert.equal(got, expected.replace(NONCE, nonce))
  return nonce
}

/** Bytes of a vector's hex, a NONCE counting as 16. */
const vectorBytes = (hexWithNonce: string): number => hexWithNonce.replace(NONCE, '0'.repeat(32)).length / 2

const hex = (payload: ReturnType<typeof encodeFrame>): string => Buffer.from(payload instanceof Uint8Array ? payload : payload.subarray()).toString('hex')

for (const v of vectors.frames) {
  test(`vector "${v.name}": encodes and decodes byte for byte`, () => {
    assert.equal(hex(encodeFrame(fromJson(v.frame))), v.frame_hex)
    assert.equal(Buffer.concat(encodePacketBatch([encodeFrame(fromJson(v.frame))])).toString('hex'), v.packet_hex)
    assert.deepEqual(asJson(decodeFrame(Buffer.from(v.frame_hex, 'hex'))), v.frame)
  })
}

for (const v of vectors.decode_only) {
  test(`vector "${v.name}"`, () => {
    assert.deepEqual(asJson(decodeFrame(Buffer.from(v.frame_hex, 'hex'))), v.decoded)
  })
}

for (const v of vectors.invalid) {
  test(`vector "${v.name}": a ProtocolError (the connection is closed)`, () => {
    assert.throws(() => decodeFrame(Buffer.from(v.frame_hex, 'hex')), ProtocolError)
  })
}

/** A listening Messaging and a raw socket connected to it. */
async function nodePeer (identity: string): Promise<{ mq: Messaging, port: number }> {
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  return { mq: new Messaging(link, { identity }), port }
}

/** The MESSAGE frames in a hex byte string, as [uuid, data] pairs. */
function messagesIn (bytesHex: string): Array<[string, string]> {
  return packets(Buffer.from(bytesHex, 'hex')).filter((p) => p[0] === FrameType.Message)
    .map((p) => [p.subarray(1, 17).toString('hex'), p.subarray(25).toString()])
}

for (const s of vectors.sessions) {
  test(`session "${s.name}" against a live Messaging`, async () => {
    const { mq, port } = await nodePeer(s.node_identity)
    const peer = await RawPeer.connect(port)
    const taken: Message[] = []
    let tookAll: () => void = () => {}
    const allTaken = new Promise<void>((resolve) => { tookAll = resolve })
    // The application: takes messages and keeps asking for more, which is what acknowledges each one.
    const app = (async () => {
      if (s.application_takes === 0) return
      for await (const m of mq.messages()) {
        taken.push(m)
        if (taken.length === s.application_takes) tookAll()
      }
    })()
    try {
      peer.write(s.sent_to_node_hex)
      if (s.application_takes > 0) {
        await allTaken
        assert.deepEqual(taken.map((m) => [m.uuid, Buffer.from(m.data).toString()]), messagesIn(s.sent_to_node_hex))
      }
      // The loop has asked for the next message by the next turn of the event loop.
      await new Promise((resolve) => setImmediate(resolve))
      if (s.then_sent_to_node_hex !== undefined) peer.write(s.then_sent_to_node_hex)
      const expected = s.received_from_node_hex
      const got = await peer.bytes(vectorBytes(expected))
      matchNonce(got.toString('hex'), expected)
      assert.ok(!peer.socket.destroyed)
    } finally {
      peer.destroy()
      await mq.close()
      await app
    }
  })
}

test('a Node connector sends the hello of the vectors: PROTOCOL_VERSION, EXTENSIONS, IDENTIFICATION', async () => {
  const hello = vectors.sessions[0]!
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted = once(server, 'connection') as Promise<[net.Socket]>
  const link = new Link()
  const mq = new Messaging(link, { identity: hello.node_identity })
  link.connect({ port: (server.address() as net.AddressInfo).port, reconnect: false })
  const fake = RawPeer.from((await accepted)[0])
  try {
    const nonce = matchNonce((await fake.bytes(vectorBytes(hello.received_from_node_hex))).toString('hex'), hello.received_from_node_hex)
    assert.equal(nonce, Buffer.from((mq as unknown as { nonce: Uint8Array }).nonce).toString('hex'), 'the nonce is the Messaging\'s')
  } finally {
    fake.destroy()
    await mq.close()
    server.close()
  }
})

/** A remote of layout version 1 (acknowledged delivery, no verdicts), as an earlier version of this library. */
const BOB_HELLO = '000000050000000001' + '00000006100100000001' + '0000000402626f62'
/** Bytes of what a Node peer named alice sends on connect. */
const NODE_HELLO_BYTES = vectorBytes(vectors.sessions[0]!.received_from_node_hex)
const ackPacket = (uuids: string[]): string => Buffer.concat(encodePacketBatch([encodeFrame({ type: FrameType.Ack, uuids: Buffer.from(uuids.join(''), 'hex') })])).toString('hex')

/** Drops `peer`'s connection, waits until `mq` has seen it go, and connects again as bob. */
async function reconnectBob (mq: Messaging, peer: RawPeer, port: number): Promise<RawPeer> {
  const gone = waitFor(mq, 'disconnect')
  peer.destroy()
  await gone
  const next = await RawPeer.connect(port)
  next.write(BOB_HELLO)
  return next
}

test('on the wire: what was not acknowledged is sent again on the next connection, same UUIDs, original order', async () => {
  const { mq, port } = await nodePeer('alice')
  try {
    const sent: string[] = []
    for (const data of ['one', 'two', 'three']) sent.push((await mq.send('bob', data)).uuid)
    const first = await RawPeer.connect(port)
    first.write(BOB_HELLO)
    const hello = NODE_HELLO_BYTES
    const messageBytes = (data: string): number => 4 + 1 + 24 + data.length
    const got1 = await first.bytes(hello + messageBytes('one') + messageBytes('two') + messageBytes('three'))
    assert.deepEqual(messagesIn(got1.toString('hex')), [[sent[0], 'one'], [sent[1], 'two'], [sent[2], 'three']])
    // Only the first is acknowledged before the connection drops.
    const acked = waitFor(mq, 'delivered', (e: { uuid: string }) => e.uuid === sent[0])
    first.write(ackPacket([sent[0]!]))
    await acked
    assert.equal(mq.queued('bob'), 2)
    const second = await reconnectBob(mq, first, port)
    const got2 = await second.bytes(hello + messageBytes('two') + messageBytes('three'))
    assert.deepEqual(messagesIn(got2.toString('hex')), [[sent[1], 'two'], [sent[2], 'three']])
    // One ACK frame for both.
    const done = waitFor(mq, 'delivered', () => mq.queued('bob') === 0)
    second.write(ackPacket([sent[1]!, sent[2]!]))
    await done
    second.destroy()
  } finally {
    await mq.close()
  }
})

test('on the wire: a duplicate of a message the application already received is dropped and acknowledged again', async () => {
  const { mq, port } = await nodePeer('alice')
  const peer = await RawPeer.connect(port)
  const uuid = '5f0c7c2a9d3e4b1f8a66e0b4c2d19a01'
  const message = Buffer.concat(encodePacketBatch([encodeFrame({ type: FrameType.Message, uuid, ttl: 0xFFFFFFFF, flags: 1, data: Buffer.from('once') })])).toString('hex')
  const taken: Message[] = []
  const app = (async () => { for await (const m of mq.messages()) taken.push(m) })()
  try {
    peer.write(BOB_HELLO + message)
    const oneAck = NODE_HELLO_BYTES + 21
    await peer.bytes(oneAck)
    assert.equal(peer.received.subarray(NODE_HELLO_BYTES).toString('hex'), ackPacket([uuid]))
    peer.write(message)
    await peer.bytes(oneAck + 21)
    assert.equal(peer.received.subarray(oneAck).toString('hex'), ackPacket([uuid]))
    assert.deepEqual(taken.map((m) => m.uuid), [uuid], 'the application saw it once')
  } finally {
    peer.destroy()
    await mq.close()
    await app
  }
})

test('on the wire: a message sent with flag 0x2 leaves the queue once written, without an ACK, and is not sent again', async () => {
  const { mq, port } = await nodePeer('alice')
  try {
    const failed: unknown[] = []
    // Queued before bob connects: one without acknowledgement (as RPC sends), then an ordinary one.
    await mq.ready()
    mq.post('bob', Buffer.from('call'), undefined, (err) => { failed.push(err) }, null, true)
    const ordinary = (await mq.send('bob', 'note')).uuid
    assert.equal(mq.queued('bob'), 2)
    const first = await RawPeer.connect(port)
    const written = waitFor(mq, 'delivered')
    first.write(BOB_HELLO)
    const hello = NODE_HELLO_BYTES
    const got = await first.bytes(hello + 2 * (4 + 1 + 24 + 4))
    const frames = packets(got.subarray(hello))
    assert.deepEqual(frames.map((f) => [f[0], f.readUInt32BE(21), f.subarray(25).toString()]), [[FrameType.Message, 2, 'call'], [FrameType.Message, 0, 'note']])
    // Delivered once written: no ACK came, and only the ordinary message is still held.
    const flagged = frames[0]!.subarray(1, 17).toString('hex')
    assert.equal(((await written) as { uuid: string }).uuid, flagged)
    assert.equal(mq.queued('bob'), 1)
    // The next connection gets the unacknowledged ordinary message again, not the flagged one.
    const second = await reconnectBob(mq, first, port)
    const again = await second.bytes(hello + 4 + 1 + 24 + 4)
    assert.deepEqual(messagesIn(again.toString('hex')), [[ordinary, 'note']])
    second.destroy()
    assert.deepEqual(failed, [])
  } finally {
    await mq.close()
  }
})

test('on the wire: an unacknowledged message made while a chunk is read, then an ordinary one, go out in that order; one made alone goes out and is done once written', async () => {
  const { mq, port } = await nodePeer('alice')
  // As an RPC server answers: synchronously, while the received chunk is being handled.
  const consumer = mq.consume({}, (m) => {
    const text = Buffer.from(m.data).toString()
    mq.post('bob', Buffer.from(`reply to ${text}`), undefined, () => {}, null, true)
    if (text === 'two') void mq.send('bob', Buffer.from('and a note'))
  })
  const peer = await RawPeer.connect(port)
  try {
    const message = (data: string): string => Buffer.concat(encodePacketBatch([encodeFrame({
      type: FrameType.Message, uuid: Buffer.alloc(16, data.length), ttl: 0xFFFFFFFF, flags: FLAG_UNACKED, data: Buffer.from(data)
    })])).toString('hex')
    const hello = NODE_HELLO_BYTES
    const size = (data: string): number => 4 + 1 + 24 + data.length
    peer.write(BOB_HELLO + message('one'))
    await peer.bytes(hello + size('reply to one'))
    peer.write(message('two'))
    const got = await peer.bytes(hello + size('reply to one') + size('reply to two') + size('and a note'))
    const frames = packets(got.subarray(hello))
    assert.deepEqual(frames.map((f) => [f.readUInt32BE(21), f.subarray(25).toString()]), [
      [FLAG_UNACKED, 'reply to one'], [FLAG_UNACKED, 'reply to two'], [0, 'and a note']
    ])
    // The unacknowledged replies are done once written; the ordinary message waits for its ACK.
    assert.equal(mq.queued('bob'), 1)
    const acked = waitFor(mq, 'delivered', () => mq.queued('bob') === 0)
    peer.write(ackPacket([frames[2]!.subarray(1, 17).toString('hex')]))
    await acked
    mq.post('bob', Buffer.from('alone'), 60, () => {}, null, true)
    const alone = packets((await peer.bytes(got.length + size('alone'))).subarray(got.length))
    assert.deepEqual(alone.map((f) => [f.readUInt32BE(17), f.readUInt32BE(21), f.subarray(25).toString()]), [[60, FLAG_UNACKED, 'alone']])
    assert.equal(mq.queued('bob'), 0)
  } finally {
    consumer.end()
    peer.destroy()
    await mq.close()
  }
})

test('on the wire: unacknowledged messages sent from a connect handler (as RpcClient resends its calls) go out, in order', async () => {
  const { mq, port } = await nodePeer('alice')
  mq.on('connect', () => {
    for (const text of ['first', 'second']) mq.post('bob', Buffer.from(text), undefined, () => {}, null, true)
  })
  const errors: unknown[] = []
  mq.on('error', (e) => { errors.push(e.error) })
  const peer = await RawPeer.connect(port)
  try {
    peer.write(BOB_HELLO)
    const hello = NODE_HELLO_BYTES
    const got = await peer.bytes(hello + 2 * (4 + 1 + 24) + 'first'.length + 'second'.length)
    assert.deepEqual(packets(got.subarray(hello)).map((f) => f.subarray(25).toString()), ['first', 'second'])
    assert.deepEqual(errors, [])
  } finally {
    peer.destroy()
    await mq.close()
  }
})
