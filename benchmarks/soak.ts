// Soak test (not part of CI): two Messaging peers in one process exchange
// numbered messages both ways for a while, through a loopback proxy that resets
// their connection every so often (usually in the middle of a frame), so they go
// through hundreds of reconnect cycles under traffic. Every few seconds it
// prints RSS and heap (after a GC) with the counts so far; at the end it drains
// the queues and reports sent / received / lost / duplicated. Memory should stay
// flat and lost and duplicated should be 0.
//
//   npx tsx benchmarks/soak.ts [--duration 60] [--cycle 500] [--size 64] [--every 5]
//
//   --duration  seconds of traffic (default 60)
//   --cycle     mean milliseconds between connection resets (default 500)
//   --size      mean payload bytes (default 64)
//   --every     seconds between report lines (default 5)
//   --seed      seed of the proxy's randomness (default: the clock)
//
// Exit code 0 when nothing was lost or duplicated, 1 otherwise, 2 if it had to
// give up waiting for the queues to drain. It always ends by itself.
import v8 from 'node:v8'
import vm from 'node:vm'
import { parseArgs } from 'node:util'
import { Link, Messaging } from '../src/index.ts'
import { FaultyProxy } from '../test/helpers/faulty-proxy.ts'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '60' },
    cycle: { type: 'string', default: '500' },
    size: { type: 'string', default: '64' },
    every: { type: 'string', default: '5' },
    seed: { type: 'string' }
  }
})
const durationMs = Number(values.duration) * 1000
const cycleMs = Number(values.cycle)
const meanSize = Number(values.size)
const everyMs = Number(values.every) * 1000
for (const [name, v] of [['duration', durationMs], ['cycle', cycleMs], ['size', meanSize], ['every', everyMs]] as const) {
  if (!(v > 0)) { console.error(`--${name} must be a positive number`); process.exit(64) }
}

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Message i of a stream: its number, then a filling that depends on it. */
function numbered (i: number): Buffer {
  const b = Buffer.alloc(4 + (i * 7919) % (2 * meanSize), i & 0xff)
  b.writeUInt32BE(i, 0)
  return b
}

/** One direction of traffic: what was sent, and what the receiving application saw. */
class Stream {
  sent = 0
  received = 0
  duplicated = 0
  /** Messages skipped over (a later one arrived first): lost, unless they turn up later. */
  gaps = 0
  corrupted = 0
  private next = 0

  constructor (readonly name: string) {}

  receive (data: Uint8Array): void {
    const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    const i = b.readUInt32BE(0)
    if (b.length !== numbered(i).length || b.subarray(4).some((x) => x !== (i & 0xff))) this.corrupted++
    if (i < this.next) { this.duplicated++; return }
    if (i > this.next) this.gaps += i - this.next
    this.next = i + 1
    this.received++
  }

  get lost (): number { return this.sent - this.received }
}

async function main (): Promise<number> {
  const linkA = new Link()
  const listener = await linkA.listen({ port: 0 })
  const proxy = await FaultyProxy.start(listener.port, values.seed !== undefined ? Number(values.seed) : undefined)
  const options = { queueLimits: { messages: 10_000 }, keepalive: { interval: 1000, wait: 2000 } }
  const alice = new Messaging(linkA, { identity: 'alice', ...options })
  const linkB = new Link()
  const bob = new Messaging(linkB, { identity: 'bob', ...options })
  linkB.connect({ port: proxy.port, reconnect: { minDelay: 20, maxDelay: 500 } })
  let errors = 0
  alice.on('error', () => { errors++ })
  bob.on('error', () => { errors++ })

  const toAlice = new Stream('bob -> alice')
  const toBob = new Stream('alice -> bob')
  const consumers = [
    (async () => { for await (const m of alice.messages()) toAlice.receive(m.data) })(),
    (async () => { for await (const m of bob.messages()) toBob.receive(m.data) })()
  ]

  let sending = true
  const send = async (from: Messaging, to: string, stream: Stream): Promise<void> => {
    while (sending) {
      await from.send(to, numbered(stream.sent))
      stream.sent++
      // Yield now and then so the rest of the process (resets, reports) gets turns.
      if (stream.sent % 256 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const senders = [send(bob, 'alice', toAlice), send(alice, 'bob', toBob)]

  const resets = (async () => {
    while (sending) {
      await sleep(cycleMs / 2 + proxy.random() * cycleMs)
      // Reset after a few more bytes: usually in the middle of a frame.
      proxy.resetAfter(1 + Math.floor(proxy.random() * 4096))
    }
  })()

  const started = Date.now()
  const header = 'time_s  rss_mb  heap_mb  connections  sent(b->a, a->b)  received  dup  gaps  queued  errors'
  console.log(header)
  const report = (): void => {
    gc()
    const mem = process.memoryUsage()
    console.log([
      ((Date.now() - started) / 1000).toFixed(0).padStart(6),
      (mem.rss / 2 ** 20).toFixed(1).padStart(6),
      (mem.heapUsed / 2 ** 20).toFixed(1).padStart(7),
      String(proxy.accepted).padStart(11),
      `${toAlice.sent}, ${toBob.sent}`.padStart(17),
      `${toAlice.received}, ${toBob.received}`.padStart(9),
      String(toAlice.duplicated + toBob.duplicated).padStart(4),
      String(toAlice.gaps + toBob.gaps).padStart(5),
      String(alice.queued() + bob.queued()).padStart(7),
      String(errors).padStart(7)
    ].join('  '))
  }
  const reporter = setInterval(report, everyMs)

  await sleep(durationMs)
  sending = false
  await Promise.all([...senders, resets])
  clearInterval(reporter)
  report()

  // Drain: no more faults; everything queued must arrive.
  const deadline = Date.now() + 30_000
  while ((alice.queued() > 0 || bob.queued() > 0 || toAlice.received < toAlice.sent || toBob.received < toBob.sent) && Date.now() < deadline) await sleep(50)
  const drained = alice.queued() === 0 && bob.queued() === 0
  report()

  await bob.close()
  await alice.close()
  await proxy.close()
  await Promise.all(consumers)

  console.log()
  for (const s of [toAlice, toBob]) {
    console.log(`${s.name}: sent ${s.sent}, received ${s.received}, lost ${s.lost}, duplicated ${s.duplicated}, out of order ${s.gaps}, corrupted ${s.corrupted}`)
  }
  console.log(`${proxy.resets} resets, ${proxy.accepted} connections, ${errors} connection errors, in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  if (!drained) { console.log('the queues did not drain within 30 s'); return 2 }
  const bad = [toAlice, toBob].some((s) => s.lost !== 0 || s.duplicated !== 0 || s.gaps !== 0 || s.corrupted !== 0)
  return bad ? 1 : 0
}

// However main() ends, the process does: a hard deadline as a last resort.
const hardStop = setTimeout(() => { console.error('soak: did not finish in time, giving up'); process.exit(3) }, durationMs + 120_000)
hardStop.unref()
main().then((code) => { process.exit(code) }, (err: unknown) => { console.error(err); process.exit(1) })
