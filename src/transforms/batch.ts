// The fast path behind `encodeFrames()` + `encodePackets()`: frames written with
// their 4-byte length headers straight into one buffer per batch, the bytes the two
// transforms would produce, without a Frame object, an encoded frame and a copy
// per message in between. Messaging's sessions use it; the transforms stay for
// anyone composing their own pipeline.
import { encodeFrame, FrameType, MESSAGE_HEADER_BYTES, UUID_BYTES, type Frame } from './frames.ts'

/** Message data of at least this many bytes is not copied but written as a chunk of its own (as encodePacketBatch does). */
export const BATCH_COPY_LIMIT = 16 * 1024

/** Bytes a MESSAGE packet takes in a batch buffer: header, and the data unless it goes uncopied. */
export function messagePacketBytes (dataBytes: number): number {
  return 4 + 1 + MESSAGE_HEADER_BYTES + (dataBytes >= BATCH_COPY_LIMIT ? 0 : dataBytes)
}

/** Bytes the ACK packets for `count` UUIDs take, `perFrame` UUIDs at most in each. */
export function ackPacketBytes (count: number, perFrame: number): number {
  return count === 0 ? 0 : count * UUID_BYTES + Math.ceil(count / perFrame) * 5
}

export class PacketBatch {
  private buf: Buffer
  private pos = 0
  private start = 0
  private readonly chunks: Uint8Array[] = []

  /** `capacity`: the bytes expected (see messagePacketBytes); the buffer grows if more come. */
  constructor (capacity: number) {
    this.buf = Buffer.allocUnsafe(capacity)
  }

  /** True while nothing was added. */
  get empty (): boolean { return this.pos === 0 && this.chunks.length === 0 }

  private room (n: number): void {
    if (this.pos + n <= this.buf.length) return
    if (this.pos > this.start) this.chunks.push(this.buf.subarray(this.start, this.pos))
    this.buf = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2))
    this.pos = this.start = 0
  }

  /** A 4-byte big-endian value (a length header, a TTL, flags). */
  private u32 (v: number): void {
    const b = this.buf
    const p = this.pos
    b[p] = v >>> 24
    b[p + 1] = (v >>> 16) & 0xff
    b[p + 2] = (v >>> 8) & 0xff
    b[p + 3] = v & 0xff
    this.pos = p + 4
  }

  /** Any frame, through encodeFrame (for the few that are not messages or ACKs). */
  frame (f: Frame): void {
    const payload = encodeFrame(f)
    const len = payload.byteLength
    this.room(4 + len)
    this.u32(len)
    if (payload instanceof Uint8Array) {
      this.buf.set(payload, this.pos)
      this.pos += len
    } else {
      for (const part of payload) { this.buf.set(part, this.pos); this.pos += part.length }
    }
  }

  /**
   * A MESSAGE frame: the UUID's 16 bytes at `uuidAt` of `uuid`, the data
   * `data[dataAt .. dataAt + size)`. Data of BATCH_COPY_LIMIT bytes or more is not
   * copied: it becomes a chunk of its own, so do not modify it until it is written.
   */
  message (uuid: Uint8Array, uuidAt: number, ttl: number, flags: number, data: Uint8Array, dataAt: number, size: number): void {
    const copy = size < BATCH_COPY_LIMIT
    this.room(4 + 1 + MESSAGE_HEADER_BYTES + (copy ? size : 0))
    this.u32(1 + MESSAGE_HEADER_BYTES + size)
    const b = this.buf
    let p = this.pos
    b[p++] = FrameType.Message
    for (let i = 0; i < UUID_BYTES; i++) b[p + i] = uuid[uuidAt + i]!
    this.pos = p + UUID_BYTES
    this.u32(ttl >>> 0)
    this.u32(flags >>> 0)
    p = this.pos
    if (copy) {
      if (size <= 64) {
        for (let i = 0; i < size; i++) b[p + i] = data[dataAt + i]!
      } else {
        b.set(dataAt === 0 && size === data.length ? data : data.subarray(dataAt, dataAt + size), p)
      }
      this.pos = p + size
    } else {
      this.chunks.push(b.subarray(this.start, p))
      this.start = p
      this.chunks.push(dataAt === 0 && size === data.length ? data : data.subarray(dataAt, dataAt + size))
    }
  }

  /** ACK frames for the `count` UUIDs at the start of `uuids` (16 bytes each), at most `perFrame` in one frame. */
  acks (uuids: Uint8Array, count: number, perFrame: number): void {
    for (let i = 0; i < count; i += perFrame) {
      const n = Math.min(perFrame, count - i)
      const bytes = n * UUID_BYTES
      this.room(5 + bytes)
      this.u32(1 + bytes)
      const b = this.buf
      let p = this.pos
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
    // Sized exactly (the common case): the buffer itself, no view of it.
    if (this.start === 0 && this.pos === this.buf.length) this.chunks.push(this.buf)
    else if (this.pos > this.start) this.chunks.push(this.buf.subarray(this.start, this.pos))
    this.start = this.pos
    return this.chunks
  }
}
