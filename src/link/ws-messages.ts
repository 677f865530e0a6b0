// How the byte stream goes into WebSocket messages, on Node and in a browser
// alike: each write() becomes binary messages of at most MAX_MESSAGE_BYTES, so
// message boundaries mean nothing to the protocol (a packet may span messages,
// a message may hold many packets) and a receiver's buffer for one message stays
// small whatever the packet sizes.
import { concatBytes } from '../bytes.ts'
import { InvalidArgumentError } from '../errors.ts'

/** The largest WebSocket message this library sends, in bytes (1 MiB). */
export const MAX_MESSAGE_BYTES = 1024 * 1024

/**
 * The largest WebSocket message a connection takes unless its options say
 * otherwise (`websocket.maxPayload`), in bytes: 4 MiB, well above what a peer of
 * this library sends.
 */
export const DEFAULT_MAX_PAYLOAD = 4 * MAX_MESSAGE_BYTES

/** Bytes a WebSocket channel holds unsent before write() says it is congested. */
export const WEBSOCKET_HIGH_WATER = 64 * 1024

/** The messages that carry `chunks`, back to back: one when they fit, else slices of MAX_MESSAGE_BYTES. */
export function toMessages (chunks: Uint8Array | readonly Uint8Array[]): Uint8Array[] {
  const list = chunks instanceof Uint8Array ? [chunks] : chunks
  let total = 0
  for (const c of list) total += c.length
  if (total === 0) return []
  const whole = concatBytes(list.length === 1 ? list : list.filter((c) => c.length > 0))
  if (total <= MAX_MESSAGE_BYTES) return [whole]
  const out: Uint8Array[] = []
  for (let at = 0; at < total; at += MAX_MESSAGE_BYTES) out.push(whole.subarray(at, Math.min(total, at + MAX_MESSAGE_BYTES)))
  return out
}

/** Checks a `maxPayload` option: a positive integer number of bytes, at least MAX_MESSAGE_BYTES. */
export function checkMaxPayload (value: unknown, what: string): number | string {
  if (value === undefined) return DEFAULT_MAX_PAYLOAD
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < MAX_MESSAGE_BYTES) {
    return `${what}: websocket.maxPayload must be an integer of at least ${MAX_MESSAGE_BYTES} bytes (the largest message a peer sends), got ${typeof value === 'number' ? value : typeof value}`
  }
  return value
}

/** A connector's `url`, checked (a string, a URL, ws: or wss:, no fragment); InvalidArgumentError says what is wrong. */
export function webSocketUrl (url: unknown): URL {
  if (typeof url !== 'string') throw new InvalidArgumentError(`connect: url must be a ws:// or wss:// URL string, got ${typeof url}`)
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch (err) {
    throw new InvalidArgumentError(`connect: url ${JSON.stringify(url)} is not a URL`, { cause: err })
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new InvalidArgumentError(`connect: url must start with ws:// or wss://, got ${JSON.stringify(url)}`)
  // A WebSocket URL has no fragment: ws and browsers alike throw a SyntaxError at every attempt to connect to one.
  if (parsed.href.includes('#')) throw new InvalidArgumentError(`connect: a WebSocket url cannot have a fragment (#...), got ${JSON.stringify(url)}`)
  return parsed
}
