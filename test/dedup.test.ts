import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { DedupWindow, SEEN_DONE, SEEN_PENDING } from '../src/messaging/dedup.ts'

/** The reference: a Map in insertion order, the oldest forgotten first. */
class Model {
  readonly seen = new Map<string, { done: boolean, ticket: number }>()
  private next = 0
  constructor (private readonly window: number) {}
  get (k: string): boolean | undefined { return this.seen.get(k)?.done }
  add (k: string): number {
    if (this.seen.size === this.window) this.seen.delete(this.seen.keys().next().value!)
    const ticket = this.next++
    this.seen.set(k, { done: false, ticket })
    return ticket
  }

  markDone (ticket: number): void {
    for (const v of this.seen.values()) if (v.ticket === ticket) v.done = true
  }
}

const uuid = (n: number): Buffer => {
  const b = Buffer.alloc(20, 0xee)
  b.writeUInt32BE(n, 6) // not at offset 0: the window reads UUIDs where they lie in a packet
  return b
}

test('the dedup window answers like a bounded map of recent UUIDs, through growth, eviction and done marks', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 600 }),
    // Small UUID space, so repeats are frequent; the op picks add-if-new, mark done, or look up.
    fc.array(fc.tuple(fc.constantFrom('add', 'done', 'get'), fc.integer({ min: 0, max: 900 })), { maxLength: 3000 }),
    (window, ops) => {
      const w = new DedupWindow(window)
      const m = new Model(window)
      const tickets: number[] = []
      for (const [op, n] of ops) {
        const b = uuid(n)
        const got = w.get(b, 4)
        assert.equal(got, m.get(String(n)), `get ${n}`)
        if (op === 'add' && got === undefined) {
          const t = w.add(b, 4)
          assert.equal(t, m.add(String(n)))
          tickets.push(t)
        } else if (op === 'done' && tickets.length > 0) {
          const t = tickets[n % tickets.length]!
          w.markDone(t)
          m.markDone(t)
        }
      }
      for (let n = 0; n <= 900; n++) assert.equal(w.get(uuid(n), 4), m.get(String(n)), `final get ${n}`)
    }
  ), { numRuns: 200 })
})

test('admit() answers as get() then, for a new UUID, add() do', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 600 }),
    fc.array(fc.tuple(fc.constantFrom('admit', 'done'), fc.integer({ min: 0, max: 900 })), { maxLength: 3000 }),
    (window, ops) => {
      const w = new DedupWindow(window)
      const m = new Model(window)
      const tickets: number[] = []
      for (const [op, n] of ops) {
        if (op === 'done' && tickets.length > 0) {
          const t = tickets[n % tickets.length]!
          w.markDone(t)
          m.markDone(t)
          continue
        }
        const got = w.admit(uuid(n), 4)
        const seen = m.get(String(n))
        if (seen === undefined) {
          assert.equal(got, m.add(String(n)), `admit ${n}: a new one`)
          tickets.push(got)
        } else {
          assert.equal(got, seen ? SEEN_DONE : SEEN_PENDING, `admit ${n}: seen`)
        }
      }
      for (let n = 0; n <= 900; n++) assert.equal(w.get(uuid(n), 4), m.get(String(n)), `final get ${n}`)
    }
  ), { numRuns: 200 })
})

test('a full window of random UUIDs keeps exactly the newest ones', () => {
  const window = 5000
  const w = new DedupWindow(window)
  const all: Buffer[] = []
  for (let i = 0; i < 3 * window; i++) {
    const b = Buffer.alloc(16)
    for (let j = 0; j < 16; j++) b[j] = Math.floor(Math.random() * 256)
    all.push(b)
    assert.equal(w.get(b, 0), undefined)
    w.add(b, 0)
  }
  for (let i = 0; i < all.length; i++) assert.equal(w.get(all[i]!, 0), i >= all.length - window ? false : undefined, `uuid ${i}`)
})

test('a fresh window holds no buffers; its first UUID allocates a small ring, and duplicates are filtered across every growth', () => {
  const window = 65_536
  const w = new DedupWindow(window)
  assert.equal(w.bytes, 0)
  assert.equal(w.get(uuid(1), 4), undefined)
  w.markDone(0)
  assert.equal(w.bytes, 0, 'lookups and marks allocate nothing')
  const first = w.admit(uuid(0), 4)
  assert.equal(first, 0)
  assert.ok(w.bytes > 0 && w.bytes <= 1024, `${w.bytes} bytes after one UUID`)
  // Through every doubling up to the full window, then past it (the oldest forgotten).
  let grew = 0
  let last = w.bytes
  for (let n = 1; n < window + 1000; n++) {
    assert.equal(w.admit(uuid(n), 4), n)
    if (w.bytes !== last) { grew++; last = w.bytes }
    if ((n & (n - 1)) === 0 || n === window + 999) {
      // Every UUID still in the window is recognised, whether done or not; the forgotten are new.
      const oldest = Math.max(0, n - window + 1)
      for (const k of [oldest, (oldest + n) >> 1, n]) assert.equal(w.admit(uuid(k), 4), SEEN_PENDING, `${k} after ${n}`)
      if (oldest > 0) assert.equal(w.get(uuid(oldest - 1), 4), undefined, `${oldest - 1} forgotten after ${n}`)
    }
  }
  assert.equal(grew, Math.log2(window / 16), 'doubled from 16 slots to the window')
  w.markDone(window + 999)
  assert.equal(w.admit(uuid(window + 999), 4), SEEN_DONE)
})

test('forget() lets a UUID whose message was set aside in again as new; the window answers like a bounded list of recent UUIDs through it', () => {
  /** The reference: a list in arrival order, the oldest dropped first; a forgotten UUID keeps its place until dropped, and is found no more. */
  class ForgetModel {
    private readonly list: Array<{ k: number, done: boolean, ticket: number, forgotten: boolean }> = []
    private next = 0
    constructor (private readonly window: number) {}
    private find (k: number): { done: boolean, forgotten: boolean } | undefined {
      for (const e of this.list) if (e.k === k && !e.forgotten) return e
      return undefined
    }

    admit (k: number): number {
      const e = this.find(k)
      if (e !== undefined) return e.done ? SEEN_DONE : SEEN_PENDING
      if (this.list.length === this.window) this.list.shift()
      const ticket = this.next++
      this.list.push({ k, done: false, ticket, forgotten: false })
      return ticket
    }

    markDone (ticket: number): void { for (const e of this.list) if (e.ticket === ticket && !e.forgotten) e.done = true }
    forget (ticket: number): void { for (const e of this.list) if (e.ticket === ticket && !e.done) e.forgotten = true }
    get (k: number): boolean | undefined { return this.find(k)?.done }
  }
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 300 }),
    fc.array(fc.tuple(fc.constantFrom('admit', 'admit', 'done', 'forget'), fc.integer({ min: 0, max: 400 })), { maxLength: 2000 }),
    (window, ops) => {
      const w = new DedupWindow(window)
      const m = new ForgetModel(window)
      const tickets: number[] = []
      for (const [op, n] of ops) {
        if (op === 'admit') {
          const t = w.admit(uuid(n), 4)
          assert.equal(t, m.admit(n), `admit ${n}`)
          if (t >= 0) tickets.push(t)
        } else if (tickets.length > 0) {
          const t = tickets[n % tickets.length]!
          if (op === 'done') { w.markDone(t); m.markDone(t) } else { w.forget(t); m.forget(t) }
        }
      }
      for (let n = 0; n <= 400; n++) assert.equal(w.get(uuid(n), 4), m.get(n), `final get ${n}`)
    }
  ), { numRuns: 200 })
})
