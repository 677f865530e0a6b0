// Messages as Node streams. Bob sends every line a Readable yields with
// `stream.pipeline(readable, mq.sink('alice'))`. Alice turns `mq.messages()`
// into a Readable with `Readable.from()` and pipes it into a slow Writable:
// backpressure holds end to end, from alice's Writable back to bob's Readable.
//
// Alice acknowledges a message only once her Writable has handled it
// (`ack: 'manual'`): a Readable reads ahead of its Writable, and with automatic
// acknowledgement a message still in the stream's buffer would count as received.
//
//   npx tsx examples/pipeline-node-streams.ts
//
// In an application, import from 'snakemq' instead of '../src/index.ts'.
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { Link, Messaging, type Message } from '../src/index.ts'

setTimeout(() => { console.error('timed out'); process.exit(1) }, 10_000).unref()

const COUNT = 20

const aliceLink = new Link()
const alice = new Messaging(aliceLink, { identity: 'alice' })
const listener = await aliceLink.listen({ host: '127.0.0.1', port: 0 })

const bobLink = new Link()
const bob = new Messaging(bobLink, { identity: 'bob', queueLimits: { messages: 4 } })
bobLink.connect({ host: '127.0.0.1', port: listener.port })

// Bob: a Readable of readings, as a file or a socket would give them.
let pulled = 0
let mostAhead = 0
const readings = Readable.from((function * () {
  for (let i = 1; i <= COUNT; i++) {
    pulled = i
    yield JSON.stringify({ sensor: 'boiler', reading: i, at: Date.now() })
  }
})())
const sending = pipeline(readings, bob.sink('alice', { ttl: 30 }))

// Alice: a Writable that takes 10 ms per message, far slower than the network.
let handled = 0
const slowStore = new Writable({
  objectMode: true,
  highWaterMark: 1,
  write (msg: Message, _encoding, done) {
    sleep(10).then(() => {
      const { reading } = JSON.parse(Buffer.from(msg.data).toString()) as { reading: number }
      handled++
      mostAhead = Math.max(mostAhead, pulled - handled)
      if (reading % 5 === 0) console.log(`alice stored reading ${reading} from ${msg.from}`)
      msg.ack() // now, and only now, it counts as received
      done()
    }, done)
  }
})

/** Ends the stream after `n` messages; `Readable.from()` then stops the messages() iteration. */
async function * first (source: AsyncIterable<Message>): AsyncGenerator<Message> {
  let n = 0
  for await (const msg of source) {
    yield msg
    if (++n === COUNT) return
  }
}

await pipeline(Readable.from(alice.messages({ ack: 'manual' })), first, slowStore)
await sending

console.log(`alice stored ${handled} readings; bob's source was never more than ${mostAhead} ahead of alice's Writable`)
await Promise.all([alice.close(), bob.close()])
