// One connection at the messaging level: the protocol's state machine. It reads
// its channel on one path (each chunk through the packet decoder, each frame
// read where it lies) and writes by one rule: whatever is to be sent (control
// frames, acknowledgements, the peer's outbox) waits for one flush, scheduled
// when the first of it appears: at the end of the chunk being read (or as soon
// as handling it made MID_CHUNK_MESSAGES messages, replies); else, for an
// RPC call or reply on a connection with nothing in flight, on a microtask
// (someone waits for it); else at the end of the event loop's turn (sent
// messages, which come in runs, and acknowledgements, so they go out in large
// writes: a thousand peers each starting a run would otherwise each write its
// first message alone); at once when the outbox holds enough to fill a write.
// A flush writes one batch; while the channel is congested nothing more is
// written, and once it owes the remote too many acknowledgements the channel is
// not read either, so what a peer that does not read can make this side hold
// stays bounded. Nothing here knows about sockets.
import type { Channel, ChannelReader } from '../link/channel.ts'
import { PacketDecoder } from '../transforms/framing.ts'
import { MAX_MESSAGE_BYTES } from '../link/ws-messages.ts'
import {
  ackPacketBytes, decodeFrame, EXTENSIONS_VERSION, FEATURE_ACK, FEATURE_VERDICT, FrameType, FrameWriter, MESSAGE_HEADER_BYTES, messagePacketBytes,
  PROTOCOL_VERSION, RefusalCode, setMessageTtl, UUID_BYTES, type Frame
} from '../transforms/frames.ts'
import {
  DuplicateIdentityError, HandshakeRefusedError, HandshakeTimeoutError, IdentityMismatchError, IncompatibleProtocolError,
  KeepaliveTimeoutError, PacketTooLargeError, PeerCertificateError, ProtocolError, ReceiveBudgetError, RedundantConnectionError, WebSocketMessageTooLargeError
} from '../errors.ts'
import type { BudgetMember, ReceiveBudget } from './receive-budget.ts'
import type { Logger } from '../logging.ts'
import { clearImmediate, setImmediate } from '../immediate.ts'
import { WAKE_NOW, WAKE_PROMPT, type Outbox, type OutboxReader, type QueueEntry, type Wake } from './outbox.ts'
import type { KeepaliveOptions } from './types.ts'
import { settleFields } from '../settle.ts'

/** Most messages in one outgoing batch. */
const BATCH_MESSAGES = 4096
/** Bytes of message data after which a batch is cut. */
const BATCH_BYTES = 256 * 1024
/**
 * Largest packet accepted before the remote's IDENTIFICATION is accepted: the
 * handshake's frames are small (an identity is at most 1,024 bytes), so a remote
 * nobody knows yet cannot make this side hold maxPacketSize for it (over all
 * such connections, the whole maxUnfinishedBytes) before it has even said who it is.
 */
export const MAX_HANDSHAKE_PACKET = 64 * 1024
/**
 * Most a transport may hold of data not yet pushed (a WebSocket message still
 * arriving, see ChannelReader.pending) before the remote's IDENTIFICATION is
 * accepted: one message of a peer of this library (at most 1 MiB) may carry the
 * handshake and, from a plain peer, its first messages; beyond that, a remote
 * nobody knows yet would hold `ws`'s maxPayload (4 MiB) per connection.
 */
export const MAX_HANDSHAKE_PENDING = MAX_MESSAGE_BYTES + MAX_HANDSHAKE_PACKET
/** Most UUIDs in one ACK frame. */
const ACK_BATCH = 4096
/**
 * Acknowledgements owed while the channel is congested past which it is no longer
 * read. A peer of this library never has more than its maxUnacked (at most
 * MAX_UNACKED_LIMIT) messages unacknowledged, so only a peer that ignores the
 * protocol gets here; two peers streaming both ways never stop each other.
 */
export const MAX_OWED_ACKS = 65_536
/** The largest `maxUnacked` allowed: it must stay within what the other side may owe (MAX_OWED_ACKS). */
export const MAX_UNACKED_LIMIT = MAX_OWED_ACKS
/** `then` on a settled promise: a microtask without the async-context tracking of queueMicrotask. */
const SETTLED = Promise.resolve()

/**
 * Messages made while one received chunk is handled (an RPC server's replies)
 * after which they are written at once instead of at the chunk's end, so the
 * remote starts on them while the rest are made: 100 calls in flight otherwise
 * go back and forth as one batch each way, each side idle while the other works.
 */
const MID_CHUNK_MESSAGES = 16
/** When the pending flush runs. */
const FLUSH_NONE = 0
const FLUSH_AT_CHUNK_END = 1
const FLUSH_MICROTASK = 2
const FLUSH_IMMEDIATE = 3

/** Why reading is paused (bits). */
const PAUSE_INBOX = 1
const PAUSE_OWED = 2

/** What a session needs from the Messaging that owns it. */
export interface SessionHost<C extends Channel = Channel> {
  readonly identity: string
  /** This process's nonce, announced in EXTENSIONS: two connections with the same nonce come from the same peer. */
  readonly nonce: Uint8Array
  readonly plain: boolean
  readonly maxPacketSize: number
  /** What unfinished packets may hold over all connections (maxUnfinishedBytes). */
  readonly receiveBudget: ReceiveBudget
  readonly maxUnacked: number
  readonly keepalive: KeepaliveOptions | undefined
  readonly handshakeTimeout: number
  readonly log: Logger
  /** The remote identified itself; returns its outbox, or an error to close the connection with. */
  identified (session: Session<C>, ident: string): Outbox | Error
  /**
   * The connection is up: the remote identified and was accepted, and (between
   * peers that give verdicts) accepted this side too. Announce the peer (what the
   * application does then may send to it).
   */
  connected (session: Session<C>): void
  /** A MESSAGE: its UUID is the 16 bytes at `at` of `packet`, then TTL, flags, and the data up to `end`. */
  received (session: Session<C>, packet: Uint8Array, at: number, end: number): void
  /** The session closes its connection because of `error`. */
  failed (session: Session<C>, error: Error): void
  /** The connection is closed. */
  ended (session: Session<C>): void
  /** Resolves when received messages may be read again; null when there is room now. */
  inboxRoom (): Promise<void> | null
}

export class Session<C extends Channel = Channel> implements OutboxReader, BudgetMember {
  /** The remote's identity, once it has identified itself. */
  ident: string | null = null
  /** The remote's outbox, once identified. */
  outbox: Outbox | null = null
  /** True when both sides use acknowledged delivery on this connection. */
  acks = false
  /** The remote's nonce (from its EXTENSIONS), if it sent one. */
  remoteNonce: Uint8Array | null = null
  /** True once the connection is up (see SessionHost.connected). */
  up = false
  /** The host announced this peer on this session (and so owes a disconnect when it ends). */
  announced = false
  error: Error | undefined = undefined
  /** What this connection's unfinished packet holds, as counted in the host's receiveBudget (with `assembling`). */
  held = 0
  /** What the transport holds of data not yet pushed (a WebSocket message still arriving): see ChannelReader.pending. */
  private assembling = 0
  /** The unfinished packet was dropped (receiveBudget): nothing more is decoded, not even acknowledgements. */
  private cut = false
  /** The most data a MESSAGE to the remote may carry: from the maxPacketSize it announced, if it did. */
  maxMessageData = Infinity
  private gotVersion = false
  private remoteFeatures = 0
  /** Both sides give verdicts (FEATURE_VERDICT): the connection is up once each accepted the other. */
  private verdicts = false
  /** The remote's WELCOME came. */
  private welcomed = false
  /** Control frames to send (handshake, PING, INCOMPATIBLE_PROTOCOL). */
  private control: Frame[] = []
  /** A PING came: one PONG answers however many. */
  private pongOwed = false
  /** UUIDs to acknowledge, 16 bytes each; allocated with the first. */
  private ackBuf: Uint8Array | null = null
  private ackCount = 0
  private flushState = FLUSH_NONE
  private immediate: ReturnType<typeof setImmediate> | undefined = undefined
  /** A received chunk is being handled: what it makes is sent at its end, or every MID_CHUNK_MESSAGES messages. */
  private reading = false
  /** Messages the outbox was given while this chunk was handled and not written yet. */
  private madeWhileReading = 0
  /** Messages were written and nothing was read since: the remote may be busy answering them. */
  private wroteSinceRead = false
  /** Sending only what is owed (no new messages), then ending the connection. */
  private ending = false
  private endCalled = false
  private stopped = false
  private paused = 0
  private draining = false
  /** Messages in the batch being written. */
  private readonly batch: QueueEntry[] = []
  private lastRecv = Date.now()
  /** The PING sent last waits for an answer until this time (ms since the epoch), or -1. */
  private pingDeadline = -1
  private pingSentAt = -1
  private pingWritten = false
  /** The channel's bytesOut when the PING's wait last started: if it moved since, our own bytes are still going out ahead of it. */
  private pingBytesOut = 0
  /** While reading is paused because the remote reads nothing (PAUSE_OWED): since when no byte has left, and the channel's bytesOut then. */
  private deafSince = -1
  private deafBytesOut = 0
  /** Writes to the channel so far; the count progress() last saw, and since when it has not moved (no clock read per write). */
  private writes = 0
  private quietWrites = 0
  private quietSince = Date.now()
  private handshakeTimer: ReturnType<typeof setTimeout> | null = null
  private keepaliveTimer: ReturnType<typeof setTimeout> | null = null
  private readonly decoder: PacketDecoder
  private readonly writer = new FrameWriter()

  constructor (private readonly host: SessionHost<C>, readonly connection: C) {
    this.decoder = new PacketDecoder({ maxPacketSize: Math.min(host.maxPacketSize, MAX_HANDSHAKE_PACKET) })
    host.receiveBudget.join(this)
    settleFields(this, 'ending', 'stopped')
  }

  start (): void {
    const hello: Frame[] = [{ type: FrameType.ProtocolVersion, version: PROTOCOL_VERSION }]
    if (!this.host.plain) hello.push({ type: FrameType.Extensions, version: EXTENSIONS_VERSION, features: FEATURE_ACK | FEATURE_VERDICT, nonce: this.host.nonce, maxPacketSize: this.host.maxPacketSize })
    hello.push({ type: FrameType.Identification, identity: this.host.identity })
    this.host.log.debug('sending handshake', { conn: this.connection.id, frames: hello.map((f) => frameName(f.type)).join(','), identity: this.host.identity })
    this.control.push(...hello)
    this.handshakeTimer = setTimeout(() => {
      this.fail(new HandshakeTimeoutError(`no handshake within ${this.host.handshakeTimeout} ms`))
    }, this.host.handshakeTimeout)
    if (this.host.keepalive !== undefined) this.armKeepalive(this.host.keepalive.interval)
    void this.connection.closed.then(() => { this.onClosed() })
    // Refused by the transport (a TLS certificate that did not verify): say so after the hello, read nothing.
    const refusal = this.connection.refusal
    if (refusal !== undefined && !this.host.plain) {
      this.control.push({ type: FrameType.Refused, code: refusalCode(refusal), reason: refusalReason(refusal) })
      this.error = refusal
      this.ending = true
    }
    this.flushNow()
    if (refusal !== undefined && this.host.plain) { this.close(); return }
    this.connection.read(this.reader)
  }

  // ---- reading ---------------------------------------------------------------

  private readonly reader: ChannelReader = {
    data: (chunk) => { this.onData(chunk) },
    end: (error) => { this.onEnd(error) },
    pending: (bytes) => {
      this.assembling = bytes
      if (this.stopped || this.cut) return
      if (this.ident === null && bytes > MAX_HANDSHAKE_PENDING) {
        this.refuseOrFail(new WebSocketMessageTooLargeError(MAX_HANDSHAKE_PENDING, { when: 'before IDENTIFICATION (while it was still arriving)' }))
        return
      }
      this.budget()
      // Bytes of a WebSocket message still arriving: the remote is there.
      if (bytes > 0) {
        this.lastRecv = Date.now()
        this.progress()
      }
    }
  }

  /**
   * Part of a packet came (over a slow path, one large packet takes long) and
   * this side has written nothing for a while: no acknowledgement is owed until
   * the packet is whole, so the remote hears nothing from here meanwhile, and
   * its keepalive would close a connection that works, at every resend. A PING
   * (answered with a PONG, which is only more data) tells it this side is there.
   */
  private progress (): void {
    if (!this.up || this.ending) return
    if (this.writes !== this.quietWrites) { this.quietWrites = this.writes; this.quietSince = this.lastRecv; return }
    if (this.lastRecv - this.quietSince < Math.min(PROGRESS_PING_MS, this.host.keepalive?.interval ?? PROGRESS_PING_MS)) return
    this.quietSince = this.lastRecv
    this.host.log.debug('a packet is arriving and nothing was sent for a while: sending PING', { conn: this.connection.id, peer: this.ident ?? undefined })
    this.control.push(PING)
    this.want()
  }

  /** Tells the host's receive budget what this connection's unfinished data holds now, if that changed. */
  private budget (): void {
    const held = this.decoder.held + this.assembling
    if (held !== this.held) this.host.receiveBudget.update(this, held)
  }

  private onData (chunk: Uint8Array): void {
    if (this.stopped) return
    // Ending: keep reading (so the remote's FIN is seen) but act on nothing more,
    // except the acknowledgements of what is in flight, which finish() waits for.
    if (this.ending) {
      if (!this.awaitingAcks()) return
      try {
        this.decoder.each(chunk, this.onAckOnly)
      } catch {
        this.endChannel()
      }
      this.budget()
      return
    }
    this.lastRecv = Date.now()
    this.wroteSinceRead = false
    this.reading = true
    this.madeWhileReading = 0
    try {
      this.decoder.each(chunk, this.onPacket)
    } catch (err) {
      // A packet over maxPacketSize: a remote that reads verdicts is told so (it would otherwise resend it at every reconnect without knowing why).
      if (err instanceof PacketTooLargeError) this.refuseOrFail(this.ident === null ? new PacketTooLargeError(err.length, err.limit, 'before IDENTIFICATION') : err)
      else this.fail(err as Error)
    }
    if (!this.stopped) {
      this.budget()
      if (this.decoder.held > 0) this.progress()
    }
    this.reading = false
    if (this.stopped) return
    // What this chunk made (replies, acknowledgements) goes out now, in one write.
    if (this.flushState !== FLUSH_NONE) this.flushNow()
    // Only a connection that is up can fill the inbox: pausing a handshake would keep it from ever completing.
    if (this.up && (this.paused & PAUSE_INBOX) === 0) {
      const room = this.host.inboxRoom()
      if (room !== null) {
        this.pause(PAUSE_INBOX)
        this.host.log.debug('receive buffer full, reading paused', { conn: this.connection.id, peer: this.ident ?? undefined })
        void room.then(() => {
          this.lastRecv = Date.now()
          this.resume(PAUSE_INBOX)
        })
      }
    }
  }

  private onEnd (error: Error | null): void {
    if (error !== null) { this.fail(error); return }
    // A stream cut inside a packet is an error, unless we stopped acting on what it carries.
    if (this.ending || this.stopped) return
    try {
      this.decoder.end()
    } catch (e) {
      this.fail(e as Error)
    }
  }

  private pause (why: number): void {
    if (this.paused === 0) this.connection.pause()
    this.paused |= why
  }

  private resume (why: number): void {
    if ((this.paused & why) === 0) return
    this.paused &= ~why
    if (this.paused === 0 && !this.stopped) this.connection.resume()
  }

  /** While ending: only ACK frames count, and the connection ends once nothing is in flight. */
  private readonly onAckOnly = (buf: Uint8Array, start: number, end: number): boolean => {
    if (buf[start] === FrameType.Ack && end - start > 1 && (end - start - 1) % UUID_BYTES === 0) this.outbox!.acked(buf, start + 1, end)
    if (!this.awaitingAcks()) { this.endChannel(); return false }
    return true
  }

  /** finish() waits for the acknowledgements of the messages in flight on this connection. */
  private awaitingAcks (): boolean {
    return this.ending && this.up && this.acks && this.outbox !== null && this.outbox.inFlight > 0 && !this.endCalled && !this.cut
  }

  /** One packet, `buf[start..end)`; false when nothing more should be read from this connection. */
  private readonly onPacket = (buf: Uint8Array, start: number, end: number): boolean => {
    if (this.stopped || this.ending) return false
    const type = buf[start]
    // MESSAGE, the frame nearly every packet carries, is read in place; only once
    // the connection is up (between peers that give verdicts, the remote sends
    // its WELCOME before any message: one that sends messages without it, or
    // refuses this side after them, has them refused, not delivered).
    if (type === FrameType.Message && end - start >= 1 + MESSAGE_HEADER_BYTES && this.up) {
      this.host.received(this, buf, start + 1, end)
      if (this.madeWhileReading >= MID_CHUNK_MESSAGES && this.flushState === FLUSH_AT_CHUNK_END && !this.stopped) this.flushNow()
      return !this.stopped
    }
    // So is ACK (a well-formed one, on a connection that agreed to them).
    if (type === FrameType.Ack && this.acks && this.outbox !== null && end - start > 1 && (end - start - 1) % UUID_BYTES === 0) {
      if (this.outbox.acked(buf, start + 1, end)) this.want()
      return !this.stopped
    }
    const f = decodeFrame(buf.subarray(start, end))
    if (f === null) {
      this.host.log.debug('ignored a frame of unknown type', { conn: this.connection.id, peer: this.ident ?? undefined, type, bytes: end - start })
    } else {
      this.handle(f)
    }
    return !this.stopped && !this.ending
  }

  private handle (f: Frame): void {
    switch (f.type) {
      case FrameType.Message:
        // Sessions that are up read MESSAGE frames in place (see onPacket).
        this.fail(new ProtocolError(this.ident === null ? 'MESSAGE before IDENTIFICATION' : 'MESSAGE before WELCOME: the remote gives verdicts, and sends messages only once it has accepted this side'))
        return
      case FrameType.Ack:
        this.host.log.debug('ignored ACK: acknowledged delivery not agreed on this connection', { conn: this.connection.id, peer: this.ident ?? undefined })
        return
      case FrameType.Ping:
        this.host.log.debug('got PING, answering PONG', { conn: this.connection.id, peer: this.ident ?? undefined })
        this.pongOwed = true
        this.want()
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
          this.ending = true
          this.want()
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
        if (counts) {
          this.remoteFeatures = f.features
          this.remoteNonce = f.nonce === undefined ? null : f.nonce.slice()
          // A remote that announced its limit is sent no message over it: such a message is dropped ('too-large') rather than get this connection closed at every reconnect.
          if (f.maxPacketSize !== undefined && !this.host.plain) this.maxMessageData = f.maxPacketSize - 1 - MESSAGE_HEADER_BYTES
        }
        this.host.log.debug(counts ? 'got EXTENSIONS' : 'ignored EXTENSIONS outside the handshake', { conn: this.connection.id, version: f.version, features: f.features })
        return
      }
      case FrameType.Identification:
        this.host.log.debug('got IDENTIFICATION', { conn: this.connection.id, peer: f.identity })
        this.identify(f.identity)
        return
      case FrameType.Welcome:
        if (!this.verdicts || this.welcomed) return
        this.welcomed = true
        if (this.outbox !== null) this.goUp()
        return
      case FrameType.Refused:
        // Before IDENTIFICATION too: a remote that announced verdicts may refuse us from the start (our certificate).
        if (this.host.plain || (this.remoteFeatures & FEATURE_VERDICT) === 0) return
        this.fail(refusal(f.code, f.reason, this.ident))
    }
  }

  private identify (ident: string): void {
    if (!this.gotVersion) { this.fail(new ProtocolError('IDENTIFICATION before PROTOCOL_VERSION')); return }
    if (this.ident !== null) { this.fail(new ProtocolError('a second IDENTIFICATION on one connection')); return }
    if (ident.length === 0) { this.fail(new ProtocolError('empty identity in IDENTIFICATION')); return }
    this.acks = !this.host.plain && (this.remoteFeatures & FEATURE_ACK) !== 0
    this.verdicts = !this.host.plain && (this.remoteFeatures & FEATURE_VERDICT) !== 0
    const outbox = this.host.identified(this, ident)
    if (outbox instanceof Error) {
      if (this.verdicts) this.refuse(outbox)
      else this.fail(outbox)
      return
    }
    this.ident = ident
    this.outbox = outbox
    // Known now: its messages may be as large as this side accepts.
    this.decoder.maxPacketSize = this.host.maxPacketSize
    if (!this.verdicts) { this.goUp(); return }
    this.control.push(WELCOME)
    this.want()
    if (this.welcomed) this.goUp()
  }

  /** Both sides accepted each other: messages may flow. */
  private goUp (): void {
    if (this.up || this.stopped) return
    this.up = true
    if (this.handshakeTimer !== null) { clearTimeout(this.handshakeTimer); this.handshakeTimer = null }
    this.outbox!.attach(this)
    this.host.connected(this)
  }

  /** Tells the remote why it is refused (REFUSED), then ends the connection. */
  private refuse (error: Error): void {
    this.error = error
    this.host.failed(this, error)
    this.control.push({ type: FrameType.Refused, code: refusalCode(error), reason: refusalReason(error) })
    this.ending = true
    this.want()
  }

  /** Acknowledges a received message (its UUID: the 16 bytes at `at` of `uuid`) to the remote. */
  ack (uuid: Uint8Array, at: number): void {
    if (this.stopped) return
    const o = this.ackCount * UUID_BYTES
    let buf = this.ackBuf
    if (buf === null || o + UUID_BYTES > buf.length) {
      const bigger = new Uint8Array(buf === null ? 16 * 64 : buf.length * 2)
      if (buf !== null) bigger.set(buf.subarray(0, o))
      this.ackBuf = buf = bigger
    }
    for (let i = 0; i < UUID_BYTES; i++) buf[o + i] = uuid[at + i]!
    this.ackCount++
    // A remote that sends and does not read: once it is owed this many, stop reading it.
    if (this.ackCount >= MAX_OWED_ACKS && !this.connection.writable && (this.paused & PAUSE_OWED) === 0) {
      this.pause(PAUSE_OWED)
      this.host.log.warn('the remote does not read what it is sent: reading paused until it takes the acknowledgements it is owed', {
        conn: this.connection.id, peer: this.ident ?? undefined, owed: this.ackCount
      })
    }
    this.want()
  }

  // ---- writing ---------------------------------------------------------------

  /** OutboxReader: the outbox has something to send. */
  wake (when: Wake): void {
    if (this.reading) this.madeWhileReading++
    if (when === WAKE_NOW && !this.reading) this.flushNow()
    else this.want(when === WAKE_PROMPT)
  }

  /** There is something to send (`prompt`: a request or reply, which someone waits for): schedules the one flush (see the module's first lines). */
  private want (prompt = false): void {
    if (this.flushState !== FLUSH_NONE || this.stopped) return
    if (this.reading) { this.flushState = FLUSH_AT_CHUNK_END; return }
    const o = this.outbox
    if (prompt && !this.wroteSinceRead && (o === null || o.inFlight === 0)) {
      this.flushState = FLUSH_MICROTASK
      void SETTLED.then(this.onFlushTask)
    } else {
      this.flushState = FLUSH_IMMEDIATE
      this.immediate = setImmediate(this.onFlushTask)
    }
  }

  private readonly onFlushTask = (): void => {
    if (this.flushState === FLUSH_MICROTASK || this.flushState === FLUSH_IMMEDIATE) this.flushNow()
  }

  /** Writes one batch of what is to be sent, if the channel can take it. */
  private flushNow (): void {
    if (this.flushState === FLUSH_IMMEDIATE) clearImmediate(this.immediate)
    this.flushState = FLUSH_NONE
    this.madeWhileReading = 0
    if (this.stopped || this.endCalled) return
    const channel = this.connection
    if (!channel.isOpen) return
    if (!channel.writable) { this.awaitDrain(); return }
    const chunks = this.nextBatch()
    if (chunks === null) {
      if (this.ending && !this.awaitingAcks()) this.endChannel()
      return
    }
    const ok = channel.write(chunks)
    this.writes++
    if (this.pingWritten) {
      // The PING's wait starts once it is written; and what has left since then is ours, not the remote's answer.
      this.pingWritten = false
      this.pingBytesOut = channel.bytesOut
    }
    const batch = this.batch
    if (batch.length > 0) {
      this.wroteSinceRead = true
      this.outbox!.sent(batch, this.acks)
      batch.length = 0
    }
    if (!ok) { this.awaitDrain(); return }
    if (this.ending) { this.flushNow(); return }
    // More to send than one batch: the next one at the end of this turn, so reads get in between.
    if (this.hasMore()) this.want(false)
  }

  /** Whether the outbox has messages this connection may take now. */
  private hasMore (): boolean {
    const o = this.outbox
    if (o === null || !this.up || !o.hasSendable) return false
    return !this.acks || o.inFlight < this.host.maxUnacked
  }

  private awaitDrain (): void {
    if (this.draining) return
    this.draining = true
    void this.connection.drained().then(this.onDrained)
  }

  private readonly onDrained = (): void => {
    this.draining = false
    if (this.stopped) return
    this.flushNow()
    // What was owed is on its way: the remote may be read again.
    if (this.ackCount < MAX_OWED_ACKS) this.resume(PAUSE_OWED)
  }

  /**
   * The next batch to write: control frames, the PONG, acknowledgements, then
   * messages (into `this.batch`); null when there is nothing to send.
   */
  private nextBatch (): Uint8Array[] | null {
    const control = this.control
    const o = this.outbox
    const batch = this.batch
    if (o !== null && this.up && !this.ending) {
      const room = this.acks ? this.host.maxUnacked - o.inFlight : BATCH_MESSAGES
      if (room > 0) o.take(Math.min(room, BATCH_MESSAGES), BATCH_BYTES, batch, this.maxMessageData)
    }
    const acks = this.ackCount
    if (control.length === 0 && !this.pongOwed && acks === 0 && batch.length === 0) return null
    let bytes = 16 * control.length + ackPacketBytes(acks, ACK_BATCH) + (this.pongOwed ? 5 : 0)
    for (const e of batch) if (e.external !== null) bytes += messagePacketBytes(e.size)
    const w = this.writer
    w.reset(bytes)
    if (control.length > 0) {
      for (const f of control) {
        w.frame(f)
        if (f.type === FrameType.Ping) this.pingWritten = true
      }
      this.control = []
    }
    if (this.pongOwed) { w.frame(PONG); this.pongOwed = false }
    if (acks > 0) {
      w.acks(this.ackBuf!, acks, ACK_BATCH)
      this.ackCount = 0
    }
    if (o !== null && batch.length > 0) {
      for (const e of batch) {
        const data = e.external
        // A message in its slab is a whole packet there but for its TTL: it goes out as (part of) a view of the slab.
        if (data === null) {
          setMessageTtl(e.buf, e.at, o.wireTtl(e))
          w.framed(e.buf, e.packetStart, e.packetEnd)
        } else {
          w.message(e.buf, e.at, o.wireTtl(e), e.flags, data, 0, e.size)
        }
      }
    }
    return w.finish()
  }

  private endChannel (): void {
    if (this.endCalled) return
    this.endCalled = true
    void this.connection.end(this.error)
  }

  // ---- closing ---------------------------------------------------------------

  /** Closes the connection because of `error`. */
  fail (error: Error): void {
    if (this.stopped) return
    this.stopped = true
    this.error = error
    this.host.failed(this, error)
    this.connection.close(error)
  }

  /**
   * The unfinished packets of all connections hold more than the host's budget,
   * and this one holds the most: its packet is dropped, and the connection closed
   * (a remote that gives verdicts is told why first, with REFUSED).
   */
  overBudget (total: number, limit: number): void {
    const error = new ReceiveBudgetError(this.decoder.held + this.assembling, total, limit)
    this.decoder.discard()
    this.cut = true
    if (!this.stopped) this.refuseOrFail(error)
  }

  /** Closes the connection because of `error`, telling the remote why first (REFUSED) if it reads verdicts. */
  private refuseOrFail (error: Error): void {
    if (!this.host.plain && (this.remoteFeatures & FEATURE_VERDICT) !== 0 && !this.ending && !this.stopped) this.refuse(error)
    else this.fail(error)
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
   * Graceful close: sends what is owed but no new messages (acknowledgements
   * above all, so the remote does not resend what we received), waits for the
   * acknowledgements of the messages in flight (so what the remote got is not
   * reported lost), then ends the connection. Resolves when it is closed, or
   * after `timeout` ms when it is destroyed.
   */
  async finish (timeout: number): Promise<void> {
    if (this.stopped) return
    this.ending = true
    this.flushNow()
    const timer = setTimeout(() => { this.close() }, timeout)
    await this.connection.closed
    clearTimeout(timer)
  }

  // ---- keepalive ---------------------------------------------------------------

  private armKeepalive (delay: number): void {
    this.keepaliveTimer = setTimeout(() => { this.checkKeepalive() }, Math.max(1, delay))
  }

  private checkKeepalive (): void {
    const ka = this.host.keepalive
    if (ka === undefined || this.stopped) return
    const now = Date.now()
    if (this.paused !== 0) {
      // Paused only because the remote reads nothing of what it is sent: once no
      // byte has left for a keepalive's interval and wait, it is as good as gone.
      if (this.paused === PAUSE_OWED) {
        const out = this.connection.bytesOut
        if (this.deafSince < 0 || out !== this.deafBytesOut) { this.deafSince = now; this.deafBytesOut = out }
        else if (now - this.deafSince >= ka.interval + ka.wait) {
          this.fail(new KeepaliveTimeoutError(`the remote has read nothing for ${now - this.deafSince} ms (it was sent more than it took)`))
          return
        }
      } else {
        this.deafSince = -1
      }
      // Not reading is otherwise this side's doing (its inbox is full): the remote's silence says nothing then.
      this.lastRecv = now
      this.pingDeadline = -1
      this.armKeepalive(ka.interval)
      return
    }
    this.deafSince = -1
    if (this.pingDeadline >= 0) {
      if (this.pingSentAt >= 0 && this.lastRecv >= this.pingSentAt) {
        this.pingDeadline = -1
      } else if (now >= this.pingDeadline) {
        // Our own bytes still moving out ahead of the PING (a throttle, a large
        // message): the remote may not have it yet, so its wait starts again.
        const out = this.connection.bytesOut
        if (out !== this.pingBytesOut) {
          this.pingBytesOut = out
          this.pingDeadline = now + ka.wait
          this.armKeepalive(ka.wait)
          return
        }
        this.fail(new KeepaliveTimeoutError(`no answer within ${ka.wait} ms of a PING`))
        return
      } else {
        this.armKeepalive(this.pingDeadline - now)
        return
      }
    }
    const idle = now - this.lastRecv
    if (idle >= ka.interval) {
      this.pingDeadline = now + ka.wait
      this.pingSentAt = now
      this.pingBytesOut = this.connection.bytesOut
      this.host.log.debug('idle, sending PING', { conn: this.connection.id, peer: this.ident ?? undefined, idleMs: idle })
      this.control.push(PING)
      this.want()
      this.armKeepalive(ka.wait)
    } else {
      this.armKeepalive(ka.interval - idle)
    }
  }

  private onClosed (): void {
    this.stopped = true
    if (this.flushState === FLUSH_IMMEDIATE) clearImmediate(this.immediate)
    this.flushState = FLUSH_NONE
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer)
    if (this.keepaliveTimer !== null) clearTimeout(this.keepaliveTimer)
    this.handshakeTimer = this.keepaliveTimer = null
    this.outbox?.detach(this)
    this.host.receiveBudget.leave(this)
    this.host.ended(this)
  }
}

const PING: Frame = { type: FrameType.Ping }
const PONG: Frame = { type: FrameType.Pong }
/**
 * Longest this side stays silent while a packet arrives (see Session.progress()),
 * or its own keepalive interval if shorter. It cannot know the remote's keepalive,
 * so this is below what any remote is likely to use (interval + wait: 20 s by
 * default; a remote set to 200 and 200 ms is still heard in time); the PINGs it
 * costs, 5 bytes each, go only while a packet arrives and nothing else is written.
 */
const PROGRESS_PING_MS = 250
const WELCOME: Frame = { type: FrameType.Welcome }

/** The REFUSED code for a refusal. */
function refusalCode (error: Error): number {
  return error instanceof RedundantConnectionError ? RefusalCode.RedundantConnection
    : error instanceof DuplicateIdentityError ? RefusalCode.DuplicateIdentity
      : error instanceof IdentityMismatchError ? RefusalCode.IdentityMismatch
        : error instanceof PeerCertificateError ? RefusalCode.PeerCertificate
          : RefusalCode.Other
}

/** The text a REFUSED frame carries: the error's message, or for a certificate OpenSSL's reason code. */
function refusalReason (error: Error): string {
  return error instanceof PeerCertificateError ? error.reason : error.message
}

/** The error a REFUSED frame stands for, on the side that was refused. */
function refusal (code: number, reason: string, ident: string | null): HandshakeRefusedError {
  const told = `refused by the remote: ${reason}`
  let error: HandshakeRefusedError
  switch (code) {
    case RefusalCode.DuplicateIdentity: error = new DuplicateIdentityError(ident ?? '', told); break
    case RefusalCode.IdentityMismatch: error = new IdentityMismatchError(ident ?? '', [], told); break
    case RefusalCode.RedundantConnection: error = new RedundantConnectionError(told); break
    case RefusalCode.PeerCertificate: error = new PeerCertificateError(reason); break
    default: error = new HandshakeRefusedError(told)
  }
  error.byRemote = true
  return error
}

const FRAME_NAMES = new Map<number, string>([
  [FrameType.ProtocolVersion, 'PROTOCOL_VERSION'], [FrameType.IncompatibleProtocol, 'INCOMPATIBLE_PROTOCOL'],
  [FrameType.Identification, 'IDENTIFICATION'], [FrameType.Message, 'MESSAGE'], [FrameType.Ping, 'PING'],
  [FrameType.Pong, 'PONG'], [FrameType.Extensions, 'EXTENSIONS'], [FrameType.Ack, 'ACK'],
  [FrameType.Refused, 'REFUSED'], [FrameType.Welcome, 'WELCOME']
])

/** A frame type as PROTOCOL.md names it, for log lines. */
function frameName (type: number): string { return FRAME_NAMES.get(type) ?? `type ${type}` }
