// The tutorial's three messaging peers, bob, alice and jack, in one process.
// Bob listens and dials jack, jack listens and dials bob, alice dials both: every
// peer ends up connected to every other. Bob sends alice "hello" with a TTL of
// 600 s; alice answers bob and greets jack; jack greets bob. Each peer prints
// what it receives, and the program ends once everyone has had their mail.
//
//   npx tsx examples/simple-peers.ts
//
// In an application, import from 'snakemq' instead of '../src/index.ts'.
import { DuplicateIdentityError, Link, Messaging } from '../src/index.ts'

/** One peer: a link (its listeners and connectors) and the messaging on top. */
function peer (identity: string): { link: Link, mq: Messaging } {
  const link = new Link()
  const mq = new Messaging(link, { identity })
  mq.on('connect', ({ ident, connection }) => {
    console.log(`${identity} is connected to ${ident} (${connection.direction})`)
  })
  // Bob and jack each dial the other, as in the tutorial. One connection between
  // two peers is all they need: both keep the same one and close the other,
  // quietly. (A plain snakeMQ peer refuses the second one with an error instead.)
  mq.on('error', ({ error }) => {
    if (error instanceof DuplicateIdentityError) return
    console.error(`${identity}: ${error.message}`)
  })
  return { link, mq }
}

/** Prints every message `mq` receives until it has had `count` of them. */
async function receive (mq: Messaging, count: number): Promise<void> {
  let got = 0
  for await (const msg of mq.messages()) {
    const ttl = msg.ttl === null ? 'no TTL' : `TTL ${msg.ttl} s`
    console.log(`${mq.identity} got ${JSON.stringify(Buffer.from(msg.data).toString())} from ${msg.from} (${ttl})`)
    if (msg.from === 'bob' && mq.identity === 'alice') {
      // Answer whoever wrote; the reply is queued and goes out on the same connection.
      await mq.send(msg.from, 'hello to you too, bob')
    }
    if (++got === count) return
  }
}

// A guard for a broken network: an example must never hang.
setTimeout(() => { console.error('timed out'); process.exit(1) }, 10_000).unref()

const bob = peer('bob')
const alice = peer('alice')
const jack = peer('jack')

// Port 0 picks a free port; the tutorial's 4000 and 4001 would do as well.
const bobListener = await bob.link.listen({ host: '127.0.0.1', port: 0 })
const jackListener = await jack.link.listen({ host: '127.0.0.1', port: 0 })
bob.link.connect({ host: '127.0.0.1', port: jackListener.port })
alice.link.connect({ host: '127.0.0.1', port: bobListener.port })
alice.link.connect({ host: '127.0.0.1', port: jackListener.port })
jack.link.connect({ host: '127.0.0.1', port: bobListener.port })

// Sending does not wait for a connection: the message waits in bob's queue for
// alice and goes out as soon as she is connected. If she is not within 600
// seconds of disconnected time, the message is dropped.
await bob.mq.send('alice', 'hello', { ttl: 600 })
await alice.mq.send('jack', 'hi jack, alice here')
await jack.mq.send('bob', 'hey bob, jack here')

await Promise.all([
  receive(bob.mq, 2), // jack's greeting and alice's answer
  receive(alice.mq, 1),
  receive(jack.mq, 1)
])

// Closing a Messaging closes its link too: listeners, connectors, connections.
await Promise.all([bob.mq.close(), alice.mq.close(), jack.mq.close()])
console.log('all three peers got their messages')
