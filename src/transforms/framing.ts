// Packet framing: a 4-byte big-endian length, then that many bytes of payload
// (PROTOCOL.md, "Packets"). Both directions work on batches: one socket chunk in,
// an array of every packet it completed out, so the cost per packet is a few
// synchronous operations rather than a promise per packet per stage.
import { Uint8ArrayList } from 'uint8arraylist'
import { PacketTooLargeError, TruncatedPacketError } from '../errors.ts'
import { allocUnsafe, copyBytes, readUint32, writeUint32 } from '../bytes.ts'

/** Default largest packet payload accepted: 64 MiB. */
export const DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024

/**
 * Packets of at least this many bytes that span chunks are assembled in place:
 * copied into a buffer of their own as their chunks arrive, each byte once.
 */
const ASSEMBLE_IN_PLACE = 64 * 1024

/**
 * A packet up to this size gets its buffer when its header arrives; a larger one
 * once half of it has arrived (the chunks before that are held as they came), so
 * an unfinished packet holds at most this, or about 1.5 times the bytes that came
 * for it, whatever its header announced. (Waiting for half of every packet cost a
 * 1 MiB one a third more time: its first half was copied again from memory the
 * cache no longer held.)
 */
const RESERVE_AT_ONCE = 2 * 1024 * 1024

/** Whether a packet of `len` bytes, `arrived` of them here, is to be assembled in its own buffer from now on. */
function assembleNow (len: number, arrived: number): boolean {
  return len >= ASSEMBLE_IN_PLACE && (len <= RESERVE_AT_ONCE || arrived * 2 >= len)
}

/** Packets with payloads of at least this many bytes are written without being copied. */
export const COPY_LIMIT = 16 * 1024

/** Bytes of a packet's length header. */
export const LENGTH_BYTES = 4

/** Writes a packet's length header (4 bytes, big-endian) at `at`: the one place it is written. */
export const writeLength: (buf: Uint8Array, at: number, length: number) => void = writeUint32
/** Reads a packet's length header at `at`. */
export const readLength: (buf: Uint8Array, at: number) => number = readUint32

/** A length encoder for `it-length-prefixed`'s `encode` (`lengthEncoder` option): 4 bytes, big-endian. */
export function uint32BEEncode (value: number): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(LENGTH_BYTES)
  writeLength(buf, 0, value)
  return buf
}
uint32BEEncode.bytes = 4

/** A length decoder for `it-length-prefixed`'s `decode` (`lengthDecoder` option): 4 bytes, big-endian. */
export function uint32BEDecode (data: Uint8ArrayList | Uint8Array): number {
  if (data.byteLength < 4) throw new RangeError('need 4 bytes for the length')
  if (data instanceof Uint8Array) return readLength(data, 0)
  return data.getUint32(0, false)
}
uint32BEDecode.bytes = 4

export interface PacketDecoderOptions {
  /** Largest payload accepted, in bytes; a larger length header throws before any payload is buffered. Default 64 MiB. */
  maxPacketSize?: number
}

/**
 * A synchronous, stateful packet decoder. Feed it chunks as they arrive; each
 * call returns the packets completed so far. Payloads that lie inside one chunk
 * are views into it (no copy); only packets spread over chunks are copied.
 */
export class PacketDecoder {
  /** Largest payload accepted; may be changed between packets (it applies to the next length header read). */
  maxPacketSize: number
  private readonly pending = new Uint8ArrayList()
  /** Length of the packet being assembled, or -1 while reading its header. */
  private need = -1
  /** A large packet being assembled in place, and how much of it has arrived. */
  private big: Uint8Array | null = null
  private bigFilled = 0

  constructor (options: PacketDecoderOptions = {}) {
    this.maxPacketSize = options.maxPacketSize ?? DEFAULT_MAX_PACKET_SIZE
  }

  /** Bytes received but not yet part of a whole packet. */
  get buffered (): number { return this.pending.byteLength + (this.big !== null ? this.bigFilled : 0) }

  /** Bytes of memory the unfinished packet holds: what came for it, or the whole buffer it is being assembled in. */
  get held (): number { return this.big !== null ? this.big.length : this.pending.byteLength }

  /** Forgets the unfinished packet (its memory with it). The stream cannot be decoded after this: call it only on a connection that reads no more. */
  discard (): void {
    this.pending.consume(this.pending.byteLength)
    this.big = null
    this.bigFilled = 0
    this.need = -1
  }

  /** Returns every packet completed by `chunk`; throws PacketTooLargeError on a header over the limit. */
  push (chunk: Uint8Array, out: Uint8Array[] = []): Uint8Array[] {
    this.each(chunk, (buf, start, end) => { out.push(buf.subarray(start, end)); return true })
    return out
  }

  /**
   * Like `push`, without making a view per packet: calls `onPacket(buf, start, end)`
   * for every packet `chunk` completes, its payload being `buf[start..end)` (a
   * packet inside the chunk is read where it lies). The bytes stay valid after the
   * call, as push's views do. If `onPacket` returns false, the rest of the chunk is
   * dropped and `each` returns false. Throws PacketTooLargeError on a header over
   * the limit, after the packets before it were handed on.
   */
  each (chunk: Uint8Array, onPacket: (buf: Uint8Array, start: number, end: number) => boolean): boolean {
    let offset = 0
    if (this.big !== null) {
      offset = this.fill(chunk, 0)
      if (offset < 0) return true
      const big = this.big
      this.big = null
      if (!onPacket(big, 0, big.length)) return false
    }
    if (this.need >= 0 || this.pending.byteLength > 0) {
      // Finish the packet begun in earlier chunks.
      if (this.need < 0) {
        const missing = 4 - this.pending.byteLength
        if (chunk.length < missing) { this.pending.append(chunk); return true }
        this.pending.append(chunk.subarray(0, missing))
        offset = missing
        this.readHeader()
      }
      const missing = this.need - this.pending.byteLength
      if (chunk.length - offset < missing) {
        this.pending.append(chunk.subarray(offset))
        // Half of a very large packet is here: from now on it is copied into its own buffer as it comes.
        if (assembleNow(this.need, this.pending.byteLength)) this.assembleInPlace()
        return true
      }
      this.need = -1
      if (this.pending.byteLength === 0) {
        if (!onPacket(chunk, offset, offset + missing)) return false
      } else {
        this.pending.append(chunk.subarray(offset, offset + missing))
        // Joined into a buffer of the kind the chunks are (a Buffer in Node), not the plain
        // Uint8Array the list would make: packets of one kind keep the code reading them monomorphic.
        const packet = copyBytes(this.pending)
        this.pending.consume(this.pending.byteLength)
        if (!onPacket(packet, 0, packet.length)) return false
      }
      offset += missing
    }
    // Whole packets inside this chunk are read where they lie.
    const end = chunk.length
    while (end - offset >= 4) {
      const len = readLength(chunk, offset)
      if (len > this.maxPacketSize) throw new PacketTooLargeError(len, this.maxPacketSize)
      if (end - offset - 4 < len) {
        if (assembleNow(len, end - offset - 4)) {
          // A large packet: copied into its own buffer as its chunks arrive.
          this.big = allocUnsafe(len)
          this.bigFilled = 0
          this.fill(chunk, offset + 4)
          return true
        }
        break
      }
      offset += 4
      if (!onPacket(chunk, offset, offset + len)) return false
      offset += len
    }
    if (offset < end) {
      this.pending.append(chunk.subarray(offset))
      if (this.pending.byteLength >= 4) this.readHeader()
    }
    return true
  }

  /** Throws TruncatedPacketError when bytes of an unfinished packet are left. */
  end (): void {
    if (this.big !== null) throw new TruncatedPacketError(`the stream ended inside a packet (${this.bigFilled} of ${this.big.length} bytes)`)
    if (this.need >= 0 || this.pending.byteLength > 0) {
      throw new TruncatedPacketError(`the stream ended inside a packet (${this.pending.byteLength} bytes left over)`)
    }
  }

  /** Copies the head of `chunk` from `offset` into the packet being assembled; the offset after it, or -1 if the chunk was used up. */
  private fill (chunk: Uint8Array, offset: number): number {
    const big = this.big!
    const n = Math.min(big.length - this.bigFilled, chunk.length - offset)
    big.set(n === chunk.length ? chunk : chunk.subarray(offset, offset + n), this.bigFilled)
    this.bigFilled += n
    return this.bigFilled === big.length ? offset + n : -1
  }

  /** Moves the packet begun in `pending` into a buffer of its full length, where the rest is copied as it comes. */
  private assembleInPlace (): void {
    const big = allocUnsafe(this.need)
    let at = 0
    for (const part of this.pending) { big.set(part, at); at += part.length }
    this.pending.consume(this.pending.byteLength)
    this.need = -1
    this.big = big
    this.bigFilled = at
  }

  /** Takes the 4-byte header off `pending`; the limit is checked before any payload is kept. */
  private readHeader (): void {
    const len = this.pending.getUint32(0, false)
    if (len > this.maxPacketSize) throw new PacketTooLargeError(len, this.maxPacketSize)
    this.pending.consume(4)
    this.need = len
  }
}

/**
 * Transform: byte chunks in, batches of packet payloads out (one batch per chunk
 * that completed at least one packet). Throws PacketTooLargeError (after yielding
 * the packets before the bad header), or TruncatedPacketError if the source ends
 * inside a packet.
 */
export function decodePackets (options: PacketDecoderOptions = {}) {
  return async function * (source: AsyncIterable<Uint8Array | Uint8ArrayList> | Iterable<Uint8Array | Uint8ArrayList>): AsyncGenerator<Uint8Array[]> {
    const decoder = new PacketDecoder(options)
    for await (const chunk of source) {
      const batch: Uint8Array[] = []
      try {
        if (chunk instanceof Uint8Array) decoder.push(chunk, batch)
        else for (const part of chunk) decoder.push(part, batch)
      } catch (err) {
        // The packets completed before a bad header are handed on first, as decodeFrames does with frames.
        if (batch.length > 0) yield batch
        throw err
      }
      if (batch.length > 0) yield batch
    }
    decoder.end()
  }
}

/** A packet payload to send: bytes, or a list of byte chunks written back to back. */
export type PacketPayload = Uint8Array | Uint8ArrayList

/**
 * Encodes a batch of payloads as packets. Small packets are copied into one
 * buffer; large payloads are passed through as their own chunks (no copy), so the
 * result is a list of chunks to write in order.
 */
export function encodePacketBatch (batch: readonly PacketPayload[]): Uint8Array[] {
  let copied = 0
  for (const p of batch) copied += p.byteLength >= COPY_LIMIT ? 4 : 4 + p.byteLength
  const buf = allocUnsafe(copied)
  const chunks: Uint8Array[] = []
  let pos = 0
  let start = 0
  for (const p of batch) {
    const len = p.byteLength
    writeLength(buf, pos, len)
    pos += LENGTH_BYTES
    if (len >= COPY_LIMIT) {
      chunks.push(buf.subarray(start, pos))
      start = pos
      if (p instanceof Uint8Array) chunks.push(p)
      else for (const part of p) chunks.push(part)
    } else if (p instanceof Uint8Array) {
      buf.set(p, pos)
      pos += len
    } else {
      for (const part of p) { buf.set(part, pos); pos += part.length }
    }
  }
  if (pos > start) chunks.push(buf.subarray(start, pos))
  return chunks
}

/** Transform: batches of payloads in, batches of byte chunks out, ready for a connection's sink. */
export function encodePackets () {
  return async function * (source: AsyncIterable<readonly PacketPayload[]> | Iterable<readonly PacketPayload[]>): AsyncGenerator<Uint8Array[]> {
    for await (const batch of source) {
      if (batch.length > 0) yield encodePacketBatch(batch)
    }
  }
}
