import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { CounterTable } from '../src/rpc/counter-table.ts'

// Operations: a new counter a few after the last one (as calls are numbered); one
// behind it (a resend, a reordered request); a jump far ahead (past the ring's
// largest size, past 2^32); deleting or reading a key held (or, past their count,
// one that is not).
const ops = fc.array(fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constant('next' as const), step: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('old' as const), back: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('jump' as const), by: fc.constantFrom(100, 70_000, 200_000, 2 ** 32 + 5) }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant('delete' as const), pick: fc.nat(400) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('get' as const), pick: fc.nat(400) }) }
), { maxLength: 2000, size: 'max' })

test('a CounterTable answers like a Map through window slides, growth, stragglers and long jumps', () => {
  fc.assert(fc.property(fc.nat(2 ** 40), ops, (start, list) => {
    const table = new CounterTable<string>()
    const model = new Map<number, string>()
    let last = start
    let n = 0
    const keyAt = (pick: number): number => {
      const keys = [...model.keys()]
      return pick < keys.length ? keys[pick]! : last + 1 + pick
    }
    for (const o of list) {
      let key: number
      switch (o.op) {
        case 'next': key = last = last + o.step; break
        case 'old': key = Math.max(0, last - o.back); break
        case 'jump': key = last = last + o.by; break
        case 'delete': key = keyAt(o.pick); assert.equal(table.delete(key), model.delete(key)); continue
        case 'get': key = keyAt(o.pick); assert.equal(table.get(key), model.get(key)); continue
      }
      const value = `v${n++}`
      table.set(key, value)
      model.set(key, value)
      assert.equal(table.size, model.size)
    }
    for (const [k, v] of model) assert.equal(table.get(k), v)
    const entries = table.entries()
    assert.deepEqual(entries.map(([k]) => k), [...model.keys()].sort((x, y) => x - y))
    assert.deepEqual(new Map(entries), model)
    assert.equal(entries.length, model.size)
    assert.equal(table.size, model.size)
  }), { numRuns: 300 })
})

test('a CounterTable lists its entries oldest counter first, stragglers before the window', () => {
  const t = new CounterTable<number>()
  for (let k = 10; k < 100_000; k++) {
    t.set(k, k)
    if (k > 10 && k - 1 !== 10 && k - 1 !== 50) t.delete(k - 1)
  }
  // 10 and 50 were left behind as the window moved on; 99,999 is the newest.
  assert.deepEqual(t.entries().map(([k]) => k), [10, 50, 99_999])
  assert.equal(t.get(10), 10)
  assert.equal(t.get(50), 50)
  assert.equal(t.delete(10), true)
  assert.equal(t.get(10), undefined)
  assert.equal(t.size, 2)
})

test('a CounterTable grows its ring only while it stays dense, and shrinks it once mostly empty', () => {
  const t = new CounterTable<number>()
  // Sparse counters (a client numbering its calls far apart, or a hostile one): the ring stays small.
  for (let k = 0; k < 2000; k++) t.set(k * 1000, k)
  assert.equal(t.capacity, 64)
  assert.equal(t.size, 2000)
  for (let k = 0; k < 2000; k++) assert.equal(t.get(k * 1000), k)
  // A dense burst grows it...
  const u = new CounterTable<number>()
  for (let k = 0; k < 10_000; k++) u.set(k, k)
  assert.ok(u.capacity >= 10_000 && u.capacity <= 16_384, `capacity ${u.capacity}`)
  // ...and it shrinks as the calls end, whatever order they end in.
  for (let k = 0; k < 10_000; k++) if (k % 7 !== 3 || k > 100) u.delete(k)
  assert.equal(u.size, 14)
  assert.ok(u.capacity <= 256, `capacity ${u.capacity}`)
  assert.deepEqual(u.entries().map(([k]) => k), Array.from({ length: 14 }, (_, i) => i * 7 + 3))
  for (let i = 0; i < 14; i++) assert.equal(u.get(i * 7 + 3), i * 7 + 3)
})

test('a CounterTable keeps one entry per counter when its window comes back over one it had set aside', () => {
  const t = new CounterTable<string>()
  t.set(100, 'a')
  t.set(200, 'b') // too sparse to grow the ring for: 100 is set aside
  assert.equal(t.delete(200), true) // the ring is empty...
  t.set(90, 'c') // ...so its window starts again at 90, over 100
  t.set(100, 'd')
  assert.equal(t.size, 2)
  assert.equal(t.get(100), 'd')
  assert.deepEqual(t.entries(), [[90, 'c'], [100, 'd']])
  assert.equal(t.delete(100), true)
  assert.equal(t.get(100), undefined)
  assert.equal(t.size, 1)
})

test('a CounterTable keeps counters past 2^53 (a 64-bit request id) apart from the ring, next to exact ones', () => {
  const t = new CounterTable<string>()
  const near = Number.MAX_SAFE_INTEGER - 5
  for (let k = near; k <= Number.MAX_SAFE_INTEGER; k++) t.set(k, `s${k - near}`)
  const huge = [2 ** 53 + 2, 2 ** 60, 2 ** 60 + 256, 2 ** 64]
  for (const k of huge) t.set(k, `h${k}`)
  assert.equal(t.size, 6 + huge.length)
  for (let k = near; k <= Number.MAX_SAFE_INTEGER; k++) assert.equal(t.get(k), `s${k - near}`)
  for (const k of huge) assert.equal(t.get(k), `h${k}`)
  assert.deepEqual(t.entries().map(([k]) => k), [...Array.from({ length: 6 }, (_, i) => near + i), ...huge])
  for (const k of huge) assert.equal(t.delete(k), true)
  assert.equal(t.size, 6)
})
