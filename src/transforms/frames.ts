// The frame codec: each packet payload is one frame, `[1-byte type][body]`
// (PROTOCOL.md, "Frames"), plus this library's extension frames (docs/PROTOCOL.md).
// Decoding works on whole batches and never throws past a good frame: the frames
// before a bad one are handed on first, then the error.
import { Uint8ArrayList } from 'uint8arraylist'
import { ProtocolError } from '../errors.ts'
import type { PacketPayload } from './framing.ts'

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
  Ack: 17
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
/** Version of the extension frames' layouts. */
export const EXTENSIONS_VERSION = 1

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
export interface ExtensionsFrame { type: typeof FrameType.Extensions, version: number, features: number }
export interface AckFrame {
  type: typeof FrameType.Ack
  /** Concatenated 16-byte UUIDs (at least one). */
  uuids: Uint8Array
}

export type Frame = ProtocolVersionFrame | IncompatibleProtocolFrame | IdentificationFrame | MessageFrame |
  PingFrame | PongFrame | ExtensionsFrame | AckFrame

const EMPTY_FRAMES: Record<number, Uint8Array> = {
  [FrameType.IncompatibleProtocol]: Uint8Array.of(FrameType.IncompatibleProtocol),
  [FrameType.Ping]: Uint8Array.of(FrameType.Ping),
  [FrameType.Pong]: Uint8Array.of(FrameType.Pong)
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Largest identity accepted from the network, in bytes of UTF-8. */
export const MAX_IDENTITY_BYTES = 1024

/** Encodes one frame as a packet payload. Message data is not copied when it is large. */
export function encodeFrame (frame: Frame): PacketPayload {
  switch (frame.type) {
    case FrameType.Message: {
      const len = frame.data.byteLength
      if (len >= 4096) {
        const head = Buffer.allocUnsafe(1 + MESSAGE_HEADER_BYTES)
        writeMessageHeader(head, frame)
        return new Uint8ArrayList(head, frame.data)
      }
      const buf = Buffer.allocUnsafe(1 + MESSAGE_HEADER_BYTES + len)
      writeMessageHeader(buf, frame)
      if (frame.data instanceof Uint8Array) buf.set(frame.data, 1 + MESSAGE_HEADER_BYTES)
      else {
        let pos = 1 + MESSAGE_HEADER_BYTES
        for (const part of frame.data) { buf.set(part, pos); pos += part.length }
      }
      return buf
    }
    case FrameType.ProtocolVersion: {
      const buf = Buffer.allocUnsafe(5)
      buf[0] = FrameType.ProtocolVersion
      buf.writeUInt32BE(frame.version >>> 0, 1)
      return buf
    }
    case FrameType.Identification: {
      const ident = Buffer.from(frame.identity, 'utf8')
      const buf = Buffer.allocUnsafe(1 + ident.length)
      buf[0] = FrameType.Identification
      buf.set(ident, 1)
      return buf
    }
    case FrameType.Extensions: {
      const buf = Buffer.allocUnsafe(6)
      buf[0] = FrameType.Extensions
      buf[1] = frame.version
      buf.writeUInt32BE(frame.features >>> 0, 2)
      return buf
    }
    case FrameType.Ack: {
      const buf = Buffer.allocUnsafe(1 + frame.uuids.length)
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

function writeMessageHeader (buf: Buffer, frame: MessageFrame): void {
  buf[0] = FrameType.Message
  if (typeof frame.uuid === 'string') {
    if (buf.write(frame.uuid, 1, UUID_BYTES, 'hex') !== UUID_BYTES) throw new ProtocolError('a message UUID must be 32 hex digits')
  } else {
    if (frame.uuid.length !== UUID_BYTES) throw new ProtocolError('a message UUID must be 16 bytes')
    buf.set(frame.uuid, 1)
  }
  buf.writeUInt32BE(frame.ttl >>> 0, 17)
  buf.writeUInt32BE(frame.flags >>> 0, 21)
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
      const view = new DataView(payload.buffer, payload.byteOffset + 17, 8)
      return {
        type,
        uuid: payload.subarray(1, 17),
        ttl: view.getUint32(0, false),
        flags: view.getUint32(4, false),
        data: payload.subarray(1 + MESSAGE_HEADER_BYTES)
      }
    }
    case FrameType.ProtocolVersion: {
      if (payload.length !== 5) throw new ProtocolError(`PROTOCOL_VERSION body must be 4 bytes, got ${payload.length - 1}`)
      return { type, version: new DataView(payload.buffer, payload.byteOffset + 1, 4).getUint32(0, false) }
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
      return { type, version: payload[1]!, features: new DataView(payload.buffer, payload.byteOffset + 2, 4).getUint32(0, false) }
    }
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
