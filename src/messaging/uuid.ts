// Message UUIDs (random, version 4). At the API they are 32 hex digits; inside,
// a UUID stays as its 16 bytes wherever it already is (a queue slab, a received
// packet), and hex strings are made only when someone asks for one. Random bytes
// are drawn in bulk, and turned into hex in bulk: one call each per 1,024 UUIDs.
import { allocUnsafe, toHex } from '../bytes.ts'

const POOL_UUIDS = 1024
/** Random UUIDs, already marked as version 4, handed out in order. */
const pool = allocUnsafe(16 * POOL_UUIDS)
/** The whole pool as hex: a UUID's hex digits are a slice of it. */
let poolHex = ''
let offset = pool.length

function refill (): void {
  globalThis.crypto.getRandomValues(pool)
  for (let o = 0; o < pool.length; o += 16) {
    pool[o + 6] = (pool[o + 6]! & 0x0f) | 0x40
    pool[o + 8] = (pool[o + 8]! & 0x3f) | 0x80
  }
  poolHex = toHex(pool)
  offset = 0
}

/** Writes a new random UUID's 16 bytes into `target` at `at`; returns it as 32 hex digits, or '' when `hex` is false. */
export function fillUuid (target: Uint8Array, at: number, hex = true): string {
  if (offset === pool.length) refill()
  const o = offset
  for (let i = 0; i < 16; i++) target[at + i] = pool[o + i]!
  offset = o + 16
  return hex ? poolHex.slice(o * 2, o * 2 + 32) : ''
}

/** A new random UUID as 32 lowercase hex digits. */
export function newUuid (): string {
  if (offset === pool.length) refill()
  const o = offset
  offset += 16
  return poolHex.slice(o * 2, o * 2 + 32)
}

/** The 16 bytes of `bytes` at `start` as hex. */
export function uuidHex (bytes: Uint8Array, start = 0): string {
  return toHex(bytes, start, start + 16)
}

/**
 * The 16 bytes at `start` as a 16-character string, one character per byte: a
 * cheap Map key (half the size of hex, and made without a native call).
 */
export function uuidKey (bytes: Uint8Array, start = 0): string {
  const b = bytes
  const s = start
  return String.fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!,
    b[s + 8]!, b[s + 9]!, b[s + 10]!, b[s + 11]!, b[s + 12]!, b[s + 13]!, b[s + 14]!, b[s + 15]!)
}

/** True when the 16 bytes at `a` of `x` equal the 16 bytes at `b` of `y`. */
export function sameUuid (x: Uint8Array, a: number, y: Uint8Array, b: number): boolean {
  for (let i = 0; i < 16; i++) if (x[a + i] !== y[b + i]) return false
  return true
}
