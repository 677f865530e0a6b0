// Writes JavaScript values as Python pickles (protocol 4, Python 3.8's default
// and what snakeMQ peers on Python 3.8 to 3.13 send), for the RPC messages this
// library sends to Python snakeMQ peers. It lays the opcodes out as Python's own
// pickler does (one FRAME, MEMOIZE after every str, bytes, container, class
// reference and reduced object, APPEND/SETITEM for one item, MARK ... APPENDS in
// batches of 1,000), so a value Python would pickle the same way gives the same
// bytes: the tests compare them with pickles recorded from snakeMQ. Values go as:
//
//   null, undefined -> None; boolean -> bool; safe integers and bigints -> int;
//   other numbers -> float; string -> str; Uint8Array -> bytes; array -> list;
//   plain object, Map -> dict; Set -> set; Date -> naive datetime in UTC;
//   PyDecimal / PyDate / PyTime / PyTimedelta -> Decimal / date / time /
//   timedelta; PythonException -> that exception; other errors -> the built-in
//   exception of the same name, else Exception, with the message as argument.
//
// As a dict key or set member an array goes as a tuple and a Set as a frozenset
// (Python can hash those); objects and Maps cannot be keys. Functions, symbols,
// class instances and cycles are refused with RpcCodecError, as by the RPC codec.
import { RpcCodecError, isNativeError } from './errors.ts'
import { Op, PickleTuple, resolvePickleLimits, type PickleCodecOptions, type PickleLimits } from './pickle.ts'
import { PYTHON_BASE_EXCEPTIONS, PYTHON_EXCEPTIONS, PyDate, PyDecimal, PyTime, PyTimedelta, PythonException } from './python-types.ts'

/** Python's pickler starts a new frame past this many bytes; a longer pickle goes out unframed (framing is optional). */
const FRAME_TARGET = 64 * 1024
/** Python writes no FRAME for a pickle body shorter than this. */
const FRAME_MIN = 4
/** Items per APPENDS, SETITEMS, ADDITEMS: Python's batch size. */
const BATCH = 1000
/** PROTO 4, then FRAME and its 8-byte length. */
const HEADER = 11

const utf8 = new TextEncoder()

/**
 * Encodes a value as a protocol 4 pickle that Python's `pickle.loads` reads
 * back as the Python values in the table of docs/RPC.md. Throws RpcCodecError for
 * a value it cannot carry or one past the limits (see PickleCodecOptions).
 */
export function encodePickle (value: unknown, options?: PickleCodecOptions): Uint8Array {
  return encodePickleAfter(new Uint8Array(0), value, options)
}

/** @internal `prefix` (an RPC message's `rpcreq` / `rpcrep`), then the pickle of `value`, in one array. */
export function encodePickleAfter (prefix: Uint8Array, value: unknown, options?: PickleCodecOptions): Uint8Array {
  const writer = new Pickler(resolvePickleLimits(options), prefix)
  try {
    writer.count(1)
    writer.value(value, 0, false)
    return writer.finish()
  } catch (err) {
    if (err instanceof RpcCodecError) throw err
    if (err instanceof EncodeFailure) {
      const where = err.path.length === 0 ? '' : ` at value${err.path.reverse().join('')}`
      throw new RpcCodecError(`cannot pickle ${err.what}${where}`)
    }
    // A getter that threw, or the engine's stack limit.
    throw new RpcCodecError(`cannot pickle the value: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/** Why a value cannot be pickled, and where (path steps from the inside out). */
class EncodeFailure {
  readonly path: string[] = []
  constructor (readonly what: string) {}
}

function failedAt (err: unknown, step: string): unknown {
  if (err instanceof EncodeFailure) err.path.push(step)
  return err
}

/** What the memo knows of an object written before: its entry, and the values and levels it holds. */
interface Written { index: number, weight: number, span: number }

class Pickler {
  private buf = new Uint8Array(256)
  private pos = 0
  private readonly start: number
  private values = 0
  private memoCount = 0
  private deepest = 0
  /** Objects written before, by identity. */
  private readonly objects = new Map<object, Written>()
  /** Strings written before, by value (Python shares interned strings the same way). */
  private readonly strings = new Map<string, number>()
  /** Module names of class references, by value. */
  private readonly modules = new Map<string, number>()
  /** Class references, by `module name`. */
  private readonly classes = new Map<string, number>()
  /** The containers being written, for cycles. */
  private readonly ancestors: object[] = []

  constructor (private readonly limits: PickleLimits, prefix: Uint8Array) {
    this.reserve(prefix.length + HEADER)
    this.buf.set(prefix)
    this.start = prefix.length
    this.buf[this.start] = Op.PROTO
    this.buf[this.start + 1] = 4
    this.buf[this.start + 2] = Op.FRAME
    this.pos = this.start + HEADER
  }

  finish (): Uint8Array {
    this.op(Op.STOP)
    const body = this.pos - this.start - HEADER
    if (body < FRAME_MIN || body >= FRAME_TARGET) {
      this.buf.copyWithin(this.start + 2, this.start + HEADER, this.pos)
      this.pos -= HEADER - 2
    } else {
      writeU64(this.buf, this.start + 3, body)
    }
    return this.buf.slice(0, this.pos)
  }

  count (n: number): void {
    this.values += n
    if (this.values > this.limits.maxValues) throw new EncodeFailure(`a value holding more than maxValues (${this.limits.maxValues}) values`)
  }

  private reserve (n: number): void {
    const need = this.pos + n
    if (need <= this.buf.length) return
    if (need - HEADER > this.limits.maxBytes + 16) throw new EncodeFailure(`a value whose pickle is longer than maxBytes (${this.limits.maxBytes} bytes)`)
    const bigger = new Uint8Array(Math.max(need, this.buf.length * 2))
    bigger.set(this.buf.subarray(0, this.pos))
    this.buf = bigger
  }

  private op (code: number): void {
    this.reserve(1)
    this.buf[this.pos++] = code
  }

  private memoize (): number {
    this.op(Op.MEMOIZE)
    return this.memoCount++
  }

  private get (index: number): void {
    if (index < 256) {
      this.reserve(2)
      this.buf[this.pos++] = Op.BINGET
      this.buf[this.pos++] = index
    } else {
      this.reserve(5)
      this.buf[this.pos++] = Op.LONG_BINGET
      writeU32(this.buf, this.pos, index)
      this.pos += 4
    }
  }

  /** A container about to be written at `level`: depth and cycles. */
  private enter (v: object, level: number): void {
    if (level >= this.limits.maxDepth) throw new EncodeFailure(`a value nested deeper than maxDepth (${this.limits.maxDepth})`)
    if (this.ancestors.includes(v)) throw new EncodeFailure('a cycle (a value that contains itself)')
    if (level > this.deepest) this.deepest = level
  }

  /** Writes a reference to `v` if it was written before; true if so. */
  private again (v: object, level: number): boolean {
    const seen = this.objects.get(v)
    if (seen === undefined) return false
    // The reader counts a shared value as a copy: so does the writer, against the same limits.
    this.count(seen.weight - 1)
    if (level + seen.span >= this.limits.maxDepth) throw new EncodeFailure(`a value nested deeper than maxDepth (${this.limits.maxDepth})`)
    this.get(seen.index)
    return true
  }

  /**
   * Writes the container `v` with `body`, remembered for later references unless
   * `remember` is false: a tuple or frozenset made of an array or Set as a dict
   * key must not stand in for that array or Set where it is a list or set.
   */
  private container (v: object, level: number, open: () => void, body: () => void, memoFirst = true, remember = true): void {
    if (remember && this.again(v, level)) return
    this.enter(v, level)
    const before = this.values
    const deepest = this.deepest
    this.deepest = level
    this.ancestors.push(v)
    let index = -1
    open()
    if (memoFirst) index = this.memoize()
    body()
    if (!memoFirst) index = this.memoize()
    this.ancestors.pop()
    if (remember) this.objects.set(v, { index, weight: this.values - before + 1, span: this.deepest - level })
    this.deepest = Math.max(deepest, this.deepest)
  }

  value (v: unknown, level: number, key: boolean): void {
    switch (typeof v) {
      case 'number':
        if (Number.isSafeInteger(v) && !Object.is(v, -0)) this.int(v)
        else this.float(v)
        return
      case 'string': this.str(v); return
      case 'boolean': this.op(v ? Op.NEWTRUE : Op.NEWFALSE); return
      case 'undefined': this.op(Op.NONE); return
      case 'bigint':
        if (v >= -0x8000_0000n && v <= 0x7fff_ffffn) this.int(Number(v))
        else this.long(v)
        return
      case 'object':
        if (v === null) this.op(Op.NONE)
        else this.object(v, level, key)
        return
      case 'function': throw new EncodeFailure('a function')
      default: throw new EncodeFailure(`a ${typeof v}`)
    }
  }

  private object (v: object, level: number, key: boolean): void {
    if (Array.isArray(v)) {
      if (key) this.tuple(v as unknown[], level, v, true)
      else this.list(v as unknown[], level)
      return
    }
    const proto: unknown = Object.getPrototypeOf(v)
    if (proto === Object.prototype || proto === null) {
      if (key) throw new EncodeFailure('an object as a dict key or set member (Python cannot hash a dict)')
      const o = v as Record<string, unknown>
      const keys = Object.keys(o)
      this.dict(v, keys.length, level, (i) => keys[i]!, (i) => o[keys[i]!])
      return
    }
    if (v instanceof PickleTuple) { this.tuple(v.items, level, v, false); return }
    if (v instanceof Uint8Array) { this.bytes(v, level); return }
    if (v instanceof Date) { this.datetime(v, level); return }
    if (v instanceof Map) {
      if (key) throw new EncodeFailure('a Map as a dict key or set member (Python cannot hash a dict)')
      const entries = [...v]
      this.dict(v, entries.length, level, (i) => entries[i]![0], (i) => entries[i]![1])
      return
    }
    if (v instanceof Set) {
      if (key) this.frozenset(v, level)
      else this.set(v, level)
      return
    }
    if (v instanceof PyDecimal) {
      if (key && /^[+-]?snan/i.test(v.value)) throw new EncodeFailure('a signaling NaN Decimal as a dict key or set member (Python cannot hash one)')
      this.reduced(v, level, 'decimal', 'Decimal', () => { this.str(v.value) }, 1)
      return
    }
    if (v instanceof PyDate) { this.reduced(v, level, 'datetime', 'date', () => { this.state([v.year >> 8, v.year & 0xff, v.month, v.day]) }, 1); return }
    if (v instanceof PyTime) { this.time(v, level); return }
    if (v instanceof PyTimedelta) { this.timedelta(v, level); return }
    if (v instanceof Error || isNativeError(v)) { this.exception(v as Error, level); return }
    if (ArrayBuffer.isView(v)) throw new EncodeFailure(`a ${v.constructor.name} (only Uint8Array goes as bytes)`)
    const ctor: unknown = Object.getOwnPropertyDescriptor(proto as object, 'constructor')?.value
    throw new EncodeFailure(`${typeof ctor === 'function' && ctor.name !== '' ? `an instance of ${ctor.name}` : 'an object whose prototype is not Object.prototype'} (only plain objects, arrays, Uint8Array, Date, Map, Set, errors and the Py* values are carried)`)
  }

  /** An int in the smallest of Python's forms, as its pickler picks them. */
  private int (n: number): void {
    if (n >= 0 && n <= 0xff) {
      this.reserve(2)
      this.buf[this.pos++] = Op.BININT1
      this.buf[this.pos++] = n
    } else if (n >= 0 && n <= 0xffff) {
      this.reserve(3)
      this.buf[this.pos++] = Op.BININT2
      this.buf[this.pos++] = n & 0xff
      this.buf[this.pos++] = n >>> 8
    } else if (n >= -0x8000_0000 && n <= 0x7fff_ffff) {
      this.reserve(5)
      this.buf[this.pos++] = Op.BININT
      writeU32(this.buf, this.pos, n >>> 0)
      this.pos += 4
    } else {
      this.long(BigInt(n))
    }
  }

  /** LONG1 / LONG4: the minimal two's complement, little-endian. */
  private long (v: bigint): void {
    // The minimal width holds v's magnitude (or, negative, that of -v - 1) with the sign bit clear.
    const magnitude = v < 0n ? -v - 1n : v
    let hex = magnitude.toString(16)
    if (hex.length % 2 === 1) hex = '0' + hex
    if (parseInt(hex[0]!, 16) >= 8) hex = '00' + hex
    const n = hex.length / 2
    if (n > this.limits.maxIntegerBytes) throw new EncodeFailure(`an integer of ${n} bytes, more than maxIntegerBytes (${this.limits.maxIntegerBytes})`)
    if (v < 0n) {
      hex = ((1n << BigInt(8 * n)) + v).toString(16).padStart(2 * n, '0')
    }
    this.reserve(n + 5)
    if (n < 256) {
      this.buf[this.pos++] = Op.LONG1
      this.buf[this.pos++] = n
    } else {
      this.buf[this.pos++] = Op.LONG4
      writeU32(this.buf, this.pos, n)
      this.pos += 4
    }
    for (let i = 0; i < n; i++) this.buf[this.pos + i] = parseInt(hex.slice(2 * (n - 1 - i), 2 * (n - i)), 16)
    this.pos += n
  }

  private float (n: number): void {
    this.reserve(9)
    this.buf[this.pos++] = Op.BINFLOAT
    new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).setFloat64(0, n, false)
    this.pos += 8
  }

  private str (s: string): void {
    const seen = this.strings.get(s)
    if (seen !== undefined) { this.get(seen); return }
    this.text(s)
    this.strings.set(s, this.memoize())
  }

  /** SHORT_BINUNICODE, BINUNICODE or BINUNICODE8 of `s` as UTF-8 ('surrogatepass' for lone surrogates, as Python writes them). */
  private text (s: string): void {
    if (s.length > 4096) { this.longText(s); return }
    const max = s.length * 3
    // The length is written once known: room for the widest header, the bytes after it, moved back if the header is narrower.
    this.reserve(max + 9)
    const at = this.pos + (max < 256 ? 2 : max < 2 ** 32 ? 5 : 9)
    let n: number
    if ((s as string & { isWellFormed(): boolean }).isWellFormed()) {
      n = utf8.encodeInto(s, this.buf.subarray(at)).written
    } else {
      n = encodeSurrogatePass(s, this.buf, at)
    }
    const header = n < 256 ? 2 : n < 2 ** 32 ? 5 : 9
    const to = this.pos + header
    if (to !== at) this.buf.copyWithin(to, at, at + n)
    if (header === 2) {
      this.buf[this.pos] = Op.SHORT_BINUNICODE
      this.buf[this.pos + 1] = n
    } else if (header === 5) {
      this.buf[this.pos] = Op.BINUNICODE
      writeU32(this.buf, this.pos + 1, n)
    } else {
      this.buf[this.pos] = Op.BINUNICODE8
      writeU64(this.buf, this.pos + 1, n)
    }
    this.pos = to + n
  }

  /** A long str, measured before room is made for it (three bytes a character would overshoot maxBytes). */
  private longText (s: string): void {
    let bytes: Uint8Array
    if ((s as string & { isWellFormed(): boolean }).isWellFormed()) {
      bytes = utf8.encode(s)
    } else {
      bytes = new Uint8Array(s.length * 3)
      bytes = bytes.subarray(0, encodeSurrogatePass(s, bytes, 0))
    }
    const n = bytes.length
    this.reserve(n + 9)
    if (n < 2 ** 32) {
      this.buf[this.pos++] = Op.BINUNICODE
      writeU32(this.buf, this.pos, n)
      this.pos += 4
    } else {
      this.buf[this.pos++] = Op.BINUNICODE8
      writeU64(this.buf, this.pos, n)
      this.pos += 8
    }
    this.buf.set(bytes, this.pos)
    this.pos += n
  }

  private bytes (v: Uint8Array, level: number): void {
    if (this.again(v, level)) return
    this.rawBytes(v)
    this.objects.set(v, { index: this.memoize(), weight: 1, span: 0 })
  }

  private rawBytes (v: Uint8Array | readonly number[]): void {
    const n = v.length
    this.reserve(n + 9)
    if (n < 256) {
      this.buf[this.pos++] = Op.SHORT_BINBYTES
      this.buf[this.pos++] = n
    } else if (n < 2 ** 32) {
      this.buf[this.pos++] = Op.BINBYTES
      writeU32(this.buf, this.pos, n)
      this.pos += 4
    } else {
      this.buf[this.pos++] = Op.BINBYTES8
      writeU64(this.buf, this.pos, n)
      this.pos += 8
    }
    this.buf.set(v, this.pos)
    this.pos += n
  }

  /** Fresh bytes, memoized as Python memoizes a datetime's state. */
  private state (bytes: readonly number[]): void {
    this.rawBytes(bytes)
    this.memoize()
  }

  private list (v: unknown[], level: number): void {
    this.container(v, level, () => { this.op(Op.EMPTY_LIST) }, () => {
      const n = v.length
      this.count(n)
      this.items(n, level, (i) => v[i], false, Op.APPEND, Op.APPENDS)
    })
  }

  /** `n` items, batched as Python's pickler does for lists (one: `single`; more: MARK ... `batch`). */
  private items (n: number, level: number, item: (i: number) => unknown, key: boolean, single: number, batch: number): void {
    let i = 0
    try {
      if (n === 1 && single !== 0) {
        this.value(item(0), level + 1, key)
        this.op(single)
        return
      }
      while (i < n) {
        this.op(Op.MARK)
        const end = Math.min(n, i + BATCH)
        for (; i < end; i++) this.value(item(i), level + 1, key)
        this.op(batch)
      }
    } catch (err) {
      throw failedAt(err, `[${i}]`)
    }
  }

  /**
   * A tuple of `items`: a PickleTuple (`identity`), or an array as a dict key or
   * set member (`asKey`: its items hashable too, and not remembered, see container()).
   */
  private tuple (items: readonly unknown[], level: number, identity: object, asKey: boolean): void {
    const n = items.length
    if (n === 0) { this.op(Op.EMPTY_TUPLE); return }
    const write = (): void => {
      this.count(n)
      if (n > 3) this.op(Op.MARK)
      for (let i = 0; i < n; i++) {
        try {
          this.value(items[i], level + 1, asKey)
        } catch (err) {
          throw failedAt(err, `[${i}]`)
        }
      }
      this.op(n === 1 ? Op.TUPLE1 : n === 2 ? Op.TUPLE2 : n === 3 ? Op.TUPLE3 : Op.TUPLE)
    }
    // A tuple is memoized once its items are written.
    this.container(identity, level, () => {}, write, false, !asKey)
  }

  private dict (v: object, n: number, level: number, key: (i: number) => unknown, value: (i: number) => unknown): void {
    this.container(v, level, () => { this.op(Op.EMPTY_DICT) }, () => {
      this.count(2 * n)
      let i = 0
      const pair = (): void => {
        const k = key(i)
        try {
          this.value(k, level + 1, true)
          this.value(value(i), level + 1, false)
        } catch (err) {
          throw failedAt(err, typeof k === 'string' ? propertyStep(k) : `[entry ${i}]`)
        }
      }
      if (n === 1) {
        pair()
        this.op(Op.SETITEM)
        return
      }
      while (i < n) {
        this.op(Op.MARK)
        const end = Math.min(n, i + BATCH)
        for (; i < end; i++) pair()
        this.op(Op.SETITEMS)
      }
    })
  }

  private set (v: Set<unknown>, level: number): void {
    const members = [...v]
    this.container(v, level, () => { this.op(Op.EMPTY_SET) }, () => {
      this.count(members.length)
      // Python writes even one member as MARK ... ADDITEMS.
      this.items(members.length, level, (i) => members[i], true, 0, Op.ADDITEMS)
    })
  }

  private frozenset (v: Set<unknown>, level: number): void {
    const members = [...v]
    this.container(v, level, () => { this.op(Op.MARK) }, () => {
      this.count(members.length)
      for (let i = 0; i < members.length; i++) {
        try {
          this.value(members[i], level + 1, true)
        } catch (err) {
          throw failedAt(err, `[set member ${i}]`)
        }
      }
      this.op(Op.FROZENSET)
    }, false, false)
  }

  /** A class reference, as Python's save_global writes it: module and name, STACK_GLOBAL, each memoized. */
  private classRef (module: string, name: string): void {
    const key = `${module} ${name}`
    const seen = this.classes.get(key)
    if (seen !== undefined) { this.get(seen); return }
    const m = this.modules.get(module)
    if (m !== undefined) {
      this.get(m)
    } else {
      this.text(module)
      this.modules.set(module, this.memoize())
    }
    this.text(name)
    this.memoize()
    this.op(Op.STACK_GLOBAL)
    this.classes.set(key, this.memoize())
  }

  /** `module.name(*args)` as REDUCE: the class, the argument tuple `args()` writes (`n` items), the result memoized. */
  private reduced (v: object | null, level: number, module: string, name: string, args: () => void, n: number): void {
    if (v !== null && this.again(v, level)) return
    this.classRef(module, name)
    args()
    if (n === 0) {
      this.op(Op.EMPTY_TUPLE)
    } else {
      this.op(n === 1 ? Op.TUPLE1 : n === 2 ? Op.TUPLE2 : n === 3 ? Op.TUPLE3 : Op.TUPLE)
      this.memoize()
    }
    this.op(Op.REDUCE)
    const index = this.memoize()
    if (v !== null) this.objects.set(v, { index, weight: 1, span: 0 })
  }

  private datetime (d: Date, level: number): void {
    const ms = d.getTime()
    if (Number.isNaN(ms)) throw new EncodeFailure('an invalid Date (Python has no invalid datetime)')
    const year = d.getUTCFullYear()
    if (year < 1 || year > 9999) throw new EncodeFailure(`a Date in the year ${year} (Python's datetime holds years 1 to 9999)`)
    const micro = d.getUTCMilliseconds() * 1000
    this.reduced(d, level, 'datetime', 'datetime', () => {
      this.state([year >> 8, year & 0xff, d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), micro >> 16, (micro >> 8) & 0xff, micro & 0xff])
    }, 1)
  }

  private time (t: PyTime, level: number): void {
    const offset = t.utcOffset
    this.reduced(t, level, 'datetime', 'time', () => {
      this.state([t.hour | (t.fold << 7), t.minute, t.second, t.microsecond >> 16, (t.microsecond >> 8) & 0xff, t.microsecond & 0xff])
      if (offset !== null) {
        const whole = Math.floor(offset)
        const delta = new PyTimedelta(0, whole, Math.round((offset - whole) * 1e6))
        this.reduced(null, level, 'datetime', 'timezone', () => { this.timedelta(delta, level) }, 1)
      }
    }, offset === null ? 1 : 2)
  }

  private timedelta (td: PyTimedelta, level: number): void {
    this.reduced(td, level, 'datetime', 'timedelta', () => {
      this.int(td.days)
      this.int(td.seconds)
      this.int(td.microseconds)
    }, 3)
  }

  /**
   * An exception as Python pickles one: REDUCE of its class with its args, then,
   * if it has attributes, BUILD with them. An attribute that cannot be pickled is
   * left out rather than failing the whole value: an error report must not be
   * lost to a detail of it.
   */
  private exception (e: Error, level: number): void {
    if (this.again(e, level)) return
    this.enter(e, level)
    let module = 'builtins'
    let name: string
    let args: readonly unknown[]
    let attributes: Record<string, unknown>
    if (e instanceof PythonException) {
      module = e.module
      name = e.name
      // Python would fail to load the whole pickle (no such attribute of builtins), and its caller never see the reply.
      if (module === 'builtins' && !PYTHON_EXCEPTIONS.has(name) && !PYTHON_BASE_EXCEPTIONS.has(name)) {
        throw new EncodeFailure(`the exception builtins.${name}, which Python does not have (a PythonException of a class of one's own needs its module)`)
      }
      args = e.args
      attributes = e.attributes()
    } else {
      const jsName: unknown = e.name
      name = typeof jsName === 'string' && PYTHON_EXCEPTIONS.has(jsName) && !NOT_FROM_MESSAGE.has(jsName) ? jsName : 'Exception'
      const message: unknown = e.message
      args = [typeof message === 'string' ? message : '']
      attributes = errorAttributes(e)
    }
    this.ancestors.push(e)
    this.count(args.length)
    this.reduced(null, level, module, name, () => {
      if (args.length > 3) this.op(Op.MARK)
      for (let i = 0; i < args.length; i++) {
        try {
          this.value(args[i], level + 1, false)
        } catch (err) {
          throw failedAt(err, `.args[${i}]`)
        }
      }
    }, args.length)
    const index = this.memoCount - 1
    const keys = Object.keys(attributes)
    const kept = keys.filter((k) => !PYTHON_OWN_ATTRIBUTES.has(k) && this.fits(attributes[k], level + 2))
    if (kept.length > 0) {
      const state: Record<string, unknown> = {}
      for (const k of kept) Object.defineProperty(state, k, { value: attributes[k], enumerable: true, configurable: true, writable: true })
      this.value(state, level + 1, false)
      this.op(Op.BUILD)
    }
    this.ancestors.pop()
    this.objects.set(e, { index, weight: 1, span: 1 })
  }

  /** True when `v` can be pickled here at `level`, tried on a scratch pickler with this one's limits. */
  private fits (v: unknown, level: number): boolean {
    try {
      const trial = new Pickler(this.limits, new Uint8Array(0))
      trial.values = this.values
      for (const a of this.ancestors) trial.ancestors.push(a)
      trial.value(v, level, false)
      return true
    } catch {
      return false
    }
  }
}

/**
 * Built-in exceptions Python cannot make from one message (they take 2 to 5
 * arguments), or that not every Python 3 has (3.10's, 3.13's): unpickling a
 * JavaScript error sent under one of these names would fail on the Python side
 * (snakeMQ's RpcClient would never see its reply), so it goes as Exception.
 */
const NOT_FROM_MESSAGE = new Set(['ExceptionGroup', 'UnicodeDecodeError', 'UnicodeEncodeError', 'UnicodeTranslateError', 'EncodingWarning', 'PythonFinalizationError'])

/**
 * Attributes that Python's BaseException.__setstate__ (what BUILD calls) refuses
 * unless they are of its own types (`args` a sequence, `__cause__` an exception,
 * `__traceback__` a traceback, ...): an error's own property of such a name is
 * left out, or the whole pickle would fail to load in Python.
 */
const PYTHON_OWN_ATTRIBUTES = new Set(['args', '__traceback__', '__cause__', '__context__', '__suppress_context__', '__class__', '__dict__'])

function propertyStep (key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`
}

/** The own enumerable data properties of a JavaScript error, as Python attributes (`code`, `errno`, ...). */
function errorAttributes (e: Error): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(e)) {
    if (key === 'name' || key === 'message' || key === 'stack' || key === 'cause' || key === '__proto__') continue
    const d = Object.getOwnPropertyDescriptor(e, key)
    if (d !== undefined && 'value' in d) out[key] = d.value
  }
  return out
}

function writeU32 (buf: Uint8Array, at: number, n: number): void {
  buf[at] = n & 0xff
  buf[at + 1] = (n >>> 8) & 0xff
  buf[at + 2] = (n >>> 16) & 0xff
  buf[at + 3] = n >>> 24
}

function writeU64 (buf: Uint8Array, at: number, n: number): void {
  writeU32(buf, at, n >>> 0)
  writeU32(buf, at + 4, Math.floor(n / 0x1_0000_0000))
}

/** UTF-8 of `s` at `at` with lone surrogates as three-byte sequences; returns the bytes written. */
function encodeSurrogatePass (s: string, buf: Uint8Array, at: number): number {
  let p = at
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)
        i++
      }
    }
    if (c < 0x80) {
      buf[p++] = c
    } else if (c < 0x800) {
      buf[p++] = 0xc0 | (c >> 6)
      buf[p++] = 0x80 | (c & 0x3f)
    } else if (c < 0x10000) {
      buf[p++] = 0xe0 | (c >> 12)
      buf[p++] = 0x80 | ((c >> 6) & 0x3f)
      buf[p++] = 0x80 | (c & 0x3f)
    } else {
      buf[p++] = 0xf0 | (c >> 18)
      buf[p++] = 0x80 | ((c >> 12) & 0x3f)
      buf[p++] = 0x80 | ((c >> 6) & 0x3f)
      buf[p++] = 0x80 | (c & 0x3f)
    }
  }
  return p - at
}
