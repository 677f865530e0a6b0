// The frame codec: each packet payload is one frame, `[1-byte type][body]`
// (PROTOCOL.md, "Frames"), plus this library's extension frames (docs/PROTOCOL.md).
// The layouts live here and nowhere else: the Frame objects for code that wants
// them (encodeFrame, decodeFrame and their batch transforms), and the in-place
// forms the messaging session uses on its one path: FrameWriter writes whole
// packets into one buffer per batch, and the MESSAGE accessors read a received
// message where it lies. Decoding never throws past a good frame: the frames
// before a bad one are handed on first, then the error.
import { Uint8ArrayList } from 'uint8arraylist'
import { ProtocolError } from '../errors.ts'
import { allocUnsafe, fromHex, readUint32, writeUint32 } from '../bytes.ts'
import { COPY_LIMIT, LENGTH_BYTES, writeLength, type PacketPayload } from './framing.ts'

/** FrameWriter's buffer before its first packet: it allocates when one comes. */
const NO_BYTES = new Uint8Array(0)

/** Frame type numbers. 0-5 are snakeMQ 1.6's; 16 and up are this library's extensions. */
export const FrameType = {
  ProtocolVersion: 0,
  IncompatibleProtocol: 1,
  Identification: 2,
  Message: 3,
  Ping: 4,
  Pong: 5,
  /** Extension: capabilities, sent after PROTOCOL_VERSION and before IDENTIFICATION. */
  Extensions: 16,
  /** Extension: acknowledgement of received messages by UUID. */
  Ack: 17,
  /** Extension: the remote's identity was refused, and why; the connection closes after it. */
  Refused: 18,
  /** Extension: the remote's identity was accepted; the connection is up once each side has the other's. */
  Welcome: 19
} as const
export type FrameType = typeof FrameType[keyof typeof FrameType]

/** The protocol version this library speaks. */
export const PROTOCOL_VERSION = 1
/** TTL on the wire meaning "never expires". */
export const TTL_INFINITE = 0xFFFFFFFF
/** Message flag: the sender keeps the message in persistent storage until delivered. */
export const FLAG_PERSISTENT = 0x1
/**
 * Message flag: the sender wants no acknowledgement and deals with repeats
 * itself (RPC); the receiver neither acknowledges nor filters it (docs/PROTOCOL.md, 5.5).
 */
export const FLAG_UNACKED = 0x2
/** Bytes in a message UUID. */
export const UUID_BYTES = 16
/** Bytes of a MESSAGE body before its data: UUID, TTL, flags. */
export const MESSAGE_HEADER_BYTES = UUID_BYTES + 8
/** Extension feature bit: acknowledged delivery (ACK frames, redelivery, dedup). */
export const FEATURE_ACK = 0x1
/**
 * Extension feature bit: the sender answers the remote's IDENTIFICATION with
 * WELCOME or REFUSED, and counts the connection as up only once it has the
 * remote's WELCOME.
 */
export const FEATURE_VERDICT = 0x2
/** Version of the extension frames' layouts: 2 adds the sender's nonce to EXTENSIONS, 3 its maxPacketSize after it. */
export const EXTENSIONS_VERSION = 3
/** Bytes of the per-process nonce in EXTENSIONS (layout version 2). */
export const NONCE_BYTES = 16
/** Longest reason text in REFUSED, in bytes of UTF-8. */
export const MAX_REASON_BYTES = 1024

/** Why a REFUSED frame refuses. */
export const RefusalCode = {
  /** Something else: the reason text says what. */
  Other: 0,
  /** A peer with this identity is connected already, and this connection is not provably from the same peer. */
  DuplicateIdentity: 1,
  /** The identity is not one the remote's verified certificate names (bindIdentityToCertificate). */
  IdentityMismatch: 2,
  /** The same two peers have another connection, which both keep. */
  RedundantConnection: 3,
  /** The remote's TLS certificate did not verify. */
  PeerCertificate: 4
} as const
export type RefusalCode = typeof RefusalCode[keyof typeof RefusalCode]

export interface ProtocolVersionFrame { type: typeof FrameType.ProtocolVersion, version: number }
export interface IncompatibleProtocolFrame { type: typeof FrameType.IncompatibleProtocol }
export interface IdentificationFrame { type: typeof FrameType.Identification, identity: string }
export interface MessageFrame {
  type: typeof FrameType.Message
  /** 16 bytes, or (when encoding) the same as 32 hex digits. */
  uuid: Uint8Array | string
  /** Whole seconds, 0..0xFFFFFFFF; 0xFFFFFFFF means no expiry. */
  ttl: number
  flags: number
  data: Uint8Array | Uint8ArrayList
}
export interface PingFrame { type: typeof FrameType.Ping }
export interface PongFrame { type: typeof FrameType.Pong }
export interface ExtensionsFrame {
  type: typeof FrameType.Extensions
  version: number
  features: number
  /** The sender's per-process nonce (layout version 2); absent from version 1 announcements. */
  nonce?: Uint8Array
  /** The largest packet payload the sender accepts (layout version 3, after the nonce); absent before. */
  maxPacketSize?: number
}
export interface RefusedFrame { type: typeof FrameType.Refused, code: number, reason: string }
export interface WelcomeFrame { type: typeof FrameType.Welcome }
export interface AckFrame {
  type: typeof FrameType.Ack
  /** Concatenated 16-byte UUIDs (at least one). */
  uuids: Uint8Array
}

export type Frame = ProtocolVersionFrame | IncompatibleProtocolFrame | IdentificationFrame | MessageFrame |
  PingFrame | PongFrame | ExtensionsFrame | AckFrame | RefusedFrame | WelcomeFrame

const EMPTY_FRAMES: Record<number, Uint8Array> = {
  [FrameType.IncompatibleProtocol]: Uint8Array.of(FrameType.IncompatibleProtocol),
  [FrameType.Ping]: Uint8Array.of(FrameType.Ping),
  [FrameType.Pong]: Uint8Array.of(FrameType.Pong),
  [FrameType.Welcome]: Uint8Array.of(FrameType.Welcome)
}

const utf8 = new TextDecoder('utf-8', { fatal: true })
/** For text that is only ever shown (a refusal's reason): bad bytes become U+FFFD. */
const lenientUtf8 = new TextDecoder('utf-8')

/** Largest identity accepted from the network, in bytes of UTF-8. */
export const MAX_IDENTITY_BYTES = 1024

/** Encodes one frame as a packet payload. Message data is not copied when it is large. */
export function encodeFrame (frame: Frame): PacketPayload {
  switch (frame.type) {
    case FrameType.Message: {
      const len = frame.data.byteLength
      if (len >= 4096) {
        const head = allocUnsafe(1 + MESSAGE_HEADER_BYTES)
        writeMessageHead(head, 0, messageUuid(frame.uuid), 0, frame.ttl, frame.flags)
        return new Uint8ArrayList(head, frame.data)
      }
      const buf = allocUnsafe(1 + MESSAGE_HEADER_BYTES + len)
      writeMessageHead(buf, 0, messageUuid(frame.uuid), 0, frame.ttl, frame.flags)
      if (frame.data instanceof Uint8Array) buf.set(frame.data, 1 + MESSAGE_HEADER_BYTES)
      else {
        let pos = 1 + MESSAGE_HEADER_BYTES
        for (const part of frame.data) { buf.set(part, pos); pos += part.length }
      }
      return buf
    }
    case FrameType.ProtocolVersion: {
      const buf = allocUnsafe(5)
      buf[0] = FrameType.ProtocolVersion
      writeUint32(buf, 1, frame.version >>> 0)
      return buf
    }
    case FrameType.Identification: {
      const ident = utf8Encoder.encode(frame.identity)
      const buf = allocUnsafe(1 + ident.length)
      buf[0] = FrameType.Identification
      buf.set(ident, 1)
      return buf
    }
    case FrameType.Extensions: {
      const nonce = frame.nonce
      if (nonce !== undefined && nonce.length !== NONCE_BYTES) throw new ProtocolError(`an EXTENSIONS nonce must be ${NONCE_BYTES} bytes`)
      const limit = frame.maxPacketSize
      if (limit !== undefined && (nonce === undefined || !Number.isInteger(limit) || limit < 0 || limit > 0xFFFFFFFF)) {
        throw new ProtocolError('an EXTENSIONS maxPacketSize is a 32-bit count after the nonce')
      }
      const buf = allocUnsafe(6 + (nonce?.length ?? 0) + (limit !== undefined ? 4 : 0))
      buf[0] = FrameType.Extensions
      buf[1] = frame.version
      writeUint32(buf, 2, frame.features >>> 0)
      if (nonce !== undefined) buf.set(nonce, 6)
      if (limit !== undefined) writeUint32(buf, 6 + NONCE_BYTES, limit)
      return buf
    }
    case FrameType.Refused: {
      let reason = utf8Encoder.encode(frame.reason)
      if (reason.length > MAX_REASON_BYTES) reason = utf8Encoder.encode(frame.reason.slice(0, MAX_REASON_BYTES / 4))
      const buf = allocUnsafe(2 + reason.length)
      buf[0] = FrameType.Refused
      buf[1] = frame.code
      buf.set(reason, 2)
      return buf
    }
    case FrameType.Welcome:
      return EMPTY_FRAMES[frame.type]!
    case FrameType.Ack: {
      const buf = allocUnsafe(1 + frame.uuids.length)
      buf[0] = FrameType.Ack
      buf.set(frame.uuids, 1)
      return buf
    }
    case FrameType.IncompatibleProtocol:
    case FrameType.Ping:
    case FrameType.Pong:
      return EMPTY_FRAMES[frame.type]!
  }
}

const utf8Encoder = new TextEncoder()

/** A Frame's UUID as 16 bytes (it may be given as 32 hex digits). */
function messageUuid (uuid: Uint8Array | string): Uint8Array {
  const bytes = typeof uuid === 'string' ? fromHex(uuid) : uuid
  if (bytes === null || bytes.length !== UUID_BYTES) throw new ProtocolError(typeof uuid === 'string' ? 'a message UUID must be 32 hex digits' : 'a message UUID must be 16 bytes')
  return bytes
}

// ---- MESSAGE, in place ---------------------------------------------------------
// A MESSAGE frame is `[type 3][uuid 16][ttl u32][flags u32][data]`; the readers
// take the offset of the UUID, where a received message's fields are found.

/** Writes a MESSAGE frame's type, UUID (the 16 bytes at `uuidAt` of `uuid`), TTL and flags at `at`; the data goes after them. */
export function writeMessageHead (buf: Uint8Array, at: number, uuid: Uint8Array, uuidAt: number, ttl: number, flags: number): void {
  buf[at] = FrameType.Message
  for (let i = 0; i < UUID_BYTES; i++) buf[at + 1 + i] = uuid[uuidAt + i]!
  writeUint32(buf, at + 1 + UUID_BYTES, ttl >>> 0)
  writeUint32(buf, at + 5 + UUID_BYTES, flags >>> 0)
}

/** The wire TTL of the MESSAGE whose UUID is at `uuidAt`. */
export function messageTtl (buf: Uint8Array, uuidAt: number): number { return readUint32(buf, uuidAt + UUID_BYTES) }
/** The flags of the MESSAGE whose UUID is at `uuidAt`. */
export function messageFlags (buf: Uint8Array, uuidAt: number): number { return readUint32(buf, uuidAt + UUID_BYTES + 4) }
/** Where the data of the MESSAGE whose UUID is at `uuidAt` starts. */
export function messageDataAt (uuidAt: number): number { return uuidAt + MESSAGE_HEADER_BYTES }

/** Bytes of a whole MESSAGE packet before its UUID: the length header and the type. */
export const MESSAGE_UUID_OFFSET = LENGTH_BYTES + 1
/** Bytes of a whole MESSAGE packet before its data. */
export const MESSAGE_PACKET_HEAD = MESSAGE_UUID_OFFSET + MESSAGE_HEADER_BYTES

/**
 * Makes a whole MESSAGE packet around the UUID at `uuidAt` of `buf`, for data
 * of `size` bytes (placed at messageDataAt(uuidAt) by the caller, or sent after
 * the header from elsewhere): the length header and type before the UUID, the
 * flags after it. The TTL is written with setMessageTtl() when it is sent.
 */
export function frameMessageInPlace (buf: Uint8Array, uuidAt: number, size: number, flags: number): void {
  writeLength(buf, uuidAt - MESSAGE_UUID_OFFSET, 1 + MESSAGE_HEADER_BYTES + size)
  buf[uuidAt - 1] = FrameType.Message
  writeUint32(buf, uuidAt + UUID_BYTES + 4, flags >>> 0)
}

/** Sets the TTL of the MESSAGE whose UUID is at `uuidAt` (see frameMessageInPlace). */
export function setMessageTtl (buf: Uint8Array, uuidAt: number, ttl: number): void {
  writeUint32(buf, uuidAt + UUID_BYTES, ttl >>> 0)
}

/**
 * Decodes one packet payload. Returns null for frame types this side does not
 * know (they are ignored, as PROTOCOL.md requires); throws ProtocolError for a
 * frame too short for its type. Message data and UUIDs are views into `payload`.
 */
export function decodeFrame (payload: Uint8Array): Frame | null {
  if (payload.length === 0) throw new ProtocolError('empty packet: a frame needs at least its type byte')
  const type = payload[0]!
  switch (type) {
    case FrameType.Message: {
      if (payload.length < 1 + MESSAGE_HEADER_BYTES) {
        throw new ProtocolError(`MESSAGE frame of ${payload.length - 1} bytes is shorter than its ${MESSAGE_HEADER_BYTES}-byte header`)
      }
      return {
        type,
        uuid: payload.subarray(1, 1 + UUID_BYTES),
        ttl: messageTtl(payload, 1),
        flags: messageFlags(payload, 1),
        data: payload.subarray(messageDataAt(1))
      }
    }
    case FrameType.ProtocolVersion: {
      if (payload.length !== 5) throw new ProtocolError(`PROTOCOL_VERSION body must be 4 bytes, got ${payload.length - 1}`)
      return { type, version: readUint32(payload, 1) }
    }
    case FrameType.Identification: {
      const body = payload.subarray(1)
      if (body.length > MAX_IDENTITY_BYTES) throw new ProtocolError(`IDENTIFICATION of ${body.length} bytes exceeds ${MAX_IDENTITY_BYTES}`)
      let identity: string
      try {
        identity = utf8.decode(body)
      } catch (err) {
        throw new ProtocolError('IDENTIFICATION is not valid UTF-8', { cause: err })
      }
      return { type, identity }
    }
    case FrameType.IncompatibleProtocol:
    case FrameType.Ping:
    case FrameType.Pong:
      // snakeMQ ignores any body on these; so do we.
      return { type }
    case FrameType.Extensions: {
      // A body too short to be ours is some other extension using this number: it announces nothing.
      if (payload.length < 6) return { type, version: 0, features: 0 }
      const f: ExtensionsFrame = { type, version: payload[1]!, features: readUint32(payload, 2) }
      // A nonce from layout version 2 on; anything after it is for later versions.
      if (f.version >= 2 && payload.length >= 6 + NONCE_BYTES) f.nonce = payload.subarray(6, 6 + NONCE_BYTES)
      // The sender's maxPacketSize from layout version 3 on.
      if (f.version >= 3 && payload.length >= 6 + NONCE_BYTES + 4) f.maxPacketSize = readUint32(payload, 6 + NONCE_BYTES)
      return f
    }
    case FrameType.Refused: {
      if (payload.length < 2) throw new ProtocolError('REFUSED needs its code')
      const body = payload.subarray(2, 2 + MAX_REASON_BYTES)
      return { type, code: payload[1]!, reason: lenientUtf8.decode(body) }
    }
    case FrameType.Welcome:
      return { type }
    case FrameType.Ack: {
      const body = payload.subarray(1)
      if (body.length === 0 || body.length % UUID_BYTES !== 0) {
        throw new ProtocolError(`ACK body must be a non-empty multiple of ${UUID_BYTES} bytes, got ${body.length}`)
      }
      return { type, uuids: body }
    }
    default:
      return null
  }
}

/** Transform: batches of frames in, batches of packet payloads out. */
export function encodeFrames () {
  return async function * (source: AsyncIterable<readonly Frame[]> | Iterable<readonly Frame[]>): AsyncGenerator<PacketPayload[]> {
    for await (const frames of source) {
      const out = new Array<PacketPayload>(frames.length)
      for (let i = 0; i < frames.length; i++) out[i] = encodeFrame(frames[i]!)
      if (out.length > 0) yield out
    }
  }
}

/**
 * Transform: batches of packet payloads in, batches of frames out. Unknown frame
 * types are skipped. On a malformed frame, the good frames before it are yielded
 * first, then the ProtocolError is thrown.
 */
export function decodeFrames () {
  return async function * (source: AsyncIterable<readonly Uint8Array[]> | Iterable<readonly Uint8Array[]>): AsyncGenerator<Frame[]> {
    for await (const packets of source) {
      const frames: Frame[] = []
      let error: unknown = null
      for (const p of packets) {
        try {
          const f = decodeFrame(p)
          if (f !== null) frames.push(f)
        } catch (err) {
          error = err
          break
        }
      }
      if (frames.length > 0) yield frames
      if (error !== null) throw error
    }
  }
}

// ---- Writing packets ------------------------------------------------------------

/** Bytes a MESSAGE packet takes in a FrameWriter's buffer: header, and the data unless it goes uncopied. */
export function messagePacketBytes (dataBytes: number): number {
  return LENGTH_BYTES + 1 + MESSAGE_HEADER_BYTES + (dataBytes >= COPY_LIMIT ? 0 : dataBytes)
}

/** Bytes the ACK packets for `count` UUIDs take, `perFrame` UUIDs at most in each. */
export function ackPacketBytes (count: number, perFrame: number): number {
  return count === 0 ? 0 : count * UUID_BYTES + Math.ceil(count / perFrame) * (LENGTH_BYTES + 1)
}

/**
 * Writes whole packets (length header and frame) one after the other into one
 * buffer: the bytes `encodeFrames()` + `encodePackets()` would produce, without
 * a Frame object and a copy per message in between. Message data of COPY_LIMIT
 * bytes or more is not copied but becomes a chunk of its own, and packets that
 * are already whole in a buffer of the caller's (framed()) are not copied either:
 * neighbours in one buffer go out as one view of it.
 */
export class FrameWriter {
  private buf: Uint8Array = NO_BYTES
  private pos = 0
  private start = 0
  private chunks: Uint8Array[] = []
  /** Framed packets not yet made a chunk: `runBuf[runStart .. runEnd)`. */
  private runBuf: Uint8Array | null = null
  private runStart = 0
  private runEnd = 0

  /** `capacity`: the bytes expected in the writer's own buffer (see messagePacketBytes); it is allocated when first needed, and grows if more come. */
  constructor (private capacity = 0) {}

  /** Starts a new batch, expecting `capacity` bytes (see the constructor): one writer serves a connection for its life. */
  reset (capacity: number): void {
    this.capacity = capacity
    this.buf = NO_BYTES
    this.pos = this.start = 0
    this.chunks = []
    this.runBuf = null
  }

  /** True while nothing was added. */
  get empty (): boolean { return this.pos === 0 && this.chunks.length === 0 && this.runBuf === null }

  private room (n: number): void {
    if (this.runBuf !== null) this.endRun()
    if (this.pos + n <= this.buf.length) return
    if (this.pos > this.start) this.chunks.push(this.buf.subarray(this.start, this.pos))
    this.buf = allocUnsafe(Math.max(n, this.buf.length === 0 ? this.capacity : this.buf.length * 2))
    this.pos = this.start = 0
  }

  /** What was written to the own buffer since the last chunk becomes one. */
  private endSegment (): void {
    if (this.pos === this.start) return
    const b = this.buf
    this.chunks.push(this.start === 0 && this.pos === b.length ? b : b.subarray(this.start, this.pos))
    this.start = this.pos
  }

  private endRun (): void {
    const b = this.runBuf!
    this.chunks.push(this.runStart === 0 && this.runEnd === b.length ? b : b.subarray(this.runStart, this.runEnd))
    this.runBuf = null
  }

  /**
   * Whole packets already in `buf[start .. end)` (see frameMessageInPlace): sent
   * as a view, joined to the previous one when they follow it in the same buffer.
   * Do not modify them until they are written.
   */
  framed (buf: Uint8Array, start: number, end: number): void {
    if (buf === this.runBuf && start === this.runEnd) { this.runEnd = end; return }
    if (this.runBuf !== null) this.endRun()
    this.endSegment()
    this.runBuf = buf
    this.runStart = start
    this.runEnd = end
  }

  /** Any frame, through encodeFrame (for the few that are not messages or ACKs). */
  frame (f: Frame): void {
    const payload = encodeFrame(f)
    const len = payload.byteLength
    this.room(LENGTH_BYTES + len)
    writeLength(this.buf, this.pos, len)
    this.pos += LENGTH_BYTES
    if (payload instanceof Uint8Array) {
      this.buf.set(payload, this.pos)
      this.pos += len
    } else {
      for (const part of payload) { this.buf.set(part, this.pos); this.pos += part.length }
    }
  }

  /**
   * A MESSAGE: the UUID's 16 bytes at `uuidAt` of `uuid`, the data
   * `data[dataAt .. dataAt + size)`. Data of COPY_LIMIT bytes or more is not
   * copied: it becomes a chunk of its own, so do not modify it until it is written.
   */
  message (uuid: Uint8Array, uuidAt: number, ttl: number, flags: number, data: Uint8Array, dataAt: number, size: number): void {
    const copy = size < COPY_LIMIT
    this.room(LENGTH_BYTES + 1 + MESSAGE_HEADER_BYTES + (copy ? size : 0))
    const b = this.buf
    writeLength(b, this.pos, 1 + MESSAGE_HEADER_BYTES + size)
    writeMessageHead(b, this.pos + LENGTH_BYTES, uuid, uuidAt, ttl, flags)
    const p = this.pos + LENGTH_BYTES + 1 + MESSAGE_HEADER_BYTES
    if (copy) {
      if (size <= 64) {
        for (let i = 0; i < size; i++) b[p + i] = data[dataAt + i]!
      } else {
        b.set(dataAt === 0 && size === data.length ? data : data.subarray(dataAt, dataAt + size), p)
      }
      this.pos = p + size
    } else {
      this.chunks.push(b.subarray(this.start, p))
      this.pos = this.start = p
      this.chunks.push(dataAt === 0 && size === data.length ? data : data.subarray(dataAt, dataAt + size))
    }
  }

  /** ACK frames for the `count` UUIDs at the start of `uuids` (16 bytes each), at most `perFrame` in one frame. */
  acks (uuids: Uint8Array, count: number, perFrame: number): void {
    for (let i = 0; i < count; i += perFrame) {
      const n = Math.min(perFrame, count - i)
      const bytes = n * UUID_BYTES
      this.room(LENGTH_BYTES + 1 + bytes)
      const b = this.buf
      writeLength(b, this.pos, 1 + bytes)
      let p = this.pos + LENGTH_BYTES
      b[p++] = FrameType.Ack
      const from = i * UUID_BYTES
      // A few UUIDs (a request/reply's) are copied by hand: cheaper than making a view to set() from.
      if (bytes <= 128) {
        for (let j = 0; j < bytes; j++) b[p + j] = uuids[from + j]!
      } else {
        b.set(uuids.subarray(from, from + bytes), p)
      }
      this.pos = p + bytes
    }
  }

  /** The chunks to write, in order. */
  finish (): Uint8Array[] {
    if (this.runBuf !== null) this.endRun()
    // Sized exactly (the common case): the buffer itself, no view of it.
    this.endSegment()
    return this.chunks
  }
}
