// Helpers shared by the tests: waiting for events with a deadline, raw loopback
// sockets that speak bytes, pairs of connected Messaging peers, a check of the
// packet decoder over every chunking, and a logger to wait on.
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import type { EventEmitter } from 'node:events'
import { Link, Messaging, PacketDecoder, encodePacketBatch, type LinkOptions, type Message, type MessagesOptions, type MessagingOptions, type MessagingEvents } from '../../src/index.ts'
import type { Logger } from '../../src/logging.ts'

/** Resolves with the first emission of `event` that passes `filter`; rejects after `ms`. */
export async function waitFor<T = unknown> (emitter: EventEmitter, event: string, filter: (v: T) => boolean = () => true, ms = 10_000): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { emitter.off(event, on); reject(new Error(`timed out waiting for ${event}`)) }, ms)
    const on = (v: T): void => {
      if (!filter(v)) return
      clearTimeout(timer)
      emitter.off(event, on)
      resolve(v)
    }
    emitter.on(event, on)
  })
}

/** Waits for a peer's connect event for `ident` (or resolves at once if connected). */
export async function connected (mq: Messaging, ident: string, ms = 10_000): Promise<void> {
  if (mq.isConnected(ident)) return
  await waitFor<MessagingEvents['connect'][0]>(mq, 'connect', (e) => e.ident === ident, ms)
}

/** Two Messaging peers over loopback: `a` listens, `b` connects. */
export async function pair (a: Partial<MessagingOptions> = {}, b: Partial<MessagingOptions> = {}, reconnect = { minDelay: 20, maxDelay: 200 }, links: LinkOptions = {}): Promise<{ a: Messaging, b: Messaging, port: number, linkA: Link, linkB: Link }> {
  const linkA = new Link(links)
  const listener = await linkA.listen({ port: 0 })
  const ma = new Messaging(linkA, { identity: 'alice', ...a })
  const linkB = new Link(links)
  const mb = new Messaging(linkB, { identity: 'bob', ...b })
  linkB.connect({ port: listener.port, reconnect })
  await Promise.all([connected(ma, mb.identity), connected(mb, ma.identity)])
  return { a: ma, b: mb, port: listener.port, linkA, linkB }
}

/** A raw TCP client that collects everything it receives. */
export class RawPeer {
  readonly socket: net.Socket
  received = Buffer.alloc(0)
  closed: Promise<void>
  private waiters: Array<() => void> = []

  private constructor (socket: net.Socket) {
    this.socket = socket
    socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d])
      for (const w of this.waiters) w()
    })
    socket.on('error', () => {})
    this.closed = new Promise((resolve) => socket.once('close', () => {
      for (const w of this.waiters) w()
      resolve()
    }))
  }

  static async connect (port: number): Promise<RawPeer> {
    const socket = net.connect({ host: '127.0.0.1', port })
    await once(socket, 'connect')
    return new RawPeer(socket)
  }

  /** Wraps a socket accepted by a server. */
  static from (socket: net.Socket): RawPeer { return new RawPeer(socket) }

  write (hex: string | Buffer): void { this.socket.write(typeof hex === 'string' ? Buffer.from(hex, 'hex') : hex) }

  /** Resolves once at least `n` bytes arrived (or the socket closed). */
  async bytes (n: number, ms = 10_000): Promise<Buffer> {
    const deadline = Date.now() + ms
    while (this.received.length < n && !this.socket.destroyed) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes, have ${this.received.length}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()))
        this.waiters.push(() => { clearTimeout(t); resolve() })
      })
      this.waiters = []
    }
    return this.received
  }

  destroy (): void { this.socket.destroy() }
}

/** Splits bytes into length-prefixed packets (test-side reference parser). */
export function packets (buf: Buffer): Buffer[] {
  const out: Buffer[] = []
  let off = 0
  while (off + 4 <= buf.length) {
    const len = buf.readUInt32BE(off)
    if (off + 4 + len > buf.length) break
    out.push(buf.subarray(off + 4, off + 4 + len))
    off += 4 + len
  }
  return out
}

/** A fresh 16-byte payload per index, so tests can check order and content. */
export function payload (i: number, size = 16): Buffer {
  const b = Buffer.alloc(size)
  b.writeUInt32BE(i, 0)
  return b
}

/** Takes `n` messages from a new consumer of `mq`, then leaves its loop. */
export async function take (mq: Messaging, n: number, options: MessagesOptions = {}): Promise<Message[]> {
  const got: Message[] = []
  if (n === 0) return got
  for await (const m of mq.messages(options)) {
    got.push(m)
    if (got.length === n) break
  }
  return got
}

/**
 * Feeds the framed `payloads` to a fresh PacketDecoder in pieces of each size in
 * `steps` and checks that every payload comes out whole, in order.
 */
export function assertDecodesInSteps (payloads: readonly Uint8Array[], steps: readonly number[]): void {
  const wire = Buffer.concat(encodePacketBatch(payloads))
  for (const step of [...steps, wire.length]) {
    const d = new PacketDecoder()
    const got: Uint8Array[] = []
    for (let i = 0; i < wire.length; i += step) d.push(wire.subarray(i, i + step), got)
    d.end()
    assert.equal(got.length, payloads.length, `step ${step}`)
    got.forEach((p, i) => { assert.ok(Buffer.from(p).equals(payloads[i]!), `step ${step} packet ${i}`) })
  }
}

/**
 * The hex of what a Messaging sends first on every connection: PROTOCOL_VERSION,
 * EXTENSIONS (layout version 3: acknowledged delivery and verdicts, its nonce,
 * its maxPacketSize) and IDENTIFICATION; without EXTENSIONS in plain snakeMQ mode.
 */
export function nodeHello (mq: Messaging, plain = false): string {
  const ident = Buffer.from(mq.identity, 'utf8')
  const identPacket = Buffer.alloc(5)
  identPacket.writeUInt32BE(1 + ident.length)
  identPacket[4] = 2
  const limit = Buffer.alloc(4)
  limit.writeUInt32BE(mq.maxPacketSize)
  const ext = plain ? '' : '0000001a' + '10' + '03' + '00000003' + Buffer.from((mq as unknown as { nonce: Uint8Array }).nonce).toString('hex') + limit.toString('hex')
  return '000000050000000001' + ext + Buffer.concat([identPacket, ident]).toString('hex')
}

/** A logger that keeps every line, its level and message, for a test to wait for one. */
export class LogWatch {
  readonly lines: Array<{ level: keyof Logger, message: string }> = []
  readonly logger: Logger
  private readonly waiters = new Set<() => void>()

  constructor () {
    const keep = (level: keyof Logger) => (message: string): void => {
      this.lines.push({ level, message })
      for (const wake of this.waiters) wake()
    }
    this.logger = { debug: keep('debug'), info: keep('info'), warn: keep('warn'), error: keep('error') }
  }

  /** The messages of the lines of `level`. */
  messages (level: keyof Logger): string[] {
    return this.lines.filter((l) => l.level === level).map((l) => l.message)
  }

  /** The message of the first line, from line `from` on (logged so far or to come), that `match` accepts; rejects after `ms`. */
  async until (match: (message: string) => boolean, from = 0, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms
    for (let i = from; ; i++) {
      while (i >= this.lines.length) {
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`timed out waiting for a log line (${this.lines.length - from} others came)`)
        await new Promise<void>((resolve) => {
          const wake = (): void => { clearTimeout(timer); this.waiters.delete(wake); resolve() }
          const timer = setTimeout(wake, left)
          this.waiters.add(wake)
        })
      }
      const { message } = this.lines[i]!
      if (match(message)) return message
    }
  }
}
