// The RPC envelope: how calls, signals and their replies ride inside messaging
// messages. Laid out in docs/RPC.md; in short, every RPC message's data is
//
//   "smqrpc" | version (1) | kind (1) | request id (16) | kind-specific body
//
// The magic differs from snakeMQ's `rpcreq`/`rpcrep`, so a Python snakeMQ peer's
// RPC hook never tries to unpickle our messages (snakeMQ's own format, spoken to
// such peers, is src/rpc/snakemq.ts). Request kinds are below 0x80 and
// reply kinds have the high bit set: the server and the client each take their half
// of the RPC messages from one shared Messaging by looking at one byte.
import { InvalidArgumentError } from '../errors.ts'
import { allocUnsafe } from '../bytes.ts'

/** The first bytes of every RPC message of this library: ASCII `smqrpc`. */
export const RPC_MAGIC: Uint8Array = Uint8Array.from([0x73, 0x6d, 0x71, 0x72, 0x70, 0x63])
/** The version of the RPC envelope this library writes and reads. */
export const RPC_VERSION = 1
/** Bytes before the request id: magic, version, kind. */
export const HEADER_BYTES = 8
/** A request id: 8 bytes naming the RpcClient instance, then an 8-byte big-endian call counter. */
export const ID_BYTES = 16
/** Bytes of the request id that name the client instance. */
export const CLIENT_ID_BYTES = 8
/** Where the body of a message starts. */
export const BODY_OFFSET = HEADER_BYTES + ID_BYTES
/** Object and method names are at most this many bytes of UTF-8 (their length is one byte on the wire). */
export const MAX_NAME_BYTES = 255

/** The byte after the version. */
export const Kind = {
  /** A call that wants a reply: names, then the encoded argument array. */
  Call: 0x01,
  /** A signal, no reply: names, then the encoded argument array. */
  Signal: 0x02,
  /** The call returned: the encoded result. */
  Result: 0x81,
  /** The called method threw or rejected: the encoded error. */
  Thrown: 0x82,
  /** The call could not be made, or its outcome not sent: a status byte, then a UTF-8 detail. */
  Failed: 0x83
} as const
export type Kind = typeof Kind[keyof typeof Kind]

/** The status byte of a Failed reply. */
export const Status = {
  UnknownObject: 1,
  UnknownMethod: 2,
  /** A method marked as a signal was called as a regular method. */
  CallKind: 3,
  /** The request's envelope was malformed. */
  BadRequest: 4,
  /** The arguments could not be decoded, or were not an array. */
  BadArguments: 5,
  /** The result (or thrown error) could not be encoded. */
  BadResult: 6,
  /** The call ran, but its result is no longer held by the server. */
  ResultLost: 7,
  /** The request's envelope version is not one the server speaks. */
  UnsupportedVersion: 8,
  /** The method threw, and the server does not transfer exceptions. */
  Withheld: 9,
  /** The method did not finish within the timeout it was registered with (the detail: the timeout in ms). */
  Timeout: 10
} as const
export type Status = typeof Status[keyof typeof Status]

/** True for data that starts with the RPC magic (any version, any kind). */
export function hasMagic (data: Uint8Array): boolean {
  if (data.length < RPC_MAGIC.length) return false
  for (let i = 0; i < RPC_MAGIC.length; i++) if (data[i] !== RPC_MAGIC[i]) return false
  return true
}

/** True for an RPC message meant for a client (a reply kind); messages too short to say go to the server. */
export function isReply (data: Uint8Array): boolean {
  return data.length > 7 && (data[7]! & 0x80) !== 0
}

const utf8 = new TextEncoder()
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

// Not in TypeScript's ES2023 lib, present since Node 20.
type WellFormedString = string & { isWellFormed(): boolean }

/** The wire form of an object or method name; InvalidArgumentError for one that cannot be sent. */
export function encodeName (name: unknown, what: string): Uint8Array {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError(`${what} must be a non-empty string`)
  if (!(name as WellFormedString).isWellFormed()) throw new InvalidArgumentError(`${what} must be well-formed Unicode (it has a lone surrogate)`)
  const bytes = utf8.encode(name)
  if (bytes.length > MAX_NAME_BYTES) throw new InvalidArgumentError(`${what} is ${bytes.length} bytes of UTF-8; at most ${MAX_NAME_BYTES} are allowed`)
  return bytes
}

/** The names part of a Call or Signal body: length-prefixed object name, then method name. */
export function nameSegment (object: Uint8Array, method: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + object.length + method.length)
  out[0] = object.length
  out.set(object, 1)
  out[1 + object.length] = method.length
  out.set(method, 2 + object.length)
  return out
}

/** Writes the magic, the version and `kind` at the start of `out`. */
export function writeHeader (out: Uint8Array, kind: Kind): void {
  // Byte by byte: for a few bytes, TypedArray.set costs more than the copy.
  for (let i = 0; i < RPC_MAGIC.length; i++) out[i] = RPC_MAGIC[i]!
  out[6] = RPC_VERSION
  out[7] = kind
}

/** Allocates a message of `bodyBytes` body bytes with its header written; the caller writes the id and the body. */
export function allocMessage (kind: Kind, bodyBytes: number): Uint8Array {
  // allocUnsafe: small messages come from Node's pool where there is one, and every byte is written below or by the caller.
  const out = allocUnsafe(BODY_OFFSET + bodyBytes)
  writeHeader(out, kind)
  return out
}

/** Writes a request id: the client's 8 bytes and the counter (an integer below 2^53) big-endian. */
export function writeId (out: Uint8Array, clientId: Uint8Array, counter: number): void {
  for (let i = 0; i < CLIENT_ID_BYTES; i++) out[HEADER_BYTES + i] = clientId[i]!
  const high = Math.floor(counter / 0x1_0000_0000)
  const low = counter - high * 0x1_0000_0000
  const at = HEADER_BYTES + CLIENT_ID_BYTES
  out[at] = high >>> 24; out[at + 1] = high >>> 16; out[at + 2] = high >>> 8; out[at + 3] = high
  out[at + 4] = low >>> 24; out[at + 5] = low >>> 16; out[at + 6] = low >>> 8; out[at + 7] = low
}

/** Copies the request id of `request` into `out`. */
export function copyId (out: Uint8Array, request: Uint8Array): void {
  for (let i = HEADER_BYTES; i < BODY_OFFSET; i++) out[i] = request[i]!
}

/** Copies `src` into `out` at `at` (byte by byte when small: see writeHeader). */
export function copyBytes (out: Uint8Array, src: Uint8Array, at: number): void {
  if (src.length > 64) { out.set(src, at); return }
  for (let i = 0; i < src.length; i++) out[at + i] = src[i]!
}

/** Reads the counter of a request id (the caller checked the length). */
export function readCounter (data: Uint8Array): number {
  const at = HEADER_BYTES + CLIENT_ID_BYTES
  const high = ((data[at]! << 24) | (data[at + 1]! << 16) | (data[at + 2]! << 8) | data[at + 3]!) >>> 0
  const low = ((data[at + 4]! << 24) | (data[at + 5]! << 16) | (data[at + 6]! << 8) | data[at + 7]!) >>> 0
  // Below 2^32 (nearly always) no multiplication, which would make a heap number of a small integer.
  return high === 0 ? low : high * 0x1_0000_0000 + low
}

/** A reply to the request whose message is `request`, with `body` after the id. */
export function replyMessage (request: Uint8Array, kind: Kind, body: Uint8Array): Uint8Array {
  const out = allocMessage(kind, body.length)
  copyId(out, request)
  copyBytes(out, body, BODY_OFFSET)
  return out
}

/** A Failed reply: status byte, then `detail` as UTF-8 (cut to 1,024 characters). */
export function failedMessage (request: Uint8Array, status: Status, detail: string): Uint8Array {
  const text = utf8.encode(detail.length > 1024 ? detail.slice(0, 1024) : detail)
  const body = new Uint8Array(1 + text.length)
  body[0] = status
  body.set(text, 1)
  return replyMessage(request, Kind.Failed, body)
}

/** A Call or Signal read from the wire. */
export interface Request {
  kind: number
  object: string
  method: string
  /** Where the encoded argument array starts. */
  argsOffset: number
}

/** Reads a name at `at`; returns the name and the offset after it, or a reason it is malformed. */
function readName (data: Uint8Array, at: number, what: string): [string, number] | string {
  if (at >= data.length) return `the message ends before the ${what} name`
  const length = data[at]!
  const start = at + 1
  const end = start + length
  if (length === 0) return `an empty ${what} name`
  if (end > data.length) return `the ${what} name runs past the end of the message`
  let s = ''
  for (let i = start; i < end; i++) {
    const b = data[i]!
    if (b >= 0x80) {
      try {
        return [utf8Strict.decode(data.subarray(start, end)), end]
      } catch {
        return `the ${what} name is not valid UTF-8`
      }
    }
    s += String.fromCharCode(b)
  }
  return [s, end]
}

/** Parses the names of a Call or Signal (the caller checked magic, version and length); a string says why it is malformed. */
export function parseRequest (data: Uint8Array): Request | string {
  const object = readName(data, BODY_OFFSET, 'object')
  if (typeof object === 'string') return object
  const method = readName(data, object[1], 'method')
  if (typeof method === 'string') return method
  return { kind: data[7]!, object: object[0], method: method[0], argsOffset: method[1] }
}

/** A plain Uint8Array view of `data` from `offset` on (no copy; a Buffer's subarray would make a Buffer). */
export function tail (data: Uint8Array, offset: number): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset + offset, data.length - offset)
}

const utf8Lenient = new TextDecoder('utf-8', { ignoreBOM: true })

/** The detail text of a Failed reply (invalid UTF-8 replaced: it is only ever shown). */
export function failedDetail (data: Uint8Array): string {
  return data.length <= BODY_OFFSET + 1 ? '' : utf8Lenient.decode(data.subarray(BODY_OFFSET + 1))
}
