// A loopback TCP proxy for fault-injection tests. It forwards bytes between the
// clients that connect to it and a target port, and on command breaks the
// stream the ways networks do: resets a connection part-way through a frame,
// slices the byte stream at random points, delays or stalls it, or stops
// forwarding without closing anything (a half-open connection, as after a pulled
// cable or a NAT entry that timed out). Randomness comes from a seeded generator
// so that a failing run can be repeated.
import net from 'node:net'
import { once } from 'node:events'

/** A small seeded PRNG (mulberry32): the same seed, the same faults. */
export function seededRandom (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6D2B79F5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface FaultSettings {
  /** Cut every chunk at random points and write the pieces one event-loop turn apart. */
  slice: boolean
  /** Hold every chunk for a random 0..maxDelay ms before forwarding it (order is kept). */
  maxDelay: number
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Above this many buffered bytes the proxy stops reading a side, so it never holds much itself. */
const HIGH_WATER = 256 * 1024

/** One proxied connection: a client socket, its upstream socket, and their faults. */
class ProxiedConnection {
  alive = true
  /** Forward nothing more, discard what arrives, pass on no close. */
  blackholed = false
  /** Bytes (both directions together) still to forward before the connection is reset; null: no reset armed. */
  resetBudget: number | null = null
  stalledUntil = 0
  private readonly closedPromise: Promise<void>

  constructor (readonly proxy: FaultyProxy, readonly client: net.Socket, readonly upstream: net.Socket) {
    let pending = 2
    this.closedPromise = new Promise((resolve) => {
      const onClose = (): void => { if (--pending === 0) resolve() }
      client.once('close', onClose)
      upstream.once('close', onClose)
    })
    client.on('error', () => {})
    upstream.on('error', () => {})
    new Direction(this, client, upstream).start()
    new Direction(this, upstream, client).start()
    // A side that closes closes the other, unless the connection is half-open:
    // then the other side is left hanging, as it would be on a real network.
    const onEnd = (): void => {
      if (this.blackholed) return
      this.destroy()
    }
    client.once('close', onEnd)
    upstream.once('close', onEnd)
  }

  get closed (): Promise<void> { return this.closedPromise }

  /** Resets both sides now: RST or FIN, at random. */
  reset (): void {
    if (!this.alive) return
    this.alive = false
    this.proxy.resets++
    const rst = this.proxy.random() < 0.5
    for (const s of [this.client, this.upstream]) {
      try {
        if (rst && !s.destroyed && s.readyState === 'open') s.resetAndDestroy()
        else s.destroy()
      } catch {
        s.destroy()
      }
    }
  }

  destroy (): void {
    this.alive = false
    this.client.destroy()
    this.upstream.destroy()
  }
}

/** Bytes from one socket to the other, through the faults. */
class Direction {
  private queue: Buffer[] = []
  private queued = 0
  private running = false

  constructor (private readonly conn: ProxiedConnection, private readonly from: net.Socket, private readonly to: net.Socket) {}

  start (): void {
    this.from.on('data', (d: Buffer) => {
      if (this.conn.blackholed || !this.conn.alive) return
      this.queue.push(d)
      this.queued += d.length
      if (this.queued > HIGH_WATER) this.from.pause()
      void this.run()
    })
  }

  private async run (): Promise<void> {
    if (this.running) return
    this.running = true
    const conn = this.conn
    const proxy = conn.proxy
    try {
      while (this.queue.length > 0 && conn.alive) {
        while (conn.stalledUntil > Date.now() && conn.alive) await sleep(conn.stalledUntil - Date.now())
        const { slice, maxDelay } = proxy.settings
        if (maxDelay > 0) await sleep(Math.floor(proxy.random() * maxDelay))
        if (conn.blackholed || !conn.alive) { this.queue = []; this.queued = 0; return }
        const chunk = this.queue.shift()!
        this.queued -= chunk.length
        if (this.queued < HIGH_WATER / 2 && this.from.isPaused()) this.from.resume()
        for (const piece of slice ? this.cut(chunk) : [chunk]) {
          const budget = conn.resetBudget
          if (budget !== null && piece.length >= budget) {
            // Part of the piece goes through, then the connection dies: usually in the middle of a frame.
            if (budget > 0) await this.write(piece.subarray(0, budget))
            await sleep(5)
            conn.reset()
            return
          }
          if (budget !== null) conn.resetBudget = budget - piece.length
          await this.write(piece)
          if (slice) {
            proxy.slices++
            await new Promise((resolve) => setImmediate(resolve))
          }
          if (conn.blackholed || !conn.alive) { this.queue = []; this.queued = 0; return }
        }
      }
    } finally {
      this.running = false
    }
  }

  private cut (chunk: Buffer): Buffer[] {
    const rnd = this.conn.proxy.random
    const n = Math.floor(rnd() * 4)
    const at = Array.from({ length: n }, () => Math.floor(rnd() * chunk.length)).sort((a, b) => a - b)
    const out: Buffer[] = []
    let prev = 0
    for (const p of at) { if (p > prev) out.push(chunk.subarray(prev, p)); prev = Math.max(prev, p) }
    if (prev < chunk.length) out.push(chunk.subarray(prev))
    return out
  }

  /** Writes and waits until the bytes are handed to the kernel (or the socket is gone). */
  private async write (b: Buffer): Promise<void> {
    if (this.to.destroyed) return
    await new Promise<void>((resolve) => {
      this.to.write(b, () => { resolve() })
    })
  }
}

export class FaultyProxy {
  /** Connections accepted so far. */
  accepted = 0
  /** Connections reset by `resetAfter` / `resetAll`. */
  resets = 0
  /** Pieces written while slicing. */
  slices = 0
  settings: FaultSettings = { slice: false, maxDelay: 0 }
  readonly random: () => number
  private readonly conns = new Set<ProxiedConnection>()

  private constructor (private readonly server: net.Server, readonly port: number, readonly targetPort: number, readonly seed: number) {
    this.random = seededRandom(seed)
  }

  /** Starts a proxy on 127.0.0.1 (a free port) forwarding to `targetPort`. */
  static async start (targetPort: number, seed = Date.now() & 0xFFFFFFFF): Promise<FaultyProxy> {
    const server = net.createServer()
    server.listen({ host: '127.0.0.1', port: 0 })
    await once(server, 'listening')
    const proxy = new FaultyProxy(server, (server.address() as net.AddressInfo).port, targetPort, seed)
    server.on('connection', (client) => { proxy.accept(client) })
    return proxy
  }

  private accept (client: net.Socket): void {
    this.accepted++
    client.setNoDelay(true)
    const upstream = net.connect({ host: '127.0.0.1', port: this.targetPort })
    upstream.setNoDelay(true)
    const conn = new ProxiedConnection(this, client, upstream)
    this.conns.add(conn)
    void conn.closed.then(() => { this.conns.delete(conn) })
  }

  /** Proxied connections whose sockets are not both closed yet (half-open ones included). */
  get open (): number { return this.conns.size }

  /** Arms every live connection to reset after `bytes` more bytes pass through it (either way). */
  resetAfter (bytes: number): void {
    for (const c of this.conns) if (c.alive && !c.blackholed && c.resetBudget === null) c.resetBudget = bytes
  }

  /** Resets every live connection now. */
  resetAll (): void {
    for (const c of this.conns) c.reset()
  }

  /** Stops forwarding on every live connection for `ms`, buffering what arrives (a stall, not a loss). */
  stall (ms: number): void {
    const until = Date.now() + ms
    for (const c of this.conns) c.stalledUntil = Math.max(c.stalledUntil, until)
  }

  /**
   * Makes every live connection half-open: from now on nothing is forwarded and
   * nothing is closed on the other side, whatever either end does. Only the ends'
   * own timeouts (keepalive) can notice. New connections are not affected.
   */
  halfOpen (): number {
    let n = 0
    for (const c of this.conns) if (c.alive && !c.blackholed) { c.blackholed = true; n++ }
    return n
  }

  /** Stops listening and destroys every connection. */
  async close (): Promise<void> {
    this.server.close()
    for (const c of this.conns) c.destroy()
    await Promise.all([...this.conns].map(async (c) => { await c.closed }))
    if (this.server.listening) await once(this.server, 'close')
  }
}
