// The everyday API people reach for: whenConnected(), stats(), and options
// outside their domain refused with InvalidArgumentError.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Link, Messaging, AbortError, ClosedError, InvalidArgumentError } from '../src/index.ts'
import { connected, pair, take, waitFor } from './helpers/util.ts'

test('whenConnected() resolves at once for a connected peer, later for one that connects, and rejects on timeout, abort and close', async () => {
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice' })
  try {
    await assert.rejects(a.whenConnected('bob', { timeout: 50 }), AbortError)
    const ac = new AbortController()
    const aborted = assert.rejects(a.whenConnected('bob', { signal: ac.signal }), AbortError)
    ac.abort()
    await aborted
    const waiting = a.whenConnected('bob')
    const linkB = new Link()
    const b = new Messaging(linkB, { identity: 'bob' })
    linkB.connect({ port: l.port })
    await waiting
    assert.equal(a.isConnected('bob'), true)
    await a.whenConnected('bob')
    await b.close()
    const never = a.whenConnected('carol')
    await a.close()
    await assert.rejects(never, ClosedError)
    await assert.rejects(a.whenConnected('bob'), ClosedError)
    await assert.rejects(new Messaging(new Link(), { identity: 'x' }).whenConnected(''), InvalidArgumentError)
  } finally {
    await a.close()
  }
})

test('stats() counts, per peer and in total, what was sent, received, queued, the bytes both ways and the reconnects', async () => {
  const { a, b, linkB } = await pair()
  try {
    const got = take(a, 10)
    for (let i = 0; i < 10; i++) await b.send('alice', `m${i}`)
    await got
    await b.send('__proto__', 'for nobody')
    // The acknowledgements may still be on their way.
    if (b.queued('alice') > 0) await waitFor(b, 'delivered', () => b.queued('alice') === 0)
    const sb = b.stats()
    const alice = sb.peers.alice!
    assert.equal(alice.connected, true)
    assert.equal(alice.sent, 10)
    assert.equal(alice.queued, 0)
    assert.equal(alice.unacked, 0)
    assert.equal(alice.reconnects, 0)
    assert.ok(alice.bytesOut >= 10 * (4 + 1 + 24 + 2), `bytesOut ${alice.bytesOut}`)
    assert.ok(alice.bytesIn > 0)
    assert.equal(Object.getPrototypeOf(sb.peers), null)
    assert.equal(sb.peers.__proto__?.queued, 1)
    assert.equal(sb.totals.queued, 1)
    assert.equal(sb.totals.connected, 1)
    const sa = a.stats()
    assert.equal(sa.peers.bob!.received, 10)
    assert.equal(sa.peers.bob!.bytesIn, alice.bytesOut, 'what bob wrote is what alice read')

    // A reconnect: counted, and the bytes of the first connection are kept.
    const before = alice.bytesOut
    const back = waitFor(b, 'connect')
    for (const c of linkB.connectionsOpen) c.close()
    await back
    await connected(a, 'bob')
    const after = b.stats().peers.alice!
    assert.equal(after.reconnects, 1)
    assert.ok(after.bytesOut > before, 'the new connection\'s handshake is counted on top')
  } finally {
    await a.close()
    await b.close()
  }
})

test('options outside their domain are refused with InvalidArgumentError, on the fast path and the slow one', async () => {
  const { a, b } = await pair()
  try {
    await b.send('alice', 'make the queue exist')
    for (const options of [{ wait: 'deliver' }, { whenFull: 'drop' }, { persistent: 'yes' }, { signal: 'stop' }] as const) {
      await assert.rejects(b.send('alice', 'x', options as never), InvalidArgumentError, JSON.stringify(options))
      await assert.rejects(b.send('nobody-yet', 'x', options as never), InvalidArgumentError, JSON.stringify(options))
    }
    assert.throws(() => a.messages({ ack: 'sometimes' as never }), InvalidArgumentError)
    assert.throws(() => a.messages({ filter: 'x' as never }), InvalidArgumentError)
    await assert.rejects(b.drain({ timeout: -1 }), InvalidArgumentError)
  } finally {
    await a.close()
    await b.close()
  }
})
