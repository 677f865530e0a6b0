// The outbox on its own: its arrays (the queue, the entries in flight) are
// compacted in place as acknowledgements take entries off their fronts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Outbox, QueueEntry, QueueTotals, type OutboxHost } from '../src/messaging/outbox.ts'

function outbox (): { q: Outbox, delivered: number[] } {
  const delivered: number[] = []
  const host: OutboxHost = {
    delivered (o, e) { delivered.push(e.seq); o.finish(e) },
    async readStored () { return [] },
    expiredOnRead () {},
    readFailed () {},
    tooLarge () { throw new Error('no peer limit in these tests') }
  }
  const q = new Outbox('bob', 0, host, new QueueTotals())
  return { q, delivered }
}

/** An ACK frame's body: the UUIDs of `entries`, back to back. */
function ackOf (entries: readonly QueueEntry[]): Uint8Array {
  const out = new Uint8Array(16 * entries.length)
  entries.forEach((e, i) => { out.set(e.uuidBytes, 16 * i) })
  return out
}

test('acknowledgements that take thousands of entries off the front keep every other entry, in order, in the queue and in flight', () => {
  const { q, delivered } = outbox()
  q.attach({ wake () {} })
  const n = 6000
  for (let i = 0; i < n; i++) q.push(QueueEntry.create(Uint8Array.of(i & 0xff, i >> 8), q.nextSeq++, Infinity, 0, false))
  // Send 5,000; acknowledge the first 3,000 in order (the front of both arrays goes, past the point where they are compacted).
  const first: QueueEntry[] = []
  q.take(5000, Infinity, first)
  q.sent(first, true)
  assert.equal(q.inFlight, 5000)
  const front = first.slice(0, 3000)
  assert.equal(q.acked(ackOf(front), 0, 16 * front.length), true)
  assert.deepEqual(delivered, front.map((e) => e.seq))
  assert.equal(q.inFlight, 2000)
  assert.equal(q.count, n - 3000)
  // What is left, in order: the 2,000 in flight, then the 1,000 never sent.
  assert.deepEqual([...q.entries()].map((e) => e.seq), Array.from({ length: n - 3000 }, (_, i) => 3000 + i))
  const rest: QueueEntry[] = []
  q.take(Infinity, Infinity, rest)
  assert.deepEqual(rest.map((e) => e.seq), Array.from({ length: 1000 }, (_, i) => 5000 + i))
  q.sent(rest, true)
  // The rest acknowledged out of order (newest first): each found, each delivered once.
  const left = [...first.slice(3000), ...rest].reverse()
  q.acked(ackOf(left), 0, 16 * left.length)
  assert.equal(q.count, 0)
  assert.equal(q.inFlight, 0)
  assert.deepEqual([...delivered].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i))
  // And the queue takes new entries after being emptied.
  q.push(QueueEntry.create(Uint8Array.of(1), q.nextSeq++, Infinity, 0, false))
  const again: QueueEntry[] = []
  q.take(10, Infinity, again)
  assert.deepEqual(again.map((e) => e.seq), [n])
})
