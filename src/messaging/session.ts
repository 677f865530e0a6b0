// One connection at the messaging level: the handshake, the frames that come in,
// and a generator of the frames that go out. Nothing here knows about sockets:
// a session only sees its Connection's source and sink.
import { pipe } from 'it-pipe'
import type { Connection } from '../link/connection.ts'
import { decodePackets, encodePackets } from '../transforms/framing.ts'
import {
  decodeFrames, encodeFrames, EXTENSIONS_VERSION, FEATURE_ACK, FrameType, PROTOCOL_VERSION, UUID_BYTES,
  type Frame, type MessageFrame
} from '../transforms/frames.ts'
import {
  HandshakeTimeoutError, IncompatibleProtocolError, KeepaliveTimeoutError, ProtocolError
} from '../errors.ts'
import { EntryState, type PeerQueue, type QueueEntry } from './queue.ts'
import type { KeepaliveOptions } from './types.ts'

/** Most messages in one outgoing batch. */
const BATCH_MESSAGES = 4096
/** Bytes of message data after which a batch is cut. */
const BATCH_BYTES = 256 * 1024
/** Most UUIDs in one ACK frame. */
const ACK_BATCH = 4096

/** What a session needs from the Messaging that owns it. */
export interface SessionHost {
  readonly identity: string
  readonly plain: boolean
  readonly maxPacketSize: number
  readonly maxUnacked: number
  readonly keepalive: KeepaliveOptions | undefined
  readonly handshakeTimeout: number
  /** The remote identified itself; returns its queue, or an error to close the connection with. */
  identified (session: Session, ident: string): PeerQueue | Error
  received (session: Session, frame: MessageFrame): void
  acked (session: Session, uuids: Uint8Array): void
  /** A plain snakeMQ peer: these entries were written to the socket. */
  written (session: Session, entries: readonly QueueEntry[]): void
  failed (session: Session, error: Error): void
  ended (session: Session): void
  /** Wire TTL of an entry now. */
  wireTtl (queue: PeerQueue, entry: QueueEntry): number
  /** Resolves when received messages may be read again; null when there is room now. */
  inboxRoom (): Promise<void> | null
}

export class Session {
  /** The remote's identity, once it has identified itself. */
  ident: string | null = null
  queue: PeerQueue | null = null
  /** True when both sides use acknowledged delivery on this connection. */
  acks = false
  error: Error | undefined = undefined
  private gotVersion = false
  private remoteFeatures = 0
  private control: Frame[] = []
  private ackKeys: string[] = []
  private wake: (() => void) | null = null
  private wakeScheduled = false
  private endAfterFlush = false
  private stopped = false
  private lastRecv = Date.now()
  private paused = false
  private pingSentAt = -1
  private handshakeTimer: NodeJS.Timeout | null = null
  private keepaliveTimer: NodeJS.Timeout | null = null

  constructor (private readonly host: SessionHost, readonly connection: Connection) {}

  start (): void {
    const conn = this.connection
    this.handshakeTimer = setTimeout(() => {
      this.fail(new HandshakeTimeoutError(`no handshake within ${this.host.handshakeTimeout} ms`))
    }, this.host.handshakeTimeout)
    if (this.host.keepalive !== undefined) this.armKeepalive(this.host.keepalive.interval)
    const inbound = pipe(
      conn.source,
      decodePackets({ maxPacketSize: this.host.maxPacketSize }),
      decodeFrames(),
      async (source) => { await this.readFrames(source) }
    )
    const outbound = pipe(this.outgoing(), encodeFrames(), encodePackets(), conn.sink)
    inbound.catch((err: Error) => { this.fail(err) })
    outbound.catch((err: Error) => { this.fail(err) })
    void conn.closed.then(() => { this.onClosed() })
  }

  /** Wakes the outgoing generator: there may be something to send. */
  notify (): void {
    if (this.wake === null || this.wakeScheduled) return
    this.wakeScheduled = true
    // setImmediate, not a microtask: everything sent in this turn of the event loop goes out as one batch.
    setImmediate(() => {
      this.wakeScheduled = false
      const w = this.wake
      this.wake = null
      w?.()
    })
  }

  /** Acknowledges a received message to the remote. */
  ack (uuid: string): void {
    this.ackKeys.push(uuid)
    this.notify()
  }

  /** Closes the connection because of `error`. */
  fail (error: Error): void {
    if (this.stopped) return
    this.stopped = true
    this.error = error
    this.host.failed(this, error)
    this.connection.close(error)
  }

  /** Closes the connection without an error (local shutdown). */
  close (): void {
    if (this.stopped) return
    this.stopped = true
    this.connection.close()
  }

  private async readFrames (source: AsyncIterable<Frame[]>): Promise<void> {
    for await (const frames of source) {
      this.lastRecv = Date.now()
      for (const f of frames) {
        this.handle(f)
        if (this.stopped || this.endAfterFlush) return
      }
      const room = this.host.inboxRoom()
      if (room !== null) {
        // Backpressure: stop reading the socket until consumers catch up.
        this.paused = true
        await room
        this.paused = false
        this.lastRecv = Date.now()
      }
    }
  }

  private handle (f: Frame): void {
    switch (f.type) {
      case FrameType.Message:
        if (this.queue === null) { this.fail(new ProtocolError('MESSAGE before IDENTIFICATION')); return }
        this.host.received(this, f)
        return
      case FrameType.Ack:
        if (this.queue !== null && this.acks) this.host.acked(this, f.uuids)
        return
      case FrameType.Ping:
        this.control.push({ type: FrameType.Pong })
        this.notify()
        return
      case FrameType.Pong:
        return
      case FrameType.ProtocolVersion:
        if (f.version !== PROTOCOL_VERSION) {
          const err = new IncompatibleProtocolError(f.version)
          this.host.failed(this, err)
          this.error = err
          this.control.push({ type: FrameType.IncompatibleProtocol })
          this.endAfterFlush = true
          this.notify()
          return
        }
        this.gotVersion = true
        return
      case FrameType.IncompatibleProtocol:
        this.fail(new IncompatibleProtocolError(null))
        return
      case FrameType.Extensions:
        // Only an announcement between PROTOCOL_VERSION and IDENTIFICATION counts.
        if (this.gotVersion && this.ident === null) this.remoteFeatures = f.features
        return
      case FrameType.Identification:
        this.identify(f.identity)
    }
  }

  private identify (ident: string): void {
    if (!this.gotVersion) { this.fail(new ProtocolError('IDENTIFICATION before PROTOCOL_VERSION')); return }
    if (this.ident !== null) { this.fail(new ProtocolError('a second IDENTIFICATION on one connection')); return }
    if (ident.length === 0) { this.fail(new ProtocolError('empty identity in IDENTIFICATION')); return }
    this.acks = !this.host.plain && (this.remoteFeatures & FEATURE_ACK) !== 0
    if (this.handshakeTimer !== null) { clearTimeout(this.handshakeTimer); this.handshakeTimer = null }
    const q = this.host.identified(this, ident)
    if (q instanceof Error) { this.fail(q); return }
    this.ident = ident
    this.queue = q
    this.notify()
  }

  private async * outgoing (): AsyncGenerator<Frame[]> {
    const hello: Frame[] = [{ type: FrameType.ProtocolVersion, version: PROTOCOL_VERSION }]
    if (!this.host.plain) hello.push({ type: FrameType.Extensions, version: EXTENSIONS_VERSION, features: FEATURE_ACK })
    hello.push({ type: FrameType.Identification, identity: this.host.identity })
    yield hello
    let sent: QueueEntry[] = []
    while (!this.stopped) {
      const frames: Frame[] = this.control
      this.control = []
      this.takeAcks(frames)
      const q = this.queue
      if (q !== null && !this.endAfterFlush) {
        const room = this.acks ? this.host.maxUnacked - q.unacked.size : BATCH_MESSAGES
        if (room > 0) q.take(Math.min(room, BATCH_MESSAGES), BATCH_BYTES, sent)
        for (const e of sent) {
          frames.push({ type: FrameType.Message, uuid: e.uuid, ttl: this.host.wireTtl(q, e), flags: e.flags, data: e.data })
          if (this.acks) { e.state = EntryState.Sent; q.unacked.set(e.uuid, e) }
        }
      }
      if (frames.length === 0) {
        if (this.endAfterFlush) { await this.connection.end(); return }
        await new Promise<void>((resolve) => { this.wake = resolve })
        continue
      }
      yield frames
      // The sink pulls again only after it wrote the batch: for a plain snakeMQ peer that is delivery.
      if (sent.length > 0) {
        if (!this.acks && !this.stopped) this.host.written(this, sent)
        sent = []
      }
    }
  }

  private takeAcks (frames: Frame[]): void {
    const keys = this.ackKeys
    if (keys.length === 0) return
    this.ackKeys = []
    for (let i = 0; i < keys.length; i += ACK_BATCH) {
      const n = Math.min(ACK_BATCH, keys.length - i)
      const body = Buffer.allocUnsafe(n * UUID_BYTES)
      for (let j = 0; j < n; j++) body.write(keys[i + j]!, j * UUID_BYTES, UUID_BYTES, 'hex')
      frames.push({ type: FrameType.Ack, uuids: body })
    }
  }

  private armKeepalive (delay: number): void {
    this.keepaliveTimer = setTimeout(() => { this.checkKeepalive() }, Math.max(1, delay))
  }

  private checkKeepalive (): void {
    const ka = this.host.keepalive
    if (ka === undefined || this.stopped) return
    const now = Date.now()
    if (this.paused) { this.lastRecv = now; this.pingSentAt = -1; this.armKeepalive(ka.interval); return }
    if (this.pingSentAt >= 0) {
      if (this.lastRecv >= this.pingSentAt) {
        this.pingSentAt = -1
      } else if (now - this.pingSentAt >= ka.wait) {
        this.fail(new KeepaliveTimeoutError(`no answer within ${ka.wait} ms of a PING`))
        return
      } else {
        this.armKeepalive(ka.wait - (now - this.pingSentAt))
        return
      }
    }
    const idle = now - this.lastRecv
    if (idle >= ka.interval) {
      this.pingSentAt = now
      this.control.push({ type: FrameType.Ping })
      this.notify()
      this.armKeepalive(ka.wait)
    } else {
      this.armKeepalive(ka.interval - idle)
    }
  }

  private onClosed (): void {
    this.stopped = true
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer)
    if (this.keepaliveTimer !== null) clearTimeout(this.keepaliveTimer)
    this.handshakeTimer = this.keepaliveTimer = null
    const w = this.wake
    this.wake = null
    w?.()
    this.host.ended(this)
  }
}
