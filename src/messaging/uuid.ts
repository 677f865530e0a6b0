// Message UUIDs (random, version 4), handled as 32 hex digits everywhere above
// the frame codec. Random bytes are drawn in bulk: one crypto call per 1,024 UUIDs.
import { randomFillSync } from 'node:crypto'

const POOL_UUIDS = 1024
const pool = Buffer.allocUnsafe(16 * POOL_UUIDS)
let offset = pool.length

/** A new random UUID as 32 lowercase hex digits. */
export function newUuid (): string {
  if (offset === pool.length) { randomFillSync(pool); offset = 0 }
  pool[offset + 6] = (pool[offset + 6]! & 0x0f) | 0x40
  pool[offset + 8] = (pool[offset + 8]! & 0x3f) | 0x80
  const hex = pool.toString('hex', offset, offset + 16)
  offset += 16
  return hex
}

/** The 16 bytes of `bytes` (a view of at least 16 bytes at `start`) as hex. */
export function uuidHex (bytes: Uint8Array, start = 0): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, 16).toString('hex')
}
