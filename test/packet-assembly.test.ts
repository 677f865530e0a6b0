import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PacketDecoder, encodePacketBatch, TruncatedPacketError } from '../src/index.ts'
import { assertDecodesInSteps } from './helpers/util.ts'

test('large packets split over chunks are assembled whole, between small ones, whatever the chunk boundaries', () => {
  const sizes = [10, 64 * 1024 - 1, 64 * 1024, 3, 300 * 1024, 0, 70 * 1024, 5]
  const payloads = sizes.map((n, i) => {
    const b = Buffer.alloc(n)
    for (let j = 0; j < n; j++) b[j] = (i * 31 + j * 7) & 0xff
    return b
  })
  assertDecodesInSteps(payloads, [1, 3, 4, 1000, 16 * 1024, 64 * 1024, 65 * 1024, 100_003])
})

test('a stream that ends inside a large packet is a TruncatedPacketError, and buffered counts its bytes', () => {
  const wire = Buffer.concat(encodePacketBatch([Buffer.alloc(200 * 1024, 1)]))
  const d = new PacketDecoder()
  assert.deepEqual(d.push(wire.subarray(0, 100_000)), [])
  assert.equal(d.buffered, 100_000 - 4)
  assert.throws(() => { d.end() }, TruncatedPacketError)
})

test('an unfinished packet holds about what came for it (or at most 2 MiB), not what its header announced', () => {
  // 20 connections' decoders, each given the header of a 64 MiB packet and 1 KiB of it, then 40% of another one.
  const header = (n: number): Buffer => { const h = Buffer.alloc(4); h.writeUInt32BE(n); return h }
  const before = process.memoryUsage().arrayBuffers
  const decoders = Array.from({ length: 20 }, () => new PacketDecoder())
  for (const d of decoders) assert.deepEqual(d.push(Buffer.concat([header(64 * 1024 * 1024), Buffer.alloc(1024, 7)])), [])
  const held = process.memoryUsage().arrayBuffers - before
  assert.ok(held < 8 * 1024 * 1024, `20 announced 64 MiB packets hold ${held} bytes`)
  for (const d of decoders) assert.equal(d.buffered, 1024)
  // A packet of up to 2 MiB gets its buffer at once, a larger one once half of it is here; both arrive whole, byte for byte.
  for (const size of [1024 * 1024, 3 * 1024 * 1024 + 17]) {
    const payload = Buffer.alloc(size)
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 13) & 0xff
    const wire = Buffer.concat(encodePacketBatch([payload, Buffer.from('after')]))
    const d = new PacketDecoder()
    const got: Uint8Array[] = []
    for (let at = 0; at < wire.length; at += 100_000) {
      d.push(wire.subarray(at, Math.min(wire.length, at + 100_000)), got)
      if (got.length === 0) assert.ok(d.buffered <= at + 100_000, `buffered ${d.buffered} of ${at + 100_000} sent`)
    }
    assert.equal(got.length, 2)
    assert.deepEqual(Buffer.from(got[0]!), payload)
    assert.equal(Buffer.from(got[1]!).toString(), 'after')
  }
})
