// The payloads `smq peer` generates and how received data is shown. The rule is
// part of the command's contract: other test peers (snakeMQ's own, in Python)
// generate the same bytes, so payloads can be compared byte for byte.
import { createHash } from 'node:crypto'

/** Received data up to this many bytes is printed as hex; longer data as its SHA-256. */
export const MAX_HEX_BYTES = 64

/**
 * Message `index` (from 0): the 4-byte big-endian index, then bytes
 * `(index + j) % 256` for j = 0, 1, ..., the whole cut to `size` bytes.
 */
export function generatedPayload (index: number, size: number): Uint8Array {
  const data = Buffer.allocUnsafe(size)
  const head = Buffer.allocUnsafe(4)
  head.writeUInt32BE(index >>> 0, 0)
  for (let j = 0; j < size && j < 4; j++) data[j] = head[j]!
  for (let j = 0; j + 4 < size; j++) data[j + 4] = (index + j) % 256
  return data
}

/** The `data_hex` or `sha256` field of a recv event for `data`. */
export function describeData (data: Uint8Array): { data_hex: string } | { sha256: string } {
  return data.byteLength <= MAX_HEX_BYTES
    ? { data_hex: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex') }
    : { sha256: createHash('sha256').update(data).digest('hex') }
}
