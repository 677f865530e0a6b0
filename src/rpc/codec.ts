// The value codec of RPC: turns call arguments, results and errors into bytes and
// back. Bytes come from the network, so decoding runs no code, builds only plain
// data, and gives an RpcCodecError (never a crash, hang or huge allocation) for
// anything that is not a valid encoding within the limits.
//
// Why our own format and not a library: msgpackr and cbor-x (same author) carry
// Map/Set/Date/BigInt/Error, but their decoders by default compile record readers
// with `new Function` from key names read off the wire, rename a `__proto__` key to
// `__proto_` instead of keeping it as data, have no depth limit (deep nesting is a
// stack overflow, i.e. a RangeError rather than a typed error) and no size or count
// limits, and silently pack functions as undefined. @msgpack/msgpack rejects
// `__proto__` and `constructor` keys outright and needs extension code for every
// type beyond JSON. Meeting every requirement would take wrapping and patching that
// is larger than this file, so this is a small tagged binary format instead:
//
//   one tag byte per value, then its payload; lengths and counts are unsigned
//   LEB128 varints (at most 8 bytes, at most 2^53 - 1); floats are 8 bytes,
//   little-endian; strings are UTF-8 (well-formed only, both ways).
//
//   0x00 undefined  0x01 null  0x02 false  0x03 true
//   0x80 | n        integer n, 0 <= n < 128
//   0x04 varint     integer n, 128 <= n <= 2^53 - 1
//   0x05 varint     integer -n, 1 <= n <= 2^53 - 1
//   0x06 float64    any other number: fractions, -0, NaN, +-Infinity, unsafe integers
//   0x07 string     varint byte length, UTF-8 bytes
//   0x08 bytes      varint length, bytes (a Uint8Array; a Buffer decodes as Uint8Array)
//   0x09 array      varint count, values (holes of sparse arrays travel as undefined)
//   0x0a object     varint count, (key: varint length + UTF-8, value) pairs
//   0x0b Map        varint count, (key, value) pairs
//   0x0c Set        varint count, values
//   0x0d Date       float64 milliseconds since the epoch (NaN: invalid date)
//   0x0e bigint     varint length, magnitude big-endian, non-negative
//   0x0f bigint     varint length, magnitude big-endian, negated
//   0x10 error      name (varint length + UTF-8), message (same), varint count,
//                   (key, value) pairs: stack, cause, code, errors, own data props
//
// Decoders accept non-minimal varints; encoders write minimal ones except for an
// error's property count. There is no version byte: that belongs to the envelope.
import { InvalidArgumentError } from '../errors.ts'
import { allocUnsafe, toHex } from '../bytes.ts'
import { RpcCodecError, isNativeError } from './errors.ts'

/** Limits that bound what one encoded value may cost; the same on both sides by default. */
export interface RpcCodecOptions {
  /**
   * How deeply containers (arrays, objects, Maps, Sets, errors) may nest, in
   * levels: a top-level `[]` is 1 level, `[[]]` is 2. A deeper value is refused.
   * Default 64.
   */
  maxDepth?: number
  /**
   * The most bytes one encoded value may take: `encodeValue` refuses to produce
   * more and `decodeValue` refuses longer input before reading it. In bytes;
   * default 16 MiB.
   */
  maxBytes?: number
  /**
   * The most values one encoded value may hold, counting itself, every array
   * element, object property value, Map key and Map value, Set member and error
   * property once. This bounds the memory a small input can make the decoder build
   * (an empty object is 2 bytes on the wire and tens in memory). Default 1,048,576.
   */
  maxValues?: number
}

/** The limits used where an option is not given. */
export const defaultCodecLimits: Readonly<Required<RpcCodecOptions>> = Object.freeze({
  maxDepth: 64,
  maxBytes: 16 * 1024 * 1024,
  maxValues: 1024 * 1024
})

const T_UNDEFINED = 0x00
const T_NULL = 0x01
const T_FALSE = 0x02
const T_TRUE = 0x03
const T_UINT = 0x04
const T_NEGINT = 0x05
const T_FLOAT64 = 0x06
const T_STRING = 0x07
const T_BYTES = 0x08
const T_ARRAY = 0x09
const T_OBJECT = 0x0a
const T_MAP = 0x0b
const T_SET = 0x0c
const T_DATE = 0x0d
const T_BIGINT = 0x0e
const T_NEGBIGINT = 0x0f
const T_ERROR = 0x10
const T_FIXINT = 0x80

/** Error classes rebuilt by name (and AggregateError); any other name gives a plain Error with that name. */
const ERROR_CLASSES = new Map<string, ErrorConstructor>([
  ['Error', Error],
  ['TypeError', TypeError],
  ['RangeError', RangeError],
  ['SyntaxError', SyntaxError],
  ['ReferenceError', ReferenceError],
  ['EvalError', EvalError],
  ['URIError', URIError]
])
/** Error properties that are non-enumerable on native errors, and stay so when decoded. */
const HIDDEN_ERROR_PROPS = new Set(['name', 'message', 'stack', 'cause', 'errors'])
/** Error properties encoded on their own, not as one of the other own properties. */
const SPECIAL_ERROR_PROPS = new Set(['name', 'message', 'stack', 'cause', 'code', 'errors'])

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
const scratchFloat = new Float64Array(1)
const scratchBytes = new Uint8Array(scratchFloat.buffer)
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const utf8Encoder = new TextEncoder()

// Not in TypeScript's ES2023 lib, present since Node 20 (V8 11.3).
type WellFormedString = string & { isWellFormed(): boolean, toWellFormed(): string }

/** Slots of the decoder's cache of short ASCII object keys (a power of two). */
const KEY_CACHE_SIZE = 4096
const keyCache: Array<string | undefined> = new Array<string | undefined>(KEY_CACHE_SIZE).fill(undefined)

/** Encoder buffers above this size are dropped after use rather than kept for the next call. */
const KEEP_BUFFER_LIMIT = 1024 * 1024
const INITIAL_BUFFER_SIZE = 8 * 1024

interface Limits { maxDepth: number, maxBytes: number, maxValues: number }

function resolveLimits (options: RpcCodecOptions | undefined): Limits {
  if (options === undefined) return defaultCodecLimits
  return {
    maxDepth: verifyLimit(options, 'maxDepth'),
    maxBytes: verifyLimit(options, 'maxBytes'),
    maxValues: verifyLimit(options, 'maxValues')
  }
}

function verifyLimit (options: RpcCodecOptions, name: keyof RpcCodecOptions): number {
  const value = options[name]
  if (value === undefined) return defaultCodecLimits[name]
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${String(value)}`)
  }
  return value
}

/**
 * Encodes a value to bytes. Throws an RpcCodecError for a value it cannot carry
 * or one over the limits. The result may be a view into a shared pooled
 * ArrayBuffer (as a Buffer's is): use its byteOffset and byteLength.
 */
export function encodeValue (value: unknown, options?: RpcCodecOptions): Uint8Array {
  return encodeAfter(0, value, options)
}

/**
 * @internal `encodeValue(value)` after `headroom` bytes left for the caller to
 * fill (an RPC envelope), so the message is made without a second copy.
 */
export function encodeAfter (headroom: number, value: unknown, options?: RpcCodecOptions): Uint8Array {
  const limits = resolveLimits(options)
  // A getter run while encoding may itself encode; it then gets a fresh encoder.
  const encoder = sharedEncoder.busy ? new Encoder() : sharedEncoder
  encoder.start(limits, headroom)
  try {
    encoder.count(1)
    encoder.value(value, 0)
    if (encoder.pos - headroom > limits.maxBytes) {
      throw new EncodeFailure(`a value whose encoding is longer than maxBytes (${limits.maxBytes} bytes)`)
    }
    return encoder.output()
  } catch (err) {
    throw encodeError(err)
  } finally {
    encoder.finish()
  }
}

/** Decodes bytes made by `encodeValue`. Throws an RpcCodecError for anything else. */
export function decodeValue (bytes: Uint8Array, options?: RpcCodecOptions): unknown {
  if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError('decodeValue takes a Uint8Array')
  const limits = resolveLimits(options)
  if (bytes.length > limits.maxBytes) {
    throw new RpcCodecError(`cannot decode ${bytes.length} bytes: more than maxBytes (${limits.maxBytes})`)
  }
  // A plain Uint8Array view, so a Buffer's own slice/subarray never get in the way.
  const view = Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const decoder = new Decoder(view, limits)
  try {
    decoder.count(1)
    const value = decoder.value(0)
    if (decoder.pos !== view.length) throw decoder.malformed(`${view.length - decoder.pos} bytes after the end of the value`)
    return value
  } catch (err) {
    if (err instanceof RpcCodecError) throw err
    // Only the engine's own limits get here (a stack overflow when maxDepth is set
    // very high, a BigInt or string larger than the engine allows).
    throw new RpcCodecError(`cannot decode the value: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/** Why a value cannot be encoded, and where: thrown inside the encoder, turned into an RpcCodecError at the top. */
class EncodeFailure {
  /** Path steps from the failing value outwards, e.g. `[2]`, `.name`. */
  readonly path: string[] = []
  constructor (readonly what: string) {}
}

function encodeError (err: unknown): RpcCodecError {
  if (err instanceof RpcCodecError) return err
  if (err instanceof EncodeFailure) {
    const where = err.path.length === 0 ? '' : ` at value${err.path.reverse().join('')}`
    return new RpcCodecError(`cannot encode ${err.what}${where}`)
  }
  // A getter that threw, or the engine's stack limit.
  return new RpcCodecError(`cannot encode the value: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
}

/** Adds a path step to a failure passing through a container. */
function failedAt (err: unknown, step: string): unknown {
  if (err instanceof EncodeFailure) err.path.push(step)
  return err
}

function propertyStep (key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`
}

function describeInstance (proto: object): string {
  const ctor: unknown = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value
  const what = typeof ctor === 'function' && ctor.name !== '' ? `an instance of ${ctor.name}` : 'an object whose prototype is not Object.prototype'
  return `${what} (only plain objects, arrays, Uint8Array, Date, Map, Set and errors are carried)`
}

function varintSize (n: number): number {
  let size = 1
  while (n >= 0x80) { n = Math.floor(n / 0x80); size++ }
  return size
}

class Encoder {
  buf = new Uint8Array(INITIAL_BUFFER_SIZE)
  pos = 0
  /** Bytes before the value (left for the caller); limits count from here. */
  base = 0
  values = 0
  busy = false
  limits: Limits = defaultCodecLimits
  /** The containers enclosing the value being encoded, outermost first: cycle detection. */
  readonly ancestors: object[] = []

  start (limits: Limits, headroom: number): void {
    this.busy = true
    this.limits = limits
    this.base = headroom
    this.values = 0
    this.pos = 0
    this.reserve(headroom)
    this.pos = headroom
  }

  finish (): void {
    this.busy = false
    this.ancestors.length = 0
    if (this.buf.length > KEEP_BUFFER_LIMIT) this.allocate(INITIAL_BUFFER_SIZE)
  }

  /**
   * A copy of the bytes written. V8 keeps typed arrays of up to 64 bytes on its
   * heap, but gives larger ones their own backing store, which costs several
   * times the encoding of a small call; those are carved from Node's Buffer pool
   * where there is one (src/bytes.ts).
   */
  output (): Uint8Array {
    const length = this.pos
    if (length <= 64) return this.buf.slice(0, length)
    const pooled = allocUnsafe(length)
    pooled.set(this.buf.subarray(0, length))
    return new Uint8Array(pooled.buffer, pooled.byteOffset, length)
  }

  private allocate (size: number): void {
    this.buf = new Uint8Array(size)
  }

  /** Makes room for `n` more bytes. */
  reserve (n: number): void {
    const need = this.pos + n
    if (need <= this.buf.length) return
    // Reservations overshoot by at most 16 bytes (a tag, a varint, a float);
    // anything beyond that is a real overflow, refused before growing.
    if (need - this.base > this.limits.maxBytes + 16) {
      throw new EncodeFailure(`a value whose encoding is longer than maxBytes (${this.limits.maxBytes} bytes)`)
    }
    const old = this.buf.subarray(0, this.pos)
    this.allocate(Math.max(need, this.buf.length * 2))
    this.buf.set(old)
  }

  count (n: number): void {
    this.values += n
    if (this.values > this.limits.maxValues) {
      throw new EncodeFailure(`a value holding more than maxValues (${this.limits.maxValues}) values`)
    }
  }

  value (v: unknown, depth: number): void {
    switch (typeof v) {
      case 'number': this.number(v); return
      case 'string':
        this.reserve(1)
        this.buf[this.pos++] = T_STRING
        this.string(v)
        return
      case 'boolean':
        this.reserve(1)
        this.buf[this.pos++] = v ? T_TRUE : T_FALSE
        return
      case 'undefined':
        this.reserve(1)
        this.buf[this.pos++] = T_UNDEFINED
        return
      case 'bigint': this.bigint(v); return
      case 'object':
        if (v === null) {
          this.reserve(1)
          this.buf[this.pos++] = T_NULL
        } else {
          this.object(v, depth)
        }
        return
      case 'function': throw new EncodeFailure('a function')
      default: throw new EncodeFailure(`a ${typeof v}`)
    }
  }

  number (n: number): void {
    this.reserve(9)
    const buf = this.buf
    if (Number.isSafeInteger(n) && !Object.is(n, -0)) {
      if (n >= 0) {
        if (n < 0x80) {
          buf[this.pos++] = T_FIXINT | n
        } else {
          buf[this.pos++] = T_UINT
          this.varint(n)
        }
      } else {
        buf[this.pos++] = T_NEGINT
        this.varint(-n)
      }
      return
    }
    buf[this.pos++] = T_FLOAT64
    this.float64(n)
  }

  /** Writes an unsigned varint; the caller has reserved 8 bytes. */
  varint (n: number): void {
    const buf = this.buf
    let pos = this.pos
    while (n > 0x7fffffff) {
      buf[pos++] = (n % 0x80) | 0x80
      n = Math.floor(n / 0x80)
    }
    while (n >= 0x80) {
      buf[pos++] = (n & 0x7f) | 0x80
      n >>>= 7
    }
    buf[pos++] = n
    this.pos = pos
  }

  /** Writes a float64, little-endian; the caller has reserved 8 bytes. */
  float64 (n: number): void {
    scratchFloat[0] = n
    const buf = this.buf
    const pos = this.pos
    if (LITTLE_ENDIAN) {
      for (let i = 0; i < 8; i++) buf[pos + i] = scratchBytes[i]!
    } else {
      for (let i = 0; i < 8; i++) buf[pos + i] = scratchBytes[7 - i]!
    }
    this.pos = pos + 8
  }

  /** Writes a string without a tag: varint byte length, UTF-8. */
  string (s: string): void {
    const length = s.length
    if (length < 0x80) {
      // Short ASCII strings, the common case, are copied by hand.
      this.reserve(length + 1)
      const buf = this.buf
      let pos = this.pos + 1
      let i = 0
      for (; i < length; i++) {
        const c = s.charCodeAt(i)
        if (c >= 0x80) break
        buf[pos++] = c
      }
      if (i === length) {
        buf[this.pos] = length
        this.pos = pos
        return
      }
    }
    // A lone surrogate has no UTF-8 form; replacing it would change the string
    // (and could merge two distinct keys), so it is refused.
    if (!(s as WellFormedString).isWellFormed()) throw new EncodeFailure('a string containing a lone surrogate (not valid Unicode)')
    // UTF-8 takes at most 3 bytes per UTF-16 unit: the bytes go after room for
    // the varint of that bound, and move back if the real length's is shorter.
    const max = length * 3
    const width = varintSize(max)
    if (this.pos + width + max - this.base > this.limits.maxBytes) {
      // Where the bound would pass maxBytes, the exact size decides.
      const bytes = utf8Encoder.encode(s)
      this.reserve(bytes.length + 8)
      this.varint(bytes.length)
      this.buf.set(bytes, this.pos)
      this.pos += bytes.length
      return
    }
    this.reserve(width + max)
    const start = this.pos + width
    const size = utf8Encoder.encodeInto(s, this.buf.subarray(start, start + max)).written
    const actual = varintSize(size)
    if (actual !== width) this.buf.copyWithin(this.pos + actual, start, start + size)
    this.varint(size)
    this.pos += size
  }

  bigint (v: bigint): void {
    const negative = v < 0n
    const magnitude = negative ? -v : v
    // Hex conversion is linear in both directions, unlike shifting byte by byte.
    let hex = magnitude === 0n ? '' : magnitude.toString(16)
    if ((hex.length & 1) === 1) hex = '0' + hex
    const size = hex.length / 2
    this.reserve(size + 9)
    const buf = this.buf
    buf[this.pos++] = negative ? T_NEGBIGINT : T_BIGINT
    this.varint(size)
    const at = this.pos
    for (let i = 0; i < size; i++) buf[at + i] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1))
    this.pos += size
  }

  /** Checks depth and cycles for a container about to be encoded at `depth`. */
  enter (v: object, depth: number): void {
    if (depth >= this.limits.maxDepth) throw new EncodeFailure(`a value nested deeper than maxDepth (${this.limits.maxDepth})`)
    const ancestors = this.ancestors
    for (let i = 0; i < depth; i++) {
      if (ancestors[i] === v) throw new EncodeFailure('a cycle (a value that contains itself)')
    }
    ancestors[depth] = v
  }

  object (v: object, depth: number): void {
    if (Array.isArray(v)) { this.array(v as unknown[], depth); return }
    const proto: unknown = Object.getPrototypeOf(v)
    if (proto === Object.prototype || proto === null) { this.plainObject(v as Record<string, unknown>, depth); return }
    if (v instanceof Uint8Array) { this.bytes(v); return }
    if (v instanceof Date) {
      this.reserve(9)
      this.buf[this.pos++] = T_DATE
      this.float64(v.getTime())
      return
    }
    if (v instanceof Map) { this.map(v, depth); return }
    if (v instanceof Set) { this.set(v, depth); return }
    if (v instanceof Error || isNativeError(v)) { this.error(v as Error, depth); return }
    throw new EncodeFailure(describeInstance(proto as object))
  }

  bytes (v: Uint8Array): void {
    const size = v.length
    this.reserve(size + 9)
    this.buf[this.pos++] = T_BYTES
    this.varint(size)
    this.buf.set(v, this.pos)
    this.pos += size
  }

  array (v: unknown[], depth: number): void {
    this.enter(v, depth)
    const length = v.length
    this.count(length)
    this.reserve(9)
    this.buf[this.pos++] = T_ARRAY
    this.varint(length)
    let i = 0
    try {
      for (; i < length; i++) this.value(v[i], depth + 1)
    } catch (err) {
      throw failedAt(err, `[${i}]`)
    }
  }

  plainObject (v: Record<string, unknown>, depth: number): void {
    this.enter(v, depth)
    const keys = Object.keys(v)
    const length = keys.length
    this.count(length)
    this.reserve(9)
    this.buf[this.pos++] = T_OBJECT
    this.varint(length)
    let key = ''
    try {
      for (let i = 0; i < length; i++) {
        key = keys[i]!
        this.string(key)
        this.value(v[key], depth + 1)
      }
    } catch (err) {
      throw failedAt(err, propertyStep(key))
    }
  }

  map (v: Map<unknown, unknown>, depth: number): void {
    this.enter(v, depth)
    const size = v.size
    this.count(2 * size)
    this.reserve(9)
    this.buf[this.pos++] = T_MAP
    this.varint(size)
    let i = 0
    try {
      for (const [key, value] of v) {
        if (i === size) break
        this.value(key, depth + 1)
        this.value(value, depth + 1)
        i++
      }
    } catch (err) {
      throw failedAt(err, `[map entry ${i}]`)
    }
    if (i !== size) throw new EncodeFailure('a Map that changed while it was encoded')
  }

  set (v: Set<unknown>, depth: number): void {
    this.enter(v, depth)
    const size = v.size
    this.count(size)
    this.reserve(9)
    this.buf[this.pos++] = T_SET
    this.varint(size)
    let i = 0
    try {
      for (const member of v) {
        if (i === size) break
        this.value(member, depth + 1)
        i++
      }
    } catch (err) {
      throw failedAt(err, `[set member ${i}]`)
    }
    if (i !== size) throw new EncodeFailure('a Set that changed while it was encoded')
  }

  /**
   * An error travels as data: name, message, then stack, cause, code, an
   * AggregateError's errors and its other own enumerable data properties. A
   * property that cannot be encoded (a function, a cycle such as a cause that is
   * the error itself, a cause chain past maxDepth) is left out rather than failing
   * the whole value: an error report must not be lost to a detail of it.
   */
  error (e: Error, depth: number): void {
    this.enter(e, depth)
    const name: unknown = e.name
    const message: unknown = e.message
    const props: Array<[string, unknown]> = []
    const stack: unknown = e.stack
    if (typeof stack === 'string') props.push(['stack', (stack as WellFormedString).toWellFormed()])
    if ('cause' in e) props.push(['cause', e.cause])
    const code: unknown = (e as { code?: unknown }).code
    if (code !== undefined) props.push(['code', code])
    const errors = Object.getOwnPropertyDescriptor(e, 'errors')
    if (errors !== undefined && Array.isArray(errors.value)) props.push(['errors', errors.value])
    for (const key of Object.keys(e)) {
      if (SPECIAL_ERROR_PROPS.has(key)) continue
      const descriptor = Object.getOwnPropertyDescriptor(e, key)
      if (descriptor !== undefined && 'value' in descriptor) props.push([key, descriptor.value])
    }

    this.reserve(1)
    this.buf[this.pos++] = T_ERROR
    this.string(typeof name === 'string' ? (name as WellFormedString).toWellFormed() : 'Error')
    this.string(typeof message === 'string' ? (message as WellFormedString).toWellFormed() : '')
    // The count is written once known, in as many bytes as the largest possible one.
    const width = varintSize(props.length)
    this.reserve(width)
    const countAt = this.pos
    this.pos += width
    let written = 0
    for (const [key, value] of props) {
      const pos = this.pos
      const values = this.values
      try {
        this.string(key)
        this.count(1)
        this.value(value, depth + 1)
        written++
      } catch {
        this.pos = pos
        this.values = values
      }
    }
    // A varint padded to `width` bytes with continuation bits: valid, just not minimal.
    const buf = this.buf
    for (let i = 0; i < width - 1; i++) {
      buf[countAt + i] = (written & 0x7f) | 0x80
      written >>>= 7
    }
    buf[countAt + width - 1] = written
  }
}

const sharedEncoder = new Encoder()

/** The value of a lowercase hex digit (BigInt's toString(16) writes no other). */
function nibble (c: number): number {
  return c <= 0x39 ? c - 0x30 : c - 0x57
}

/**
 * A Uint8Array copy of `size` bytes at `at`. Up to 64 bytes V8 keeps a typed
 * array on its heap; a larger one gets a backing store of its own, which costs
 * far more than the copy, so those are carved from Node's Buffer pool where
 * there is one (src/bytes.ts), then viewed as a plain Uint8Array.
 */
function copyBytes (bytes: Uint8Array, at: number, size: number): Uint8Array {
  if (size <= 64) return bytes.slice(at, at + size)
  const pooled = allocUnsafe(size)
  pooled.set(bytes.subarray(at, at + size))
  return new Uint8Array(pooled.buffer, pooled.byteOffset, size)
}

class Decoder {
  pos = 0
  /** How many more values the limit allows. */
  private valuesLeft: number
  private readonly end: number
  private readonly maxDepth: number

  constructor (private readonly bytes: Uint8Array, limits: Limits) {
    this.end = bytes.length
    this.valuesLeft = limits.maxValues
    this.maxDepth = limits.maxDepth
  }

  malformed (what: string): RpcCodecError {
    return new RpcCodecError(`cannot decode: ${what} (at byte ${this.pos})`)
  }

  count (n: number): void {
    this.valuesLeft -= n
    if (this.valuesLeft < 0) throw this.malformed('more values than maxValues')
  }

  /** Reads a container's element count, refused unless the remaining bytes could hold that many elements. */
  private length (bytesPerElement: number, valuesPerElement: number): number {
    const n = this.varint()
    if (n * bytesPerElement > this.end - this.pos) {
      throw this.malformed(`a count of ${n} that the remaining ${this.end - this.pos} bytes cannot hold`)
    }
    this.count(n * valuesPerElement)
    return n
  }

  private enter (depth: number): void {
    if (depth >= this.maxDepth) throw this.malformed(`values nested deeper than maxDepth (${this.maxDepth})`)
  }

  value (depth: number): unknown {
    if (this.pos >= this.end) throw this.malformed('the input ends in the middle of a value')
    const tag = this.bytes[this.pos++]!
    if (tag >= T_FIXINT) return tag & 0x7f
    switch (tag) {
      case T_UNDEFINED: return undefined
      case T_NULL: return null
      case T_FALSE: return false
      case T_TRUE: return true
      case T_UINT: return this.varint()
      case T_NEGINT: return 0 - this.varint()
      case T_FLOAT64: return this.float64()
      case T_STRING: return this.string()
      case T_BYTES: {
        const size = this.size()
        const out = copyBytes(this.bytes, this.pos, size)
        this.pos += size
        return out
      }
      case T_ARRAY: return this.array(depth)
      case T_OBJECT: return this.object(depth)
      case T_MAP: {
        this.enter(depth)
        const n = this.length(2, 2)
        const map = new Map<unknown, unknown>()
        for (let i = 0; i < n; i++) {
          const key = this.value(depth + 1)
          map.set(key, this.value(depth + 1))
        }
        return map
      }
      case T_SET: {
        this.enter(depth)
        const n = this.length(1, 1)
        const set = new Set<unknown>()
        for (let i = 0; i < n; i++) set.add(this.value(depth + 1))
        return set
      }
      case T_DATE: return new Date(this.float64())
      case T_BIGINT: return this.bigint()
      case T_NEGBIGINT: return -this.bigint()
      case T_ERROR: return this.error(depth)
      default:
        this.pos--
        throw this.malformed(`unknown tag 0x${tag.toString(16).padStart(2, '0')}`)
    }
  }

  /** Reads an unsigned varint of at most 8 bytes and at most 2^53 - 1. */
  varint (): number {
    const bytes = this.bytes
    let pos = this.pos
    if (pos >= this.end) throw this.malformed('the input ends in the middle of a number')
    let b = bytes[pos++]!
    if (b < 0x80) {
      this.pos = pos
      return b
    }
    let n = b & 0x7f
    let scale = 0x80
    for (let i = 1; ; i++) {
      if (pos >= this.end) throw this.malformed('the input ends in the middle of a number')
      b = bytes[pos++]!
      n += (b & 0x7f) * scale
      if (b < 0x80) break
      if (i === 7) throw this.malformed('a varint longer than 8 bytes')
      scale *= 0x80
    }
    if (n > Number.MAX_SAFE_INTEGER) throw this.malformed('a varint larger than 2^53 - 1')
    this.pos = pos
    return n
  }

  /** Reads a byte length, refused unless that many bytes remain. */
  private size (): number {
    const size = this.varint()
    if (size > this.end - this.pos) {
      throw this.malformed(`a length of ${size} bytes but only ${this.end - this.pos} remain`)
    }
    return size
  }

  private float64 (): number {
    const pos = this.pos
    if (this.end - pos < 8) throw this.malformed('the input ends in the middle of a number')
    const bytes = this.bytes
    if (LITTLE_ENDIAN) {
      for (let i = 0; i < 8; i++) scratchBytes[i] = bytes[pos + i]!
    } else {
      for (let i = 0; i < 8; i++) scratchBytes[7 - i] = bytes[pos + i]!
    }
    this.pos = pos + 8
    return scratchFloat[0]!
  }

  /** Reads a string without a tag: varint byte length, UTF-8. */
  private string (): string {
    const size = this.size()
    const start = this.pos
    const end = start + size
    const bytes = this.bytes
    this.pos = end
    if (size <= 32) {
      // Short ASCII strings, the common case, are built by hand.
      let s = ''
      let i = start
      for (; i < end; i++) {
        const b = bytes[i]!
        if (b >= 0x80) break
        s += String.fromCharCode(b)
      }
      if (i === end) return s
    }
    return this.utf8(start, end)
  }

  /**
   * Reads an object key. Short ASCII keys come from a cache: storing a property
   * under a string V8 has seen as a key before is several times faster than under
   * a fresh one, which it must first look up in its string table.
   */
  private key (): string {
    const size = this.size()
    const start = this.pos
    const end = start + size
    const bytes = this.bytes
    this.pos = end
    if (size > 32) return this.utf8(start, end)
    let hash = size
    for (let i = start; i < end; i++) {
      const b = bytes[i]!
      if (b >= 0x80) return this.utf8(start, end)
      hash = Math.imul(hash ^ b, 0x01000193)
    }
    const slot = (hash ^ (hash >>> 16)) & (KEY_CACHE_SIZE - 1)
    const cached = keyCache[slot]
    if (cached !== undefined && cached.length === size) {
      let i = 0
      while (i < size && cached.charCodeAt(i) === bytes[start + i]) i++
      if (i === size) return cached
    }
    let key = ''
    for (let i = start; i < end; i++) key += String.fromCharCode(bytes[i]!)
    keyCache[slot] = key
    return key
  }

  private utf8 (start: number, end: number): string {
    try {
      return utf8Decoder.decode(this.bytes.subarray(start, end))
    } catch {
      this.pos = start
      throw this.malformed('a string that is not valid UTF-8')
    }
  }

  private bigint (): bigint {
    const size = this.size()
    if (size === 0) return 0n
    const hex = toHex(this.bytes, this.pos, this.pos + size)
    this.pos += size
    return BigInt('0x' + hex)
  }

  private array (depth: number): unknown[] {
    this.enter(depth)
    const n = this.length(1, 1)
    const array: unknown[] = []
    for (let i = 0; i < n; i++) array.push(this.value(depth + 1))
    return array
  }

  private object (depth: number): Record<string, unknown> {
    this.enter(depth)
    const n = this.length(2, 1)
    const object: Record<string, unknown> = {}
    for (let i = 0; i < n; i++) {
      const key = this.key()
      const value = this.value(depth + 1)
      // Assigning `__proto__` would set the prototype, and assigning any name that
      // Object.prototype has could run a setter put there; defining makes plain data.
      // Other names cannot reach a setter, so they take the (10 times faster) store.
      if (key in Object.prototype) {
        Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true })
      } else {
        object[key] = value
      }
    }
    return object
  }

  private error (depth: number): Error {
    this.enter(depth)
    const name = this.string()
    const message = this.string()
    const n = this.length(2, 1)
    const ErrorClass = ERROR_CLASSES.get(name)
    // The stack is the remote one (or none), so capturing a local one is wasted work.
    // V8's (Node, Chromium); elsewhere setting it does nothing.
    const v8 = Error as { stackTraceLimit?: number | undefined }
    const stackTraceLimit = v8.stackTraceLimit
    let error: Error
    try {
      v8.stackTraceLimit = 0
      error = ErrorClass !== undefined ? new ErrorClass(message) : name === 'AggregateError' ? new AggregateError([], message) : new Error(message)
    } finally {
      v8.stackTraceLimit = stackTraceLimit
    }
    if (error.name !== name) {
      Object.defineProperty(error, 'name', { value: name, writable: true, enumerable: false, configurable: true })
    }
    delete error.stack
    for (let i = 0; i < n; i++) {
      const key = this.key()
      const value = this.value(depth + 1)
      Object.defineProperty(error, key, { value, writable: true, enumerable: !HIDDEN_ERROR_PROPS.has(key), configurable: true })
    }
    return error
  }
}
