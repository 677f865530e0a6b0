// One connection at the messaging level: the handshake, the frames that come in,
// and a generator of the frames that go out. Nothing here knows about sockets:
// a session only sees its Connection's source and sink.
import type { Connection } from '../link/connection.ts'
import { PacketDecoder } from '../transforms/framing.ts'
import {
  decodeFrame, EXTENSIONS_VERSION, FEATURE_ACK, FLAG_UNACKED, FrameType, MESSAGE_HEADER_BYTES, PROTOCOL_VERSION, TTL_INFINITE, UUID_BYTES,
  type Frame
} from '../transforms/frames.ts'
import { ackPacketBytes, BATCH_COPY_LIMIT, messagePacketBytes, PacketBatch } from '../transforms/batch.ts'
import {
  HandshakeTimeoutError, IncompatibleProtocolError, KeepaliveTimeoutError, ProtocolError, RedundantConnectionError
} from '../errors.ts'
import type { Logger } from '../logging.ts'
import { EntryState, type PeerQueue, type QueueEntry } from './queue.ts'
import type { KeepaliveOptions } from './types.ts'
import { fillUuid } from './uuid.ts'

/** Most messages in one outgoing batch. */
const BATCH_MESSAGES = 4096
/** Bytes of message data after which a batch is cut. */
const BATCH_BYTES = 256 * 1024
/** Most UUIDs in one ACK frame. */
const ACK_BATCH = 4096
/** Messages waiting that are written at once, without waiting for the turn to end... */
const EARLY_FLUSH = 32
/** ...when fewer than this many are unacknowledged (see notifyMessage). */
const EARLY_FLUSH_IN_FLIGHT = 256
/**
 * Schedules the microtask flushes: `then` on a settled promise costs about half
 * of Node's queueMicrotask, which also tracks the async context (not needed to
 * write a batch).
 */
const SETTLED = Promise.resolve()

/** What a session needs from the Messaging that owns it. */
export interface SessionHost {
  readonly identity: string
  readonly plain: boolean
  readonly maxPacketSize: number
  readonly maxUnacked: number
  readonly keepalive: KeepaliveOptions | undefined
  readonly handshakeTimeout: number
  readonly log: Logger
  /** The remote identified itself; returns its queue, or an error to close the connection with. */
  identified (session: Session, ident: string): PeerQueue | Error
  /** The session has its identity and queue: announce the peer (what the application does then may send to it). */
  connected (session: Session): void
  /** A MESSAGE: its UUID is the 16 bytes at `at` of `packet`, then TTL, flags, and the data up to `end`. */
  received (session: Session, packet: Uint8Array, at: number, end: number): void
  /** An ACK: the 16-byte UUIDs in `packet[at..end)`. */
  acked (session: Session, packet: Uint8Array, at: number, end: number): void
  /** A message sendDirect() took is on the socket: its packet, its UUID at `at`. */
  writtenDirect (session: Session, packet: Uint8Array, at: number): void
  /** A message sendDirect() took could not be written directly after all: queue it (first, for its peer), FLAG_UNACKED. */
  queueDirect (session: Session, data: Uint8Array, wireTtl: number): void
  /** These entries were written to the socket: all of them for a plain snakeMQ peer, else those sent with FLAG_UNACKED. */
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
  /** UUIDs to acknowledge, 16 bytes each. */
  private ackBuf = Buffer.allocUnsafe(16 * 64)
  private ackCount = 0
  private wake: (() => void) | null = null
  private wakeScheduled = false
  private immediate: NodeJS.Immediate | undefined = undefined
  /** A microtask flush is queued (see notifyMessage). */
  private flushQueued = false
  /** A received chunk is being handled (see notifyMessage). */
  private reading = false
  private endAfterFlush = false
  private stopped = false
  private lastRecv = Date.now()
  private paused = false
  private pingSentAt = -1
  /** A PING waits in `control` for the next batch. */
  private pingQueued = false
  /** The batch being written carries a PING. */
  private batchHasPing = false
  /** Messages in the batch being written. */
  private sent: QueueEntry[] = []
  /** Messages in `sent` that want no acknowledgement: delivered once written. */
  private sentUnacked = 0
  /**
   * A message that wants no acknowledgement was written and nothing was received
   * since: the remote may still be busy with it, as with an unacknowledged one
   * (see notifyMessage).
   */
  private unansweredWrite = false
  /** A message sendDirect() took while a chunk is read, written when the chunk is done (see flushStash()). */
  private stash: Uint8Array | null = null
  private stashTtl = 0
  /** The PING sent last is on the socket (not still queued behind our own outgoing bytes). */
  private pingWritten = false
  private handshakeTimer: NodeJS.Timeout | null = null
  private keepaliveTimer: NodeJS.Timeout | null = null

  constructor (private readonly host: SessionHost, readonly connection: Connection) {}

  start (): void {
    const conn = this.connection
    this.handshakeTimer = setTimeout(() => {
      this.fail(new HandshakeTimeoutError(`no handshake within ${this.host.handshakeTimeout} ms`))
    }, this.host.handshakeTimeout)
    if (this.host.keepalive !== undefined) this.armKeepalive(this.host.keepalive.interval)
    // Both directions work a socket chunk (or an outgoing batch) at a time, with
    // frames read and written in place: the same bytes as decodePackets() +
    // decodeFrames() and encodeFrames() + encodePackets(), without the objects.
    this.startReading()
    const outbound = conn.sink(this.outgoing())
    outbound.catch((err: Error) => { this.fail(err) })
    void conn.closed.then(() => { this.onClosed() })
  }

  /** Wakes the outgoing generator: there may be something to send. */
  notify (): void {
    if (this.wake === null || this.wakeScheduled) return
    this.wakeScheduled = true
    // setImmediate, not a microtask: everything sent in this turn of the event loop goes out as one batch.
    this.immediate = setImmediate(this.onWake)
  }

  /**
   * A message was queued. When nothing is in flight on this connection (a
   * request, or the reply to one), it is written once the microtasks now queued
   * have run (or, for a reply made while a received chunk is handled, as soon as
   * the chunk is done), not at the end of the turn: that saves a request/reply the trip
   * through the event loop on each side (about 3.5 µs each, measured). Otherwise
   * (a stream of messages, a plain snakeMQ peer), as notify(): one batch per turn.
   * `acked`: no acknowledgement of what this message answers is waiting to go
   * with it (post(): RPC's requests and replies, which answer unacknowledged
   * messages), so outside the reading of a chunk it may be written at once.
   */
  notifyMessage (acked = false): void {
    const q = this.queue
    // A burst of replies (or requests) made in one go, with little in flight: the
    // first EARLY_FLUSH go out now, so the remote starts on them while the rest are
    // made. (100 RPC calls in flight: +10 % calls/s; a stream, with more in flight,
    // keeps its large batches.)
    if (this.wake !== null && this.acks && q !== null && q.unsent >= EARLY_FLUSH && q.unacked.size < EARLY_FLUSH_IN_FLIGHT) {
      this.flushNow()
      return
    }
    if (this.wake !== null && !this.flushQueued && this.acks && q !== null && q.unacked.size === 0 && !this.unansweredWrite) {
      // A message with nothing to acknowledge before it (RPC's requests and
      // replies, made outside the reading of a chunk) has nothing to wait for.
      if (acked && !this.reading) { this.flushNow(); return }
      this.flushQueued = true
      // While a chunk is read, its end flushes (see startReading): no microtask then.
      if (!this.reading) void SETTLED.then(this.onFlush)
      return
    }
    this.notify()
  }

  /**
   * Writes a message sent with FLAG_UNACKED straight to the socket, with a UUID
   * of its own, when nothing else waits to go out on this connection (the
   * caller checks that its peer's queue is empty) and nothing was written since
   * something was last received: a lone request, or the reply to one. Nothing
   * is queued, taken, batched and delivered for it then. Made while a chunk is
   * read (a reply), it waits for the chunk's end, when it is written directly
   * if it is still alone. False when it must be queued as usual.
   */
  sendDirect (data: Uint8Array, wireTtl: number): boolean {
    if (this.wake === null || !this.acks || this.stopped || this.endAfterFlush || this.stash !== null || this.flushQueued ||
        this.wakeScheduled || this.ackCount > 0 || this.control.length > 0 || this.unansweredWrite || data.byteLength >= BATCH_COPY_LIMIT) {
      return false
    }
    if (this.reading) {
      this.stash = data
      this.stashTtl = wireTtl
      return true
    }
    if (!this.connection.directWritable) return false
    this.writeDirect(data, wireTtl)
    return true
  }

  /** Something else is about to be queued for this peer: the stashed message goes into the queue first, keeping the order. */
  unstash (): void {
    const data = this.stash
    if (data === null) return
    this.stash = null
    this.host.queueDirect(this, data, this.stashTtl)
  }

  /** The end of a chunk: the stashed message is written, directly if it is still alone. */
  private flushStash (): void {
    const data = this.stash!
    if (!this.flushQueued && !this.wakeScheduled && this.ackCount === 0 && this.control.length === 0 && this.wake !== null &&
        !this.stopped && !this.endAfterFlush && this.connection.directWritable) {
      this.stash = null
      this.writeDirect(data, this.stashTtl)
      return
    }
    this.unstash()
    this.flushQueued = true
  }

  private writeDirect (data: Uint8Array, wireTtl: number): void {
    const size = data.byteLength
    const packet = Buffer.allocUnsafe(4 + 1 + MESSAGE_HEADER_BYTES + size)
    packet.writeUInt32BE(1 + MESSAGE_HEADER_BYTES + size, 0)
    packet[4] = FrameType.Message
    fillUuid(packet, 5)
    packet.writeUInt32BE(wireTtl, 21)
    packet.writeUInt32BE(FLAG_UNACKED, 25)
    if (size <= 64) for (let i = 0; i < size; i++) packet[29 + i] = data[i]!
    else packet.set(data, 29)
    this.connection.writeNow(packet)
    this.unansweredWrite = true
    this.host.writtenDirect(this, packet, 5)
  }

  /** The microtask notifyMessage() queued; the flush may have been done already (see startReading). */
  private readonly onFlush = (): void => {
    if (this.flushQueued) this.flushNow()
  }

  private flushNow (): void {
    this.flushQueued = false
    if (this.wakeScheduled) {
      clearImmediate(this.immediate)
      this.wakeScheduled = false
    }
    this.onWake()
  }

  private readonly onWake = (): void => {
    this.wakeScheduled = false
    // Not parked: the generator is busy and takes what is queued when it comes round.
    if (this.wake === null) return
    // The generator is parked, so the sink waits for it and holds nothing: the
    // batch can be written from here, saving the hops through the generator and
    // the sink (a round trip's worth of promises on each side of a request/reply).
    if (!this.stopped && !this.endAfterFlush && this.connection.directWritable) {
      const batch = this.nextBatch()
      if (batch === null) return
      this.connection.writeNow(batch)
      this.batchWritten()
      return
    }
    const w = this.wake
    this.wake = null
    w()
  }

  /** Acknowledges a received message (its UUID: the 16 bytes at `at` of `uuid`) to the remote. */
  ack (uuid: Uint8Array, at: number): void {
    let buf = this.ackBuf
    const o = this.ackCount * UUID_BYTES
    if (o + UUID_BYTES > buf.length) {
      const bigger = Buffer.allocUnsafe(buf.length * 2)
      buf.copy(bigger, 0, 0, o)
      this.ackBuf = buf = bigger
    }
    for (let i = 0; i < UUID_BYTES; i++) buf[o + i] = uuid[at + i]!
    this.ackCount++
    // A flush already queued (a reply made for this very message) carries it.
    if (!this.flushQueued) this.notify()
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

  /** Another connection to the same peer took over: close this one quietly. */
  retire (): void {
    if (this.stopped) return
    this.stopped = true
    this.connection.close(new RedundantConnectionError(`${this.connection.id} was replaced by another connection to ${JSON.stringify(this.ident)}`))
  }

  /**
   * Graceful close: sends what is pending except new messages (acknowledgements
   * above all, so the remote does not resend what we received), then ends the
   * connection. Resolves when it is closed, or after `timeout` ms when it is destroyed.
   */
  async finish (timeout: number): Promise<void> {
    if (this.stopped) return
    this.endAfterFlush = true
    this.notify()
    const timer = setTimeout(() => { this.close() }, timeout)
    await this.connection.closed
    clearTimeout(timer)
  }

  /**
   * Reads the connection: each socket chunk is decoded and its packets handled
   * in the socket's data event (no promise per chunk: timed at about 1 µs per
   * chunk on each side of a request/reply), or through `source` when an
   * incoming throttle stands between.
   */
  private startReading (): void {
    const decoder = new PacketDecoder({ maxPacketSize: this.host.maxPacketSize })
    const onPacket = (buf: Uint8Array, start: number, end: number): boolean => this.packet(buf, start, end)
    const reader = this.connection.push({
      data: (chunk) => {
        // Closing after a flush: keep reading (so the remote's FIN is seen) but act on nothing more.
        if (this.endAfterFlush || this.stopped) return
        // The connection stamped this chunk's arrival: no second clock read per chunk.
        this.lastRecv = this.connection.lastReceivedAt
        this.unansweredWrite = false
        this.reading = true
        try {
          decoder.each(chunk, onPacket)
        } catch (err) {
          this.fail(err as Error)
        }
        this.reading = false
        if (this.stopped) { reader!.stop(); return }
        if (this.stash !== null) this.flushStash()
        // Replies made while handling this chunk go out now, with the chunk's
        // acknowledgements, rather than after the stream's own bookkeeping and
        // the microtasks (about 1 µs per request/reply, measured).
        if (this.flushQueued) this.flushNow()
        // Only an identified remote can fill the inbox: pausing a handshake for a full
        // inbox would keep this connection from ever identifying (and from sending).
        const room = this.queue !== null ? this.host.inboxRoom() : null
        if (room !== null) {
          reader!.pause()
          this.pauseReading(room, () => { reader!.resume() })
        }
      },
      end: (err) => {
        if (err !== null) { this.fail(err); return }
        // A stream cut inside a packet is an error, unless we stopped acting on what it carries.
        if (this.endAfterFlush || this.stopped) return
        try {
          decoder.end()
        } catch (e) {
          this.fail(e as Error)
        }
      }
    })
    if (reader === null) this.readPackets(decoder, onPacket).catch((err: Error) => { this.fail(err) })
  }

  /** Backpressure: the socket is not read until consumers make room in the inbox. */
  private pauseReading (room: Promise<void>, resume: () => void): void {
    this.paused = true
    this.host.log.debug('receive buffer full, reading paused', { conn: this.connection.id, peer: this.ident ?? undefined })
    void room.then(() => {
      this.paused = false
      this.lastRecv = Date.now()
      if (!this.stopped) this.host.log.debug('reading resumed', { conn: this.connection.id, peer: this.ident ?? undefined })
      resume()
    })
  }

  /** startReading() through `source`, for a throttled connection. */
  private async readPackets (decoder: PacketDecoder, onPacket: (buf: Uint8Array, start: number, end: number) => boolean): Promise<void> {
    for await (const chunk of this.connection.source) {
      if (this.endAfterFlush) continue
      this.lastRecv = Date.now()
      this.unansweredWrite = false
      this.reading = true
      try {
        decoder.each(chunk, onPacket)
      } finally {
        this.reading = false
      }
      if (this.stopped) return
      if (this.stash !== null) this.flushStash()
      if (this.flushQueued) this.flushNow()
      const room = this.queue !== null ? this.host.inboxRoom() : null
      if (room !== null) await new Promise<void>((resolve) => { this.pauseReading(room, resolve) })
    }
    if (!this.endAfterFlush) decoder.end()
  }

  /** One packet, `buf[start..end)`; false when nothing more should be read from this connection. */
  private packet (buf: Uint8Array, start: number, end: number): boolean {
    if (this.stopped || this.endAfterFlush) return false
    // MESSAGE, the frame nearly every packet carries, is read in place.
    if (end - start >= 1 + MESSAGE_HEADER_BYTES && buf[start] === FrameType.Message && this.queue !== null) {
      this.host.received(this, buf, start + 1, end)
      return !this.stopped
    }
    // So is ACK (a well-formed one, on a connection that agreed to them).
    if (buf[start] === FrameType.Ack && this.acks && this.queue !== null && end - start > 1 && (end - start - 1) % UUID_BYTES === 0) {
      this.host.acked(this, buf, start + 1, end)
      return !this.stopped && !this.endAfterFlush
    }
    const f = decodeFrame(buf.subarray(start, end))
    if (f === null) {
      this.host.log.debug('ignored a frame of unknown type', { conn: this.connection.id, peer: this.ident ?? undefined, type: buf[start], bytes: end - start })
    } else {
      this.handle(f)
    }
    return !this.stopped && !this.endAfterFlush
  }

  private handle (f: Frame): void {
    switch (f.type) {
      case FrameType.Message:
        // Identified sessions read MESSAGE frames in place (see packet()).
        this.fail(new ProtocolError('MESSAGE before IDENTIFICATION'))
        return
      case FrameType.Ack:
        if (this.queue !== null && this.acks) this.host.acked(this, f.uuids, 0, f.uuids.length)
        else this.host.log.debug('ignored ACK: acknowledged delivery not agreed on this connection', { conn: this.connection.id, peer: this.ident ?? undefined })
        return
      case FrameType.Ping:
        this.host.log.debug('got PING, answering PONG', { conn: this.connection.id, peer: this.ident ?? undefined })
        this.control.push({ type: FrameType.Pong })
        this.notify()
        return
      case FrameType.Pong:
        this.host.log.debug('got PONG', { conn: this.connection.id, peer: this.ident ?? undefined })
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
        this.host.log.debug('got PROTOCOL_VERSION', { conn: this.connection.id, version: f.version })
        return
      case FrameType.IncompatibleProtocol:
        this.fail(new IncompatibleProtocolError(null))
        return
      case FrameType.Extensions: {
        // Only an announcement between PROTOCOL_VERSION and IDENTIFICATION counts.
        const counts = this.gotVersion && this.ident === null
        if (counts) this.remoteFeatures = f.features
        this.host.log.debug(counts ? 'got EXTENSIONS' : 'ignored EXTENSIONS outside the handshake', { conn: this.connection.id, version: f.version, features: f.features })
        return
      }
      case FrameType.Identification:
        this.host.log.debug('got IDENTIFICATION', { conn: this.connection.id, peer: f.identity })
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
    this.host.connected(this)
    this.notify()
  }

  private async * outgoing (): AsyncGenerator<Uint8Array[]> {
    const hello: Frame[] = [{ type: FrameType.ProtocolVersion, version: PROTOCOL_VERSION }]
    if (!this.host.plain) hello.push({ type: FrameType.Extensions, version: EXTENSIONS_VERSION, features: FEATURE_ACK })
    hello.push({ type: FrameType.Identification, identity: this.host.identity })
    this.host.log.debug('sending handshake', { conn: this.connection.id, frames: hello.map((f) => frameName(f.type)).join(','), identity: this.host.identity })
    const first = new PacketBatch(64 + this.host.identity.length * 3)
    for (const f of hello) first.frame(f)
    yield first.finish()
    while (!this.stopped) {
      const batch = this.nextBatch()
      if (batch === null) {
        if (this.endAfterFlush) { await this.connection.end(); return }
        await new Promise<void>((resolve) => { this.wake = resolve })
        continue
      }
      yield batch
      this.batchWritten()
    }
  }

  /**
   * The next batch to write: control frames, acknowledgements, then messages
   * (which go into `sent`); null when there is nothing to send.
   */
  private nextBatch (): Uint8Array[] | null {
    const control = this.control
    const q = this.queue
    const sent = this.sent
    if (q !== null && !this.endAfterFlush) {
      const room = this.acks ? this.host.maxUnacked - q.unacked.size : BATCH_MESSAGES
      if (room > 0) q.take(Math.min(room, BATCH_MESSAGES), BATCH_BYTES, sent)
      // Senders pacing themselves to this connection may go on (they run once this batch is on its way).
      if (sent.length > 0) q.wakePaced()
    }
    const acks = this.ackCount
    if (control.length === 0 && acks === 0 && sent.length === 0) return null
    this.control = []
    this.batchHasPing = this.pingQueued
    this.pingQueued = false
    let bytes = 16 * control.length + ackPacketBytes(acks, ACK_BATCH)
    for (const e of sent) bytes += messagePacketBytes(e.size)
    const batch = new PacketBatch(bytes)
    for (const f of control) batch.frame(f)
    if (acks > 0) {
      batch.acks(this.ackBuf, acks, ACK_BATCH)
      this.ackCount = 0
    }
    if (q !== null) {
      for (const e of sent) {
        const ttl = e.eternal ? TTL_INFINITE : this.host.wireTtl(q, e)
        const data = e.external
        if (data === null) batch.message(e.buf, e.at, ttl, e.flags, e.buf, e.at + UUID_BYTES, e.size)
        else batch.message(e.buf, e.at, ttl, e.flags, data, 0, e.size)
        if (!this.acks) continue
        if ((e.flags & FLAG_UNACKED) === 0) { e.state = EntryState.Sent; q.unacked.add(e) } else this.sentUnacked++
      }
    }
    return batch.finish()
  }

  /** The batch nextBatch() made is on the socket. */
  private batchWritten (): void {
    // The remote's answer can only come once our PING is on the socket: its wait starts now.
    if (this.batchHasPing && this.pingSentAt >= 0) { this.pingSentAt = Date.now(); this.pingWritten = true }
    this.batchHasPing = false
    // For a plain snakeMQ peer, and for a message sent with FLAG_UNACKED, written is delivered.
    const sent = this.sent
    if (sent.length > 0) {
      this.sent = []
      if (this.sentUnacked > 0) {
        this.unansweredWrite = true
        this.sentUnacked = 0
        if (!this.stopped) this.host.written(this, sent)
      } else if (!this.acks && !this.stopped) {
        this.host.written(this, sent)
      }
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
    // Bytes of a packet not yet complete are a sign of life too (a large message through a slow link).
    const lastRecv = Math.max(this.lastRecv, this.connection.lastReceivedAt)
    if (this.pingSentAt >= 0) {
      if (lastRecv >= this.pingSentAt) {
        this.pingSentAt = -1
      } else if (!this.pingWritten && now - this.connection.lastWrittenAt < ka.wait) {
        // Our PING still waits behind our own outgoing bytes (a throttle, a large message) and they are
        // moving: the remote cannot have answered yet. Its wait starts once the PING is written.
        this.armKeepalive(ka.wait)
        return
      } else if (now - this.pingSentAt >= ka.wait) {
        this.fail(new KeepaliveTimeoutError(`no answer within ${ka.wait} ms of a PING`))
        return
      } else {
        this.armKeepalive(ka.wait - (now - this.pingSentAt))
        return
      }
    }
    const idle = now - lastRecv
    if (idle >= ka.interval) {
      this.pingSentAt = now
      this.pingQueued = true
      this.pingWritten = false
      this.host.log.debug('idle, sending PING', { conn: this.connection.id, peer: this.ident ?? undefined, idleMs: idle })
      this.control.push({ type: FrameType.Ping })
      this.notify()
      this.armKeepalive(ka.wait)
    } else {
      this.armKeepalive(ka.interval - idle)
    }
  }

  private onClosed (): void {
    this.stopped = true
    // Not written: it waits in the queue for the next connection.
    this.unstash()
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer)
    if (this.keepaliveTimer !== null) clearTimeout(this.keepaliveTimer)
    this.handshakeTimer = this.keepaliveTimer = null
    const w = this.wake
    this.wake = null
    w?.()
    this.host.ended(this)
  }
}

const FRAME_NAMES = new Map<number, string>([
  [FrameType.ProtocolVersion, 'PROTOCOL_VERSION'], [FrameType.IncompatibleProtocol, 'INCOMPATIBLE_PROTOCOL'],
  [FrameType.Identification, 'IDENTIFICATION'], [FrameType.Message, 'MESSAGE'], [FrameType.Ping, 'PING'],
  [FrameType.Pong, 'PONG'], [FrameType.Extensions, 'EXTENSIONS'], [FrameType.Ack, 'ACK']
])

/** A frame type as PROTOCOL.md names it, for log lines. */
function frameName (type: number): string { return FRAME_NAMES.get(type) ?? `type ${type}` }
