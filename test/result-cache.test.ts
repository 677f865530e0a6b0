import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { DONE, KeyedResultCache, LOST, RUNNING, ResultCache } from '../src/rpc/result-cache.ts'
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
  for (let i = 2; i <= 1000; i++) {
    cache.finish(cache.start(request(i), 'alice'), reply(1))
    // Ten finished calls, and the one running.
    assert.ok(cache.size <= 11, `size ${cache.size}`)
  }
  assert.equal(cache.get(request(1), 'alice')?.state, RUNNING)
  // Moved to the back as it came up for forgetting, the ring never grew for it.
  assert.ok(cache.capacity <= 64, `capacity ${cache.capacity}`)
  const r = reply(2)
  cache.finish(slow, r)
  assert.equal(cache.get(request(1), 'alice')?.state, DONE)
  assert.equal(cache.get(request(1), 'alice')?.reply, r)
  // Done now, it goes in time, and the list of held replies does not keep it.
  for (let i = 1001; i <= 1100; i++) cache.finish(cache.start(request(i), 'alice'), reply(1))
  assert.equal(cache.get(request(1), 'alice'), undefined)
  assert.ok(cache.heldListed <= 11, `${cache.heldListed} listed`)
})

test('calls still running past the limit stay, the ring grows for them, and each finishes with its own reply', () => {
  const cache = new ResultCache(8, 1 << 20)
  const running = Array.from({ length: 200 }, (_, i) => cache.start(request(i + 1), 'alice'))
  // Nothing can be forgotten: all 200 are running.
  assert.equal(cache.size, 200)
  assert.ok(cache.capacity >= 200)
  for (let i = 0; i < 200; i++) assert.equal(cache.get(request(i + 1), 'alice')?.state, RUNNING, `call ${i + 1}`)
  // They finish in another order than they started, while new calls come and go.
  const replies = running.map((_, i) => reply(i % 7))
  for (let i = 199; i >= 0; i -= 2) cache.finish(running[i]!, replies[i]!)
  for (let i = 0; i < 200; i += 2) {
    cache.finish(cache.start(request(1000 + i), 'bob'), reply(1))
    cache.finish(running[i]!, replies[i]!)
  }
  assert.ok(cache.size <= 8, `size ${cache.size}`)
  // What is still remembered is right: the last calls, each with its own reply.
  let remembered = 0
  for (let i = 0; i < 200; i++) {
    const hit = cache.get(request(i + 1), 'alice')
    if (hit === undefined) continue
    remembered++
    assert.equal(hit.state, DONE)
    assert.equal(hit.reply, replies[i])
  }
  for (let i = 0; i < 200; i += 2) {
    const hit = cache.get(request(1000 + i), 'bob')
    if (hit !== undefined) { remembered++; assert.equal(hit.state, DONE) }
  }
  assert.equal(remembered, cache.size)
})

test('calls running or waiting, however many, do not push out the finished calls: the last maxEntries finished are all remembered', () => {
  const cache = new ResultCache(8, 1 << 20)
  // Call 1 finishes at once; 500 more start and run (or wait for a slot) behind it.
  const first = reply(1)
  cache.finish(cache.start(request(1), 'alice'), first)
  const running = Array.from({ length: 500 }, (_, i) => cache.start(request(i + 2), 'alice'))
  assert.equal(cache.get(request(1), 'alice')?.reply, first, 'a finished call whose reply may be lost is still answered')
  assert.equal(cache.size, 501)
  // As they finish, the finished calls remembered are the last eight to finish.
  for (let i = 0; i < 500; i++) {
    cache.finish(running[i]!, reply(1))
    const last = Math.max(0, i - 7)
    for (let j = last; j <= i; j++) assert.equal(cache.get(request(j + 2), 'alice')?.state, DONE, `call ${j + 2} after ${i + 1} finished`)
  }
  assert.equal(cache.get(request(1), 'alice'), undefined)
  assert.equal(cache.size, 8)
})

test('the snakeMQ-format cache keeps the same count rule: running calls stay besides the last maxEntries finished', () => {
  const cache = new KeyedResultCache(4, 1 << 20)
  cache.start('done-1')
  cache.finish('done-1', reply(1))
  for (let i = 0; i < 300; i++) cache.start(`run-${i}`)
  assert.equal(cache.get('done-1')?.state, DONE)
  for (let i = 0; i < 300; i += 2) cache.finish(`run-${i}`, reply(1))
  // 151 finished, four remembered (the last four to finish); the 150 still running all are.
  assert.equal(cache.size, 154)
  assert.equal(cache.get('done-1'), undefined)
  for (const i of [292, 294, 296, 298]) assert.equal(cache.get(`run-${i}`)?.state, DONE, `run-${i}`)
  assert.equal(cache.get('run-290'), undefined)
  for (let i = 1; i < 300; i += 2) assert.equal(cache.get(`run-${i}`)?.state, RUNNING, `run-${i}`)
})

test('a byte limit drops replies of calls moved behind running ones, oldest finished first', () => {
  const size = BODY_OFFSET + 10
  const cache = new ResultCache(4, 3 * size)
  const slow = cache.start(request(1), 'alice')
  for (let i = 2; i <= 7; i++) cache.finish(cache.start(request(i), 'alice'), reply(10))
  cache.finish(slow, reply(10))
  // Count limit 4: calls 4 to 7 and 1 (moved to the back while it ran) compete; bytes allow 3 replies.
  const held = [1, 2, 3, 4, 5, 6, 7].filter((c) => cache.get(request(c), 'alice')?.state === DONE)
  assert.ok(held.length <= 3, `held ${held.join(',')}`)
  assert.ok(held.includes(1), `the last reply made (call 1) is held: ${held.join(',')}`)
})

/** The cache's rules written plainly, one object per call: what ResultCache must answer. */
class ModelCache {
  private readonly order: ModelEntry[] = []
  private readonly calls = new Map<string, ModelEntry>()
  private readonly held: ModelEntry[] = []
  private bytes = 0
  constructor (private readonly maxEntries: number, private readonly maxBytes: number) {}
  get size (): number { return this.calls.size }
  get (key: string): ModelEntry | undefined { return this.calls.get(key) }
  start (key: string): ModelEntry {
    const e: ModelEntry = { key, state: RUNNING, reply: null, forgotten: false }
    this.calls.set(key, e)
    this.order.push(e)
    return e
  }
  finish (e: ModelEntry, reply: Uint8Array): void {
    if (reply.length > this.maxBytes) {
      e.state = LOST
    } else {
      e.state = DONE
      e.reply = reply
      this.held.push(e)
      this.bytes += reply.length
      while (this.bytes > this.maxBytes) {
        const old = this.held.shift()!
        if (old.forgotten || old.reply === null) continue
        this.bytes -= old.reply.length
        old.reply = null
        old.state = LOST
      }
    }
    // Only finished calls count against maxEntries; the oldest of them go.
    const finished = (): number => this.order.filter((o) => o.state !== RUNNING).length
    for (let tries = this.order.length; finished() > this.maxEntries && tries > 0; tries--) {
      const old = this.order.shift()!
      if (old.state === RUNNING) { this.order.push(old); continue }
      this.calls.delete(old.key)
      old.forgotten = true
      if (old.reply !== null) this.bytes -= old.reply.length
      old.reply = null
    }
  }
}
interface ModelEntry { key: string, state: number, reply: Uint8Array | null, forgotten: boolean }

test('ResultCache answers as the plain model of its rules, through moves, growth and both limits', () => {
  const op = fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('start' as const), peer: fc.constantFrom('alice', 'bob'), finishNow: fc.boolean(), size: fc.nat(40) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('finish' as const), pick: fc.nat(), size: fc.nat(40) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('get' as const), pick: fc.nat() }) }
  )
  fc.assert(fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 400 }), fc.array(op, { maxLength: 600, size: 'max' }), (maxEntries, extraBytes, ops) => {
    const maxBytes = BODY_OFFSET + extraBytes
    const cache = new ResultCache(maxEntries, maxBytes)
    const model = new ModelCache(maxEntries, maxBytes)
    const running: Array<{ key: string, req: Uint8Array, peer: string, run: ReturnType<ResultCache['start']>, e: ModelEntry }> = []
    const seen: Array<{ key: string, req: Uint8Array, peer: string }> = []
    let counter = 0
    for (const o of ops) {
      if (o.op === 'start') {
        const req = request(++counter)
        const key = `${o.peer}/${counter}`
        const run = cache.start(req, o.peer)
        const e = model.start(key)
        seen.push({ key, req, peer: o.peer })
        if (o.finishNow) {
          const r = reply(o.size)
          cache.finish(run, r)
          model.finish(e, r)
        } else {
          running.push({ key, req, peer: o.peer, run, e })
        }
      } else if (o.op === 'finish') {
        if (running.length === 0) continue
        const [c] = running.splice(o.pick % running.length, 1)
        const r = reply(o.size)
        cache.finish(c!.run, r)
        model.finish(c!.e, r)
      } else {
        if (seen.length === 0) continue
        const c = seen[o.pick % seen.length]!
        const got = cache.get(c.req, c.peer)
        const want = model.get(c.key)
        assert.equal(got?.state, want?.state, `state of ${c.key}`)
        assert.equal(got?.reply ?? null, want === undefined ? null : want.reply, `reply of ${c.key}`)
      }
      assert.equal(cache.size, model.size)
    }
    for (const c of seen) {
      assert.equal(cache.get(c.req, c.peer)?.state, model.get(c.key)?.state, `state of ${c.key} at the end`)
    }
  }), { numRuns: 400 })
})
