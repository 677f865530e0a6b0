// messages({ batch }): the same consumer as messages(), iterated as arrays of the
// messages that arrived together.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AlreadyIteratingError, InvalidArgumentError, type Message } from '../src/index.ts'
import { pair, payload, take } from './helpers/util.ts'

const counter = (m: Message): number => Buffer.from(m.data).readUInt32BE(0)

test('messages({ batch }) hands over what arrived together, in order, at most `batch` at a time, each message once', async () => {
  const { a, b } = await pair()
  try {
    const n = 5000
    const sizes: number[] = []
    const got: number[] = []
    const reading = (async () => {
      for await (const batch of a.messages({ batch: 256 })) {
        sizes.push(batch.length)
        for (const m of batch) got.push(counter(m))
        if (got.length === n) break
      }
    })()
    for (let i = 0; i < n; i++) await b.send('alice', payload(i))
    await reading
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i))
    assert.ok(sizes.every((s) => s >= 1 && s <= 256), `batch sizes within 1..256: ${sizes.join(',')}`)
    assert.ok(sizes.length < n / 4, `messages came in batches (${sizes.length} batches for ${n} messages)`)
    // Leaving the loop acknowledged the last batch too: nothing stays queued at the sender.
    await b.drain()
    assert.equal(b.queued('alice'), 0)
  } finally {
    await a.close()
    await b.close()
  }
})

test('with auto acknowledgement a batch counts as received when the next one is asked for, not before', async () => {
  const { a, b } = await pair()
  try {
    const it = a.messages({ batch: true })
    let delivered = false
    const first = b.send('alice', 'one', { wait: 'delivered' }).then(() => { delivered = true })
    const r1 = await it.next()
    assert.deepEqual((r1.value as Message[]).map((m) => Buffer.from(m.data).toString()), ['one'])
    // Held by the loop: the sender has no acknowledgement for it yet.
    assert.equal(b.queued('alice'), 1)
    assert.equal(delivered, false)
    const r2 = it.next()
    await first
    assert.equal(b.queued('alice'), 0)
    await b.send('alice', 'two')
    assert.deepEqual(((await r2).value as Message[]).map((m) => Buffer.from(m.data).toString()), ['two'])
    await it.return!()
  } finally {
    await a.close()
    await b.close()
  }
})

test('with manual acks the messages of a batch left unacknowledged go to the next consumer', async () => {
  const { a, b } = await pair()
  try {
    await b.send('alice', payload(0))
    await b.send('alice', payload(1))
    await b.send('alice', payload(2))
    const taken: Message[] = []
    for await (const batch of a.messages({ batch: true, ack: 'manual' })) {
      taken.push(...batch)
      if (taken.length < 3) continue
      // Only the first is acknowledged before the loop is left.
      taken[0]!.ack()
      break
    }
    const rest = await take(a, 2)
    assert.deepEqual(rest.map(counter), [1, 2])
    await b.drain()
  } finally {
    await a.close()
    await b.close()
  }
})

test('messages({ batch }) refuses a bad batch size, a second next() while one waits, and ends when the Messaging closes', async () => {
  const { a, b } = await pair()
  try {
    for (const bad of [0, -1, 1.5, Number.NaN, 'x']) {
      assert.throws(() => a.messages({ batch: bad as number }), InvalidArgumentError)
    }
    const it = a.messages({ batch: 8 })
    const waiting = it.next()
    await assert.rejects(it.next(), AlreadyIteratingError)
    await a.close()
    assert.deepEqual(await waiting, { value: undefined, done: true })
  } finally {
    await a.close()
    await b.close()
  }
})
