import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DONE, LOST, RUNNING, ResultCache } from '../src/rpc/result-cache.ts'
import { BODY_OFFSET, Kind, allocMessage, writeId } from '../src/rpc/wire.ts'

const CLIENT = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])

/** The request a client with `clientId` sends as its call number `counter`. */
function request (counter: number, clientId: Uint8Array = CLIENT): Uint8Array {
  const m = allocMessage(Kind.Call, 0)
  writeId(m, clientId, counter)
  return m
}

function reply (bytes: number): Uint8Array {
  return new Uint8Array(BODY_OFFSET + bytes)
}

test('a call seen before is found with its reply; another client, peer or counter is not', () => {
  const cache = new ResultCache(100, 1 << 20)
  const req = request(7)
  const entry = cache.start(req, 'alice')
  assert.equal(cache.get(request(7), 'alice')?.state, RUNNING)
  const r = reply(3)
  cache.finish(entry, r)
  const seen = cache.get(request(7), 'alice')
  assert.equal(seen?.state, DONE)
  assert.equal(seen?.reply, r)
  assert.equal(cache.get(request(8), 'alice'), undefined)
  assert.equal(cache.get(request(7), 'bob'), undefined)
  assert.equal(cache.get(request(7, Uint8Array.from([9, 9, 9, 9, 9, 9, 9, 9])), 'alice'), undefined)
})

test('past its count the cache forgets the oldest calls, and its list of held replies stays as short', () => {
  const max = 100
  const cache = new ResultCache(max, 1 << 30)
  for (let i = 1; i <= 20_000; i++) {
    cache.finish(cache.start(request(i), 'alice'), reply(8))
    assert.ok(cache.size <= max, `size ${cache.size} after ${i} calls`)
    // Each call's reply was listed once; the list must not keep the forgotten ones.
    assert.ok(cache.heldListed <= max, `${cache.heldListed} replies listed after ${i} calls`)
  }
  assert.equal(cache.get(request(20_000 - max), 'alice'), undefined)
  assert.equal(cache.get(request(20_000 - max + 1), 'alice')?.state, DONE)
})

test('past its bytes the cache drops the oldest replies but remembers their calls as lost', () => {
  const cache = new ResultCache(1000, 10 * (BODY_OFFSET + 100))
  for (let i = 1; i <= 50; i++) cache.finish(cache.start(request(i), 'alice'), reply(100))
  assert.equal(cache.size, 50)
  for (let i = 1; i <= 40; i++) assert.equal(cache.get(request(i), 'alice')?.state, LOST, `call ${i}`)
  for (let i = 41; i <= 50; i++) assert.equal(cache.get(request(i), 'alice')?.state, DONE, `call ${i}`)
  assert.ok(cache.heldListed <= 10)
})

test('a running call is never forgotten, however many calls come after it', () => {
  const cache = new ResultCache(10, 1 << 20)
  const slow = cache.start(request(1), 'alice')
  for (let i = 2; i <= 1000; i++) cache.finish(cache.start(request(i), 'alice'), reply(1))
  assert.equal(cache.get(request(1), 'alice'), slow)
  assert.equal(slow.state, RUNNING)
  const r = reply(2)
  cache.finish(slow, r)
  assert.equal(cache.get(request(1), 'alice')?.reply, r)
  // Done now, it goes in time, and the list of held replies does not keep it.
  for (let i = 1001; i <= 1100; i++) cache.finish(cache.start(request(i), 'alice'), reply(1))
  assert.equal(cache.get(request(1), 'alice'), undefined)
  assert.ok(cache.heldListed <= 11, `${cache.heldListed} listed`)
})
