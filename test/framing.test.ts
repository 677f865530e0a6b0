import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import { Uint8ArrayList } from 'uint8arraylist'
import { assertDecodesInSteps } from './helpers/util.ts'
import {
  PacketDecoder, decodePackets, encodePacketBatch, encodePackets, uint32BEDecode, uint32BEEncode,
  PacketTooLargeError, TruncatedPacketError
} from '../src/index.ts'

const concat = (chunks: Uint8Array[]): Buffer => Buffer.concat(chunks)

async function collect<T> (source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of source) out.push(x)
  return out
}

test('a batch of packets encodes to 4-byte big-endian lengths and payloads', () => {
  const out = concat(encodePacketBatch([Buffer.from('ab'), new Uint8Array(0), Buffer.from('xyz')]))
  assert.equal(out.toString('hex'), '00000002' + '6162' + '00000000' + '00000003' + '78797a')
})

test('large payloads are passed through without a copy, framed the same', () => {
  const big = Buffer.alloc(100_000, 7)
  const chunks = encodePacketBatch([Buffer.from('a'), big, Buffer.from('b')])
  assert.ok(chunks.includes(big), 'the large payload is written as its own chunk')
  const decoded = new PacketDecoder().push(concat(chunks))
  assert.deepEqual(decoded.map((p) => p.length), [1, 100_000, 1])
  assert.ok(Buffer.from(decoded[1]!).equals(big))
})

test('a Uint8ArrayList payload is framed as its concatenation', () => {
  const list = new Uint8ArrayList(Buffer.from('he'), Buffer.from('llo'))
  assert.equal(concat(encodePacketBatch([list])).toString('hex'), '00000005' + Buffer.from('hello').toString('hex'))
})

test('the decoder yields the same packets whatever the chunk boundaries', () => {
  const payloads = Array.from({ length: 50 }, (_, i) => Buffer.alloc(i * 37 % 300, i))
  assertDecodesInSteps(payloads, [1, 2, 3, 4, 5, 7, 64, 1000])
})

test('a packet joined from several chunks is the same kind of buffer as the chunks (a Buffer in Node), like one read in place', () => {
  const wire = concat(encodePacketBatch([Buffer.from('first'), Buffer.from('second packet'), Buffer.from('third')]))
  const d = new PacketDecoder()
  // Split inside the second packet, so it is joined from the two chunks; the first and third are read where they lie.
  const out = [...d.push(wire.subarray(0, 15)), ...d.push(wire.subarray(15))]
  assert.deepEqual(out.map((p) => Buffer.from(p).toString()), ['first', 'second packet', 'third'])
  for (const p of out) assert.ok(Buffer.isBuffer(p), 'a Buffer, whether joined or not')
})

test('an oversized length header is refused before any payload is buffered', () => {
  const d = new PacketDecoder({ maxPacketSize: 1024 })
  assert.throws(() => d.push(Buffer.from('00000401', 'hex')), (err: unknown) => {
    assert.ok(err instanceof PacketTooLargeError)
    assert.equal(err.length, 1025)
    assert.equal(err.limit, 1024)
    return true
  })
  // A 4 GiB header split over two chunks is refused as soon as the header is whole.
  const d2 = new PacketDecoder()
  d2.push(Buffer.from('ffff', 'hex'))
  assert.throws(() => d2.push(Buffer.from('ffff', 'hex')), PacketTooLargeError)
  assert.equal(d2.buffered, 4)
})

test('a stream that ends inside a packet is a TruncatedPacketError', async () => {
  const source = (async function * () { yield Buffer.from('0000000501', 'hex') })()
  await assert.rejects(collect(decodePackets()(source)), TruncatedPacketError)
  const headerOnly = (async function * () { yield Buffer.from('00000005', 'hex') })()
  await assert.rejects(collect(decodePackets()(headerOnly)), TruncatedPacketError)
})

test('decodePackets yields one batch per chunk that completes packets', async () => {
  const wire = concat(encodePacketBatch([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]))
  const source = (async function * () { yield wire.subarray(0, 7); yield wire.subarray(7) })()
  const batches = await collect(decodePackets()(source))
  assert.deepEqual(batches.map((b) => b.map((p) => Buffer.from(p).toString())), [['a'], ['b', 'c']])
})

test('it-length-prefixed with our uint32BE length coder speaks the same framing', async () => {
  const payloads = [Buffer.from('hello'), Buffer.alloc(70_000, 1), Buffer.alloc(0)]
  const viaLp = concat([...lp.encode(payloads, { lengthEncoder: uint32BEEncode })].map((l) => l.subarray()))
  const ours = concat(await collect(pipe([payloads], encodePackets(), async function * (s) { for await (const b of s) yield * b })))
  assert.ok(viaLp.equals(ours))
  const back = [...lp.decode([ours], { lengthDecoder: uint32BEDecode, maxDataLength: 1 << 20 })]
  assert.deepEqual(back.map((l) => l.byteLength), [5, 70_000, 0])
})
