// Byte helpers that work on plain Uint8Arrays in any JavaScript runtime. Where
// Node's Buffer is present (found on globalThis, never imported) its native
// routines are used for what they do faster: uninitialised allocation and hex.
// A browser build uses the portable fallbacks.

interface NodeBufferLike {
  allocUnsafe (size: number): Uint8Array<ArrayBuffer>
  from (bytes: ArrayBufferLike, offset: number, length: number): Uint8Array & { toString (encoding: 'hex'): string }
}

const NodeBuffer = (globalThis as { Buffer?: NodeBufferLike }).Buffer

/**
 * `size` bytes whose contents are undefined until written. Small sizes come from
 * Node's shared pool; every byte must be written before it is read or sent.
 */
export const allocUnsafe: (size: number) => Uint8Array<ArrayBuffer> = NodeBuffer !== undefined
  ? (size) => NodeBuffer.allocUnsafe(size)
  : (size) => new Uint8Array(size)

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/** `bytes[start..end)` as lowercase hex. */
export function toHex (bytes: Uint8Array, start = 0, end = bytes.length): string {
  if (NodeBuffer !== undefined) return NodeBuffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('hex')
  let s = ''
  for (let i = start; i < end; i++) s += HEX[bytes[i]!]!
  return s
}

/** Hex digits as bytes; null when `hex` is not an even number of hex digits. */
export function fromHex (hex: string): Uint8Array | null {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return null
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return out
}

const encoder = new TextEncoder()

/** A string as UTF-8 (lone surrogates become U+FFFD). */
export function utf8 (text: string): Uint8Array { return encoder.encode(text) }

/** Chunks back to back in a new array (never one of them); `chunks` is read twice. */
export function copyBytes (chunks: Iterable<Uint8Array>): Uint8Array {
  let n = 0
  for (const c of chunks) n += c.length
  const out = allocUnsafe(n)
  let pos = 0
  for (const c of chunks) { out.set(c, pos); pos += c.length }
  return out
}

/** Chunks back to back in one array. */
export function concatBytes (chunks: readonly Uint8Array[]): Uint8Array {
  return chunks.length === 1 ? chunks[0]! : copyBytes(chunks)
}

/** A 4-byte big-endian unsigned integer at `at`. */
export function readUint32 (b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0
}

/** Writes `v` as a 4-byte big-endian unsigned integer at `at`. */
export function writeUint32 (b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24
  b[at + 1] = (v >>> 16) & 0xff
  b[at + 2] = (v >>> 8) & 0xff
  b[at + 3] = v & 0xff
}
