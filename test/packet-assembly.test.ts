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
