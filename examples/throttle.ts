// Bandwidth throttling: each connection of a link can be held to a number of
// bytes per second. snakeMQ put a Throttle object between the link and the
// packeter; here it is the link's `throttle` option (or a listener's or
// connector's own). Bob's link sends at most 16 KiB/s on each connection; he
// sends alice 32 KiB and we time it.
//
//   npx tsx examples/throttle.ts
//
// In an application, import from 'snakemq' instead of '../src/index.ts'.
import { Link, Messaging } from '../src/index.ts'

setTimeout(() => { console.error('timed out'); process.exit(1) }, 15_000).unref()

const RATE = 16 * 1024 // bytes per second, outgoing, per connection
const MESSAGES = 8
const SIZE = 4 * 1024

const aliceLink = new Link()
const alice = new Messaging(aliceLink, { identity: 'alice' })
const listener = await aliceLink.listen({ host: '127.0.0.1', port: 0 })

// A number limits outgoing bytes; `{ outgoing, incoming }` limits either side.
// A connector or listener may have its own: `connect({ port, throttle: 4096 })`.
const bobLink = new Link({ throttle: RATE })
const bob = new Messaging(bobLink, { identity: 'bob' })
bobLink.connect({ host: '127.0.0.1', port: listener.port })
await new Promise<void>((resolve) => bob.once('connect', () => { resolve() }))

const receiving = (async () => {
  let bytes = 0
  let n = 0
  for await (const msg of alice.messages()) {
    bytes += msg.data.byteLength
    if (++n === MESSAGES) return bytes
  }
  return bytes
})()

const started = performance.now()
const sends: Array<Promise<unknown>> = []
for (let i = 0; i < MESSAGES; i++) sends.push(bob.send('alice', Buffer.alloc(SIZE, i), { wait: 'delivered' }))
const bytes = await receiving
await Promise.all(sends)
const seconds = (performance.now() - started) / 1000

console.log(`bob sent ${bytes} bytes to alice through a ${RATE / 1024} KiB/s throttle`)
console.log(`took ${seconds.toFixed(2)} s, about ${(bytes / 1024 / seconds).toFixed(1)} KiB/s`)
await Promise.all([alice.close(), bob.close()])
