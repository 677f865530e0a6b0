// A plain snakeMQ 1.6 peer made of bytes, for the RPC interop tests: it sends
// PROTOCOL_VERSION and IDENTIFICATION and nothing else of the handshake (no
// EXTENSIONS frame, so a Node peer treats its connection as plain snakeMQ),
// answers PING with PONG, ignores frame types it does not know, sends MESSAGE
// frames with the TTL and flags a test gives, and hands received MESSAGEs over
// one at a time, awaited.
import net from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'

export interface PlainMessage { ttl: number, flags: number, data: Buffer, uuid: Buffer }

const FRAME_IDENTIFICATION = 2
const FRAME_MESSAGE = 3
const FRAME_PING = 4
const FRAME_PONG = 5

function packet (type: number, body: Uint8Array): Buffer {
  const head = Buffer.alloc(5)
  head.writeUInt32BE(1 + body.length)
  head[4] = type
  return Buffer.concat([head, body])
}

export class PlainPeer {
  private buf = Buffer.alloc(0)
  private readonly messages: PlainMessage[] = []
  private waiter: (() => void) | null = null
  /** The remote's identity, once its IDENTIFICATION came. */
  remote: string | null = null
  readonly closed: Promise<void>
  private ended = false

  private constructor (readonly socket: net.Socket, readonly ident: string) {
    socket.on('data', (d: Buffer) => { this.received(d) })
    socket.on('error', () => {})
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.ended = true
      this.wake()
      resolve()
    }))
    socket.write(Buffer.concat([packet(0, Uint8Array.of(0, 0, 0, 1)), packet(FRAME_IDENTIFICATION, Buffer.from(ident))]))
  }

  /** Dials a Node listener on 127.0.0.1:`port` as `ident`. */
  static async connect (port: number, ident: string): Promise<PlainPeer> {
    const socket = net.connect({ host: '127.0.0.1', port })
    await once(socket, 'connect')
    return new PlainPeer(socket, ident)
  }

  /** Speaks as `ident` on a socket a test's listener accepted. */
  static accept (socket: net.Socket, ident: string): PlainPeer { return new PlainPeer(socket, ident) }

  /** Sends `data` in a MESSAGE frame with a fresh UUID (or `uuid`'s 16 bytes). */
  send (data: Uint8Array, ttl = 0, flags = 0, uuid: Uint8Array = randomBytes(16)): void {
    const head = Buffer.alloc(24)
    head.set(uuid.subarray(0, 16))
    head.writeUInt32BE(ttl, 16)
    head.writeUInt32BE(flags, 20)
    this.socket.write(packet(FRAME_MESSAGE, Buffer.concat([head, data])))
  }

  /** The next MESSAGE received; rejects after `ms` or once the connection closed with none left. */
  async message (ms = 10_000): Promise<PlainMessage> {
    const deadline = Date.now() + ms
    while (this.messages.length === 0) {
      if (this.ended) throw new Error(`${this.ident}: the connection closed before a message came`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`${this.ident}: no message within ${ms} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiter = () => { clearTimeout(timer); resolve() }
      })
      this.waiter = null
    }
    return this.messages.shift()!
  }

  /** Messages received and not yet taken. */
  get pending (): number { return this.messages.length }

  destroy (): void { this.socket.destroy() }

  private wake (): void { this.waiter?.() }

  private received (d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d])
    while (this.buf.length >= 4) {
      const length = this.buf.readUInt32BE(0)
      if (this.buf.length < 4 + length) break
      const frame = this.buf.subarray(4, 4 + length)
      this.buf = this.buf.subarray(4 + length)
      if (length === 0) continue
      const type = frame[0]
      if (type === FRAME_IDENTIFICATION) this.remote = frame.subarray(1).toString('utf8')
      else if (type === FRAME_PING) this.socket.write(packet(FRAME_PONG, new Uint8Array(0)))
      else if (type === FRAME_MESSAGE) {
        this.messages.push({ uuid: frame.subarray(1, 17), ttl: frame.readUInt32BE(17), flags: frame.readUInt32BE(21), data: Buffer.from(frame.subarray(25)) })
        this.wake()
      }
    }
  }
}
