// The programs benchmarks/scale.ts runs (issue 20), each in a child process of
// its own (harness/proc.ts): a deep persistent queue filled for an absent peer
// and drained by a restarted sender, and many peers fanning in to one.
// Receivers keep one byte per expected message, so exactly-once is checked for
// millions of messages without a Set of that size.
import { counterOf, num, payload, str, wallNow, aborted } from './readme/common.ts'
import type { ProcRole } from '../harness/proc-child.ts'

const HOST = '127.0.0.1'
const lib = async (): Promise<typeof import('../../src/index.ts')> => await import('../../src/index.ts')

/** Counts each counter in 0..count-1 once; remembers duplicates, strays and order. */
class Tally {
  readonly seen: Uint8Array
  distinct = 0
  duplicates = 0
  strays = 0
  firstAt = 0
  lastAt = 0
  /** process.cpuUsage() at the first message, and its difference at the last (user + system, us). */
  private cpuAtFirst: NodeJS.CpuUsage | null = null
  cpuUs = 0
  constructor (readonly count: number) { this.seen = new Uint8Array(count) }

  /** True once every counter has arrived. */
  add (data: Uint8Array): boolean {
    if (this.firstAt === 0) { this.firstAt = wallNow(); this.cpuAtFirst = process.cpuUsage() }
    const c = counterOf(data)
    if (!(c < this.count)) this.strays++
    else if (this.seen[c] === 1) this.duplicates++
    else { this.seen[c] = 1; this.distinct++ }
    if (this.distinct === this.count) {
      this.lastAt = wallNow()
      const cpu = process.cpuUsage(this.cpuAtFirst ?? undefined)
      this.cpuUs = cpu.user + cpu.system
      return true
    }
    return false
  }

  report (): Record<string, unknown> {
    return { firstAt: this.firstAt, lastAt: this.lastAt, cpuUs: this.cpuUs, distinct: this.distinct, missing: this.count - this.distinct, duplicates: this.duplicates, strays: this.strays }
  }
}

/**
 * Samples RSS and the JavaScript heap (V8's heapTotal) every 50 ms; `peak()` is
 * the highest RSS seen (and stops sampling), `peakHeap()` the highest heap.
 */
function rssSampler (): { peak(): number, peakHeap(): number } {
  let peak = 0
  let heap = 0
  const sample = (): void => {
    const m = process.memoryUsage()
    peak = Math.max(peak, m.rss)
    heap = Math.max(heap, m.heapTotal)
  }
  sample()
  const t = setInterval(sample, 50)
  return {
    peak () { clearInterval(t); sample(); return peak },
    peakHeap () { return heap }
  }
}

export const roles: Record<string, ProcRole> = {
  /** depth, first process: `count` persistent messages for bob, who is not there; then close and exit. */
  async fill (args) {
    const { Link, Messaging, LevelStore } = await lib()
    const count = num(args, 'count')
    const size = num(args, 'size')
    const inFlight = num(args, 'inFlight')
    const store = await LevelStore.open(str(args, 'dir'))
    const mq = new Messaging(new Link(), { identity: 'alice', store })
    await mq.ready()
    const t0 = wallNow()
    for (let i = 0; i < count; i += inFlight) {
      const sends: Array<Promise<unknown>> = []
      for (let j = i; j < Math.min(count, i + inFlight); j++) sends.push(mq.send('bob', payload(j, size), { ttl: 3600, persistent: true }))
      await Promise.all(sends)
    }
    const s = (wallNow() - t0) / 1000
    const queued = mq.queued('bob')
    const rss = process.memoryUsage.rss()
    await mq.close()
    return { sends_per_s: count / s, queued, rss_mb_after_fill: rss / 1e6 }
  },

  /** The receiver of both: listens, tallies, leaves its loop after the last message. */
  async receiver (args, io) {
    const { Link, Messaging } = await lib()
    const tally = new Tally(num(args, 'count'))
    const link = new Link()
    const room = typeof args.peers === 'number' ? args.peers + 64 : undefined
    // Every sender of the fan-in connects from 127.0.0.1: the per-address bound
    // (128 by default) and maxConnections (1,024) are raised above the peer count.
    const listener = await link.listen(room === undefined ? { host: HOST, port: 0 } : { host: HOST, port: 0, maxConnections: room, maxConnectionsPerAddress: room })
    const mq = new Messaging(link, { identity: 'bob' })
    io.ready({ port: listener.port })
    const sampler = rssSampler()
    for await (const m of mq.messages()) {
      if (tally.add(m.data)) break
    }
    const r = { ...tally.report(), rss_mb_peak_receiver: sampler.peak() / 1e6 }
    void aborted(io.stop).then(() => mq.close())
    return r
  },

  /** depth, second process: the same store, bob already waiting. (impl/scale-restart.mjs is the same program in JavaScript, for --compiled.) */
  async restart (args) {
    const { Link, Messaging, LevelStore } = await lib()
    const importedAt = wallNow()
    const store = await LevelStore.open(str(args, 'dir'))
    const openedAt = wallNow()
    const link = new Link()
    link.connect({ host: HOST, port: num(args, 'port') })
    const mq = new Messaging(link, { identity: 'alice', store })
    await mq.ready()
    const readyAt = wallNow()
    const rssAfterReady = process.memoryUsage.rss()
    const queuedAtReady = mq.queued('bob')
    const sampler = rssSampler()
    const { drained, left } = await mq.drain()
    return {
      startAt: performance.timeOrigin, importedAt, openedAt, readyAt, queuedAtReady, drained, left,
      rss_mb_after_ready: rssAfterReady / 1e6,
      rss_mb_peak_drain: sampler.peak() / 1e6,
      heap_mb_peak_drain: sampler.peakHeap() / 1e6
    }
  },

  /**
   * fan-in: peers `from`..`to`-1, each its own Link and Messaging, connect to
   * bob; on `go` each sends `per` messages with an awaited send, all peers at once.
   */
  async senders (args, io) {
    const { Link, Messaging } = await lib()
    const from = num(args, 'from')
    const to = num(args, 'to')
    const per = num(args, 'per')
    const size = num(args, 'size')
    const port = num(args, 'port')
    const t0 = wallNow()
    const peers = []
    for (let k = from; k < to; k++) {
      const link = new Link()
      link.connect({ host: HOST, port })
      peers.push({ k, mq: new Messaging(link, { identity: `peer${k}` }) })
    }
    await Promise.all(peers.map(({ mq }) => mq.whenConnected('bob')))
    const connectMs = wallNow() - t0
    io.ready({ connectMs })
    await io.signal('go')
    const firstAt = wallNow()
    const cpuAtGo = process.cpuUsage()
    await Promise.all(peers.map(async ({ k, mq }) => {
      for (let s = 0; s < per; s++) await mq.send('bob', payload(k * per + s, size), { ttl: 600 })
    }))
    const sentAt = wallNow()
    await Promise.all(peers.map(({ mq }) => mq.drain()))
    const cpu = process.cpuUsage(cpuAtGo)
    return { firstAt, sentAt, connectMs, cpuUs: cpu.user + cpu.system }
  }
}
