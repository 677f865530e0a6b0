// Messages as streams with it-pipe. Bob pipes lines of text through a transform
// into `mq.sink('alice')`, which sends each item and waits whenever alice's queue
// is full: the source is pulled no faster than the messages can go out. Alice
// pipes `mq.messages()` through transforms of her own and collects the result.
//
//   npx tsx examples/pipeline-it-pipe.ts
//
// In an application, import from 'snakemq' instead of '../src/index.ts'.
import { pipe } from 'it-pipe'
import { Link, Messaging, type Message } from '../src/index.ts'

setTimeout(() => { console.error('timed out'); process.exit(1) }, 10_000).unref()

const poem = [
  'the queue is bounded',
  'the sender waits for room',
  'the reader sets the pace',
  'no message is dropped',
  'the pipe runs dry',
  'and everybody goes home'
]

const aliceLink = new Link()
const alice = new Messaging(aliceLink, { identity: 'alice' })
const listener = await aliceLink.listen({ host: '127.0.0.1', port: 0 })

const bobLink = new Link()
// At most 2 messages wait in bob's queue for alice (sent ones count until acknowledged).
const bob = new Messaging(bobLink, { identity: 'bob', queueLimits: { messages: 2 } })
bobLink.connect({ host: '127.0.0.1', port: listener.port })

let mostQueued = 0

/** A transform: strings in, numbered strings out; it also notes how full bob's queue gets. */
async function * numbered (source: AsyncIterable<string> | Iterable<string>): AsyncGenerator<string> {
  let i = 0
  for await (const line of source) {
    mostQueued = Math.max(mostQueued, bob.queued('alice'))
    yield `${++i}. ${line}`
  }
}

/** A transform that ends the pipeline after `n` items (and so leaves `messages()`, which acknowledges). */
function take<T> (n: number) {
  return async function * (source: AsyncIterable<T>): AsyncGenerator<T> {
    if (n <= 0) return
    let i = 0
    for await (const item of source) {
      yield item
      if (++i === n) return
    }
  }
}

async function * asText (source: AsyncIterable<Message>): AsyncGenerator<string> {
  for await (const msg of source) yield `${msg.from}> ${Buffer.from(msg.data).toString()}`
}

// Both pipelines run at once: bob's finishes when the last line is queued,
// alice's once she has read as many lines as the poem has.
const sending = pipe(poem, numbered, bob.sink('alice', { ttl: 60 }))
const lines = await pipe(
  alice.messages(),
  take<Message>(poem.length),
  asText,
  async (source) => { const out: string[] = []; for await (const line of source) out.push(line); return out }
)
await sending

for (const line of lines) console.log(line)
console.log(`alice read ${lines.length} lines; bob's queue never held more than ${mostQueued} message(s)`)
await Promise.all([alice.close(), bob.close()])
