// A fault-injecting TCP proxy for tests: listens on 127.0.0.1, forwards each
// connection to a target port, and on demand (or on a timer) resets every
// connection it carries with a TCP RST. It can also hold each chunk back for a
// while and cut chunks into small pieces, so that packets arrive late and split
// at every possible offset.
import net from 'node:net'
import { EventEmitter, once } from 'node:events'

export interface FaultProxyOptions {
  /** The port to forward to. */
  target: number
  /** The host to forward to. Default 127.0.0.1. */
  targetHost?: string
  /** The port to listen on. Default 0 (any free one; read `port`). */
  port?: number
  /** Reset every connection every this many milliseconds. Default never. */
  resetEvery?: number
  /** Milliseconds each chunk is held before it is forwarded (order is kept). Default 0. */
  delay?: number
  /** Forward chunks in pieces of at most this many bytes, each in its own write. Default: whole chunks. */
  slice?: number
}

interface Pair { client: net.Socket, upstream: net.Socket }

/**
 * Events: `connection` (a client connected through the proxy), `reset` (the
 * number of connections just reset).
 */
export class FaultProxy extends EventEmitter {
  /** Connections accepted so far. */
  accepted = 0
  /** Resets that found at least one live connection. */
  resets = 0
  private readonly pairs = new Set<Pair>()
  private timer: NodeJS.Timeout | null = null

  private constructor (private readonly server: net.Server, readonly port: number, private readonly options: FaultProxyOptions) {
    super()
    if (options.resetEvery !== undefined) {
      this.timer = setInterval(() => { this.resetAll() }, options.resetEvery)
    }
  }

  static async start (options: FaultProxyOptions): Promise<FaultProxy> {
    const server = net.createServer({ noDelay: true })
    server.listen({ host: '127.0.0.1', port: options.port ?? 0 })
    await once(server, 'listening')
    const addr = server.address() as net.AddressInfo
    const proxy = new FaultProxy(server, addr.port, options)
    server.on('connection', (socket) => { proxy.accept(socket) })
    return proxy
  }

  /** Connections carried now. */
  get connections (): number { return this.pairs.size }

  /** Resets every connection (both of its sockets) with a TCP RST; returns how many there were. */
  resetAll (): number {
    const n = this.pairs.size
    for (const p of this.pairs) {
      reset(p.client)
      reset(p.upstream)
    }
    this.pairs.clear()
    if (n > 0) this.resets++
    this.emit('reset', n)
    return n
  }

  /**
   * Stops forwarding what the target sends on the connections carried now (in
   * whole-chunk mode, without delay or slice): it waits in the proxy, and is lost
   * with the next reset.
   */
  holdFromTarget (): void {
    for (const p of this.pairs) {
      p.upstream.unpipe(p.client)
      p.upstream.pause()
    }
  }

  /** Stops the timer, resets every connection and stops listening. */
  async close (): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.resetAll()
    await new Promise<void>((resolve) => { this.server.close(() => { resolve() }) })
  }

  private accept (client: net.Socket): void {
    this.accepted++
    const upstream = net.connect({ host: this.options.targetHost ?? '127.0.0.1', port: this.options.target, noDelay: true })
    const pair: Pair = { client, upstream }
    this.pairs.add(pair)
    const drop = (): void => {
      this.pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    for (const s of [client, upstream]) {
      s.on('error', drop)
      s.on('close', drop)
    }
    this.forward(client, upstream)
    this.forward(upstream, client)
    this.emit('connection')
  }

  private forward (from: net.Socket, to: net.Socket): void {
    const { delay = 0, slice } = this.options
    if (delay <= 0 && slice === undefined) {
      from.pipe(to)
      return
    }
    const queue: Array<{ at: number, chunk: Buffer }> = []
    let timer: NodeJS.Timeout | null = null
    const pump = (): void => {
      timer = null
      const now = Date.now()
      while (queue.length > 0 && queue[0]!.at <= now) {
        if (to.destroyed) { queue.length = 0; return }
        to.write(queue.shift()!.chunk)
        // Pieces of a sliced chunk go out in separate turns, so they leave as separate segments.
        if (slice !== undefined) break
      }
      if (queue.length > 0) timer = setTimeout(pump, Math.max(0, queue[0]!.at - Date.now()))
    }
    from.on('data', (chunk: Buffer) => {
      const at = Date.now() + delay
      if (slice === undefined) {
        queue.push({ at, chunk })
      } else {
        for (let i = 0; i < chunk.length; i += slice) queue.push({ at, chunk: chunk.subarray(i, i + slice) })
      }
      if (timer === null) timer = setTimeout(pump, delay)
    })
    from.on('close', () => { if (timer !== null) clearTimeout(timer) })
  }
}

function reset (s: net.Socket): void {
  if (s.destroyed) return
  // resetAndDestroy sends an RST; it needs a connected TCP handle.
  if (s.readyState === 'open' || s.readyState === 'readOnly' || s.readyState === 'writeOnly') s.resetAndDestroy()
  else s.destroy()
}
