// Reads Python pickles (protocols 2 to 5) as data, for the RPC messages of
// Python snakeMQ peers. Python's own unpickler calls whatever callable a pickle
// names (`os.system`, `builtins.eval`, ...), so it runs code chosen by the sender;
// this one calls nothing. It is a stack machine over the data opcodes (None,
// bools, ints, floats, str, bytes, lists, tuples, dicts, sets, the memo), with a
// fixed list of class references read as data (exceptions, datetime's classes,
// Decimal, set, frozenset, bytearray and protocol 2's `_codecs.encode`). Every
// other class reference, and every opcode that would build an object or look
// one up (REDUCE of anything else, BUILD on anything but an exception, INST,
// OBJ, NEWOBJ, NEWOBJ_EX, PERSID, BINPERSID, EXT1/2/4, out-of-band buffers), is
// refused with RpcCodecError at that opcode, before it has any effect.
//
// Decoding runs in two passes. The first follows the opcodes and builds a graph
// of internal nodes (lists, tuples, dicts, sets, exceptions); the second turns it
// into JavaScript values, which is where the limits on depth and on the number
// of values are checked on the value as a tree: a memo reference counts as a
// copy of what it references, so a small pickle that shares one list a million
// times over is refused rather than handed to code that would walk it. A value
// that contains itself is refused too. Python values come out as:
//
//   None -> null, bool -> boolean, int -> number (|n| <= 2^53 - 1) or bigint,
//   float -> number, str -> string, bytes and bytearray -> Uint8Array,
//   list and tuple -> array, dict -> object when every key is a str, else Map,
//   set and frozenset -> Set, datetime -> Date (naive ones read as UTC),
//   date / time / timedelta / Decimal -> PyDate / PyTime / PyTimedelta /
//   PyDecimal, exceptions -> PythonException.
import { RpcCodecError } from './errors.ts'
import { Op, classKind, resolvePickleLimits, type ClassKind, type PickleCodecOptions, type PickleLimits } from './pickle.ts'
import { EXCEPTION_RESERVED, PyDate, PyDecimal, PyTime, PyTimedelta, PythonException, daysInMonth } from './python-types.ts'

/** A container of the first pass. `shared` once a memo GET or DUP referenced it: only those can be met twice. */
abstract class Node {
  shared = false
  visiting = false
  done = false
  out: unknown = undefined
  /** Values in its tree, counted once it is built. */
  weight = 0
  /** Container levels below it, once built. */
  span = 0
}
class ListNode extends Node { readonly items: unknown[] = [] }
class TupleNode extends Node { constructor (readonly items: unknown[]) { super() } }
class DictNode extends Node { readonly keys: unknown[] = []; readonly values: unknown[] = [] }
class SetNode extends Node {
  readonly items: unknown[] = []
  constructor (readonly frozen: boolean) { super() }
}
class ExceptionNode extends Node {
  /** BUILD states: dicts of attributes. */
  readonly states: DictNode[] = []
  constructor (readonly module: string, readonly name: string, readonly args: unknown[]) { super() }
}

/** An allowed class reference: only ever the callable of a REDUCE. */
class ClassRef {
  constructor (readonly kind: ClassKind, readonly module: string, readonly name: string) {}
}

/** A datetime.timezone: only ever the tzinfo of a datetime or time. */
class Timezone {
  constructor (readonly offsetSeconds: number) {}
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
/** Reading lengths past this many bytes as a loop of fromCharCode costs more than TextDecoder. */
const SHORT_STRING = 32
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
const OPCODE_NAMES = new Map<number, string>(Object.entries(Op).map(([name, code]) => [code, name]))

/** What the refused opcodes would have done in Python. */
const REFUSED_OPCODES = new Map<number, string>([
  [Op.INST, 'builds an instance of a class it names'],
  [Op.OBJ, 'builds an instance of a class'],
  [Op.NEWOBJ, 'builds an instance of a class'],
  [Op.NEWOBJ_EX, 'builds an instance of a class'],
  [Op.PERSID, 'asks the unpickler for an object by persistent id'],
  [Op.BINPERSID, 'asks the unpickler for an object by persistent id'],
  [Op.EXT1, 'looks a class up in the copyreg extension registry'],
  [Op.EXT2, 'looks a class up in the copyreg extension registry'],
  [Op.EXT4, 'looks a class up in the copyreg extension registry'],
  [Op.NEXT_BUFFER, 'takes an out-of-band buffer'],
  [Op.READONLY_BUFFER, 'takes an out-of-band buffer'],
  [Op.STRING, 'is protocol 0 text, which this codec does not read'],
  [Op.UNICODE, 'is protocol 0 text, which this codec does not read'],
  [Op.INT, 'is protocol 0 text, which this codec does not read'],
  [Op.LONG, 'is protocol 0 text, which this codec does not read'],
  [Op.FLOAT, 'is protocol 0 text, which this codec does not read'],
  [Op.GET, 'is protocol 0 text, which this codec does not read'],
  [Op.PUT, 'is protocol 0 text, which this codec does not read']
])

/**
 * Decodes a pickle (protocols 2 to 5; Python's default is 4, 5 from 3.14) into
 * JavaScript values, calling nothing. Throws RpcCodecError for a pickle that
 * names a class or uses an opcode this codec refuses, is malformed, or passes a
 * limit (see PickleCodecOptions). The table of what becomes what is in docs/RPC.md.
 */
export function decodePickle (bytes: Uint8Array, options?: PickleCodecOptions): unknown {
  if (!(bytes instanceof Uint8Array)) throw new RpcCodecError('decodePickle takes a Uint8Array')
  const limits = resolvePickleLimits(options)
  if (bytes.length > limits.maxBytes) throw new RpcCodecError(`cannot decode a pickle of ${bytes.length} bytes: more than maxBytes (${limits.maxBytes})`)
  // A plain view: a Buffer's slice() is a view, not the copy decoded bytes must be.
  const view = Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  try {
    return new Unpickler(view, limits).run()
  } catch (err) {
    if (err instanceof RpcCodecError) throw err
    // Only the engine's own limits get here (a stack overflow with a very high maxDepth).
    throw new RpcCodecError(`cannot decode the pickle: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

class Unpickler {
  private pos = 0
  /** Where the opcode being read starts, for messages. */
  private at = 0
  private readonly end: number
  private readonly stack: unknown[] = []
  /** Stack lengths at each open MARK. */
  private readonly marks: number[] = []
  /** The memo: entries made in order (MEMOIZE, and PUTs that count up) in an array, others in a Map. */
  private readonly memo: unknown[] = []
  private readonly sparseMemo = new Map<number, unknown>()
  private pushesLeft: number
  /** Values built in the second pass. */
  private total = 0
  /** The deepest container level reached in the second pass. */
  private deepest = 0

  constructor (private readonly bytes: Uint8Array, private readonly limits: PickleLimits) {
    this.end = bytes.length
    this.pushesLeft = limits.maxValues
  }

  private fail (what: string): RpcCodecError {
    return new RpcCodecError(`cannot decode the pickle: ${what} (at byte ${this.at})`)
  }

  run (): unknown {
    const bytes = this.bytes
    while (this.pos < this.end) {
      this.at = this.pos
      const op = bytes[this.pos++]!
      if (op === Op.STOP) return this.finish()
      this.step(op)
    }
    throw this.fail('the pickle ends before its STOP opcode')
  }

  private finish (): unknown {
    if (this.marks.length !== 0) throw this.fail('STOP with a MARK still open')
    if (this.stack.length !== 1) throw this.fail(`STOP with ${this.stack.length} values on the stack instead of 1`)
    if (this.pos !== this.end) throw this.fail(`${this.end - this.pos} bytes after STOP`)
    return this.build(this.stack[0], 0)
  }

  // ---- first pass: the opcodes ------------------------------------------------

  private step (op: number): void {
    switch (op) {
      case Op.PROTO: {
        const version = this.u8()
        if (version > 5) throw this.fail(`pickle protocol ${version}; this codec reads 2 to 5`)
        return
      }
      case Op.FRAME: {
        // Frames only group opcodes for buffered reading; the length must fit what is left.
        const length = this.u64()
        if (length > this.end - this.pos) throw this.fail(`a frame of ${length} bytes but only ${this.end - this.pos} remain`)
        return
      }
      case Op.NONE: this.push(null); return
      case Op.NEWTRUE: this.push(true); return
      case Op.NEWFALSE: this.push(false); return
      case Op.BININT1: this.push(this.u8()); return
      case Op.BININT2: this.push(this.u8() | (this.u8() << 8)); return
      case Op.BININT: this.push(this.i32()); return
      case Op.LONG1: this.push(this.long(this.u8())); return
      case Op.LONG4: {
        const n = this.i32()
        if (n < 0) throw this.fail('a LONG4 with a negative length')
        this.push(this.long(n))
        return
      }
      case Op.BINFLOAT: {
        const at = this.take(8)
        this.push(new DataView(this.bytes.buffer, this.bytes.byteOffset + at, 8).getFloat64(0, false))
        return
      }
      case Op.SHORT_BINUNICODE: this.push(this.text(this.u8())); return
      case Op.BINUNICODE: this.push(this.text(this.u32())); return
      case Op.BINUNICODE8: this.push(this.text(this.u64())); return
      case Op.SHORT_BINSTRING: this.push(this.ascii(this.u8())); return
      case Op.BINSTRING: {
        const n = this.i32()
        if (n < 0) throw this.fail('a BINSTRING with a negative length')
        this.push(this.ascii(n))
        return
      }
      case Op.SHORT_BINBYTES: this.push(this.raw(this.u8())); return
      case Op.BINBYTES: this.push(this.raw(this.u32())); return
      case Op.BINBYTES8: this.push(this.raw(this.u64())); return
      case Op.BYTEARRAY8: this.push(this.raw(this.u64())); return

      case Op.EMPTY_LIST: this.push(new ListNode()); return
      case Op.EMPTY_TUPLE: this.push(new TupleNode([])); return
      case Op.EMPTY_DICT: this.push(new DictNode()); return
      case Op.EMPTY_SET: this.push(new SetNode(false)); return
      case Op.TUPLE1: this.push(new TupleNode(this.popN(1))); return
      case Op.TUPLE2: this.push(new TupleNode(this.popN(2))); return
      case Op.TUPLE3: this.push(new TupleNode(this.popN(3))); return
      case Op.TUPLE: this.push(new TupleNode(this.popMark())); return
      case Op.LIST: {
        const list = new ListNode()
        for (const item of this.popMark()) list.items.push(item)
        this.push(list)
        return
      }
      case Op.DICT: {
        const items = this.popMark()
        const dict = new DictNode()
        this.setItems(dict, items)
        this.push(dict)
        return
      }
      case Op.FROZENSET: {
        const set = new SetNode(true)
        for (const item of this.popMark()) set.items.push(item)
        this.push(set)
        return
      }
      case Op.APPEND: {
        const item = this.pop()
        this.target(ListNode, 'APPEND').items.push(item)
        return
      }
      case Op.APPENDS: {
        const items = this.popMark()
        const list = this.target(ListNode, 'APPENDS')
        for (const item of items) list.items.push(item)
        return
      }
      case Op.SETITEM: {
        const items = this.popN(2)
        this.setItems(this.target(DictNode, 'SETITEM'), items)
        return
      }
      case Op.SETITEMS: {
        const items = this.popMark()
        this.setItems(this.target(DictNode, 'SETITEMS'), items)
        return
      }
      case Op.ADDITEMS: {
        const items = this.popMark()
        const set = this.target(SetNode, 'ADDITEMS')
        if (set.frozen) throw this.fail('ADDITEMS to a frozenset')
        for (const item of items) set.items.push(item)
        return
      }

      case Op.MARK:
        // Containers open a MARK per level they nest, so open MARKs beyond the depth limit mean a value too deep.
        if (this.marks.length > this.limits.maxDepth) throw this.fail(`MARKs nested deeper than maxDepth (${this.limits.maxDepth})`)
        this.marks.push(this.stack.length)
        return
      case Op.POP:
        if (this.stack.length > this.base()) { this.stack.pop(); return }
        if (this.marks.length > 0) { this.marks.pop(); return }
        throw this.fail('POP on an empty stack')
      case Op.POP_MARK: this.popMark(); return
      case Op.DUP: {
        if (this.stack.length <= this.base()) throw this.fail('DUP on an empty stack')
        this.push(this.ref(this.stack[this.stack.length - 1]))
        return
      }

      case Op.MEMOIZE: this.memoPut(this.memo.length + this.sparseMemo.size); return
      case Op.BINPUT: this.memoPut(this.u8()); return
      case Op.LONG_BINPUT: this.memoPut(this.u32()); return
      case Op.BINGET: this.memoGet(this.u8()); return
      case Op.LONG_BINGET: this.memoGet(this.u32()); return

      case Op.GLOBAL: {
        const module = this.line('module')
        const name = this.line('name')
        this.push(this.classRef(module, name))
        return
      }
      case Op.STACK_GLOBAL: {
        const [module, name] = this.popN(2)
        if (typeof module !== 'string' || typeof name !== 'string') throw this.fail('STACK_GLOBAL of values that are not strings')
        this.push(this.classRef(module, name))
        return
      }
      case Op.REDUCE: {
        const [callable, args] = this.popN(2)
        if (!(callable instanceof ClassRef)) throw this.fail('REDUCE of something that is not a class reference this codec reads (it calls what it names)')
        if (!(args instanceof TupleNode)) throw this.fail(`REDUCE of ${callable.module}.${callable.name} with arguments that are not a tuple`)
        this.push(this.reduce(callable, args.items))
        return
      }
      case Op.BUILD: {
        const state = this.pop()
        const target = this.stack[this.stack.length - 1]
        if (this.stack.length <= this.base() || !(target instanceof ExceptionNode)) {
          throw this.fail('BUILD on something other than an exception (it sets the state of an object)')
        }
        this.build_(target, state)
        return
      }
    }
    const refused = REFUSED_OPCODES.get(op)
    if (refused !== undefined) throw this.fail(`the opcode ${OPCODE_NAMES.get(op)} is refused: it ${refused}`)
    throw this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`)
  }

  private base (): number { return this.marks.length === 0 ? 0 : this.marks[this.marks.length - 1]! }

  private push (v: unknown): void {
    if (--this.pushesLeft < 0) throw this.fail(`more values than maxValues (${this.limits.maxValues})`)
    this.stack.push(v)
  }

  private pop (): unknown {
    if (this.stack.length <= this.base()) throw this.fail(`${OPCODE_NAMES.get(this.bytes[this.at]!) ?? 'an opcode'} on an empty stack`)
    return this.stack.pop()
  }

  private popN (n: number): unknown[] {
    if (this.stack.length - n < this.base()) throw this.fail(`${OPCODE_NAMES.get(this.bytes[this.at]!) ?? 'an opcode'} needs ${n} values on the stack`)
    return this.stack.splice(this.stack.length - n, n)
  }

  private popMark (): unknown[] {
    const mark = this.marks.pop()
    if (mark === undefined) throw this.fail(`${OPCODE_NAMES.get(this.bytes[this.at]!) ?? 'an opcode'} without a MARK`)
    return this.stack.splice(mark)
  }

  /** The container an APPEND/SETITEM-like opcode adds to: just below its arguments, of the right kind. */
  private target<T extends Node> (kind: abstract new (...args: never[]) => T, op: string): T {
    const t = this.stack.length > this.base() ? this.stack[this.stack.length - 1] : undefined
    if (!(t instanceof kind)) throw this.fail(`${op} to something that is not a ${op === 'ADDITEMS' ? 'set' : op.startsWith('SET') ? 'dict' : 'list'}`)
    return t
  }

  private setItems (dict: DictNode, items: unknown[]): void {
    if (items.length % 2 !== 0) throw this.fail('dict items that are not key-value pairs')
    for (let i = 0; i < items.length; i += 2) {
      dict.keys.push(items[i])
      dict.values.push(items[i + 1])
    }
  }

  /** A value referenced a second time: a container so met is shared. */
  private ref (v: unknown): unknown {
    if (v instanceof Node) v.shared = true
    return v
  }

  private memoPut (index: number): void {
    if (this.stack.length <= this.base()) throw this.fail('memoizing with nothing on the stack')
    const v = this.stack[this.stack.length - 1]
    const memo = this.memo
    if (index < memo.length) { memo[index] = v; return }
    if (!this.sparseMemo.has(index) && memo.length + this.sparseMemo.size >= this.limits.maxMemo) {
      throw this.fail(`more memo entries than maxMemo (${this.limits.maxMemo})`)
    }
    if (index === memo.length) {
      memo.push(v)
      this.sparseMemo.delete(index)
    } else {
      this.sparseMemo.set(index, v)
    }
  }

  private memoGet (index: number): void {
    let v: unknown
    if (index < this.memo.length) v = this.memo[index]
    else if (this.sparseMemo.has(index)) v = this.sparseMemo.get(index)
    else throw this.fail(`a memo reference to entry ${index}, which is not there`)
    this.push(this.ref(v))
  }

  private classRef (module: string, name: string): ClassRef {
    const kind = classKind(module, name)
    if (kind === null) {
      throw this.fail(`refused the class reference ${JSON.stringify(`${module}.${name}`.slice(0, 200))}: only exceptions, ` +
        'datetime.datetime/date/time/timedelta/timezone, decimal.Decimal, set, frozenset, bytearray and _codecs.encode are read')
    }
    return new ClassRef(kind, module === '__builtin__' || module === 'exceptions' ? 'builtins' : module, name)
  }

  /** What `ref(...args)` is, for the allowed classes: data, nothing called. */
  private reduce (ref: ClassRef, args: unknown[]): unknown {
    const what = `${ref.module}.${ref.name}`
    const bad = (detail: string): RpcCodecError => this.fail(`${what} with ${detail}`)
    switch (ref.kind) {
      case 'exception': return new ExceptionNode(ref.module, ref.name, args)
      case 'datetime': {
        const s = this.state(args[0], 10, what)
        const tz = this.tzinfo(args, what)
        const year = s[0]! * 256 + s[1]!
        const month = s[2]! & 0x7f
        const day = s[3]!
        const hour = s[4]!
        const minute = s[5]!
        const second = s[6]!
        const micro = (s[7]! << 16) | (s[8]! << 8) | s[9]!
        if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59 || micro > 999_999) {
          throw bad('a state that is not a valid date and time')
        }
        const date = new Date(0)
        date.setUTCFullYear(year, month - 1, day)
        date.setUTCHours(hour, minute, second, Math.floor(micro / 1000))
        // The fields are local to the tzinfo's offset; a naive datetime is read as UTC.
        if (tz !== null) date.setTime(date.getTime() - Math.round(tz.offsetSeconds * 1000))
        return date
      }
      case 'date': {
        if (args.length !== 1) throw bad(`${args.length} arguments`)
        const s = this.state(args[0], 4, what)
        try {
          return new PyDate(s[0]! * 256 + s[1]!, s[2]!, s[3]!)
        } catch {
          throw bad('a state that is not a valid date')
        }
      }
      case 'time': {
        const s = this.state(args[0], 6, what)
        const tz = this.tzinfo(args, what)
        try {
          return new PyTime(s[0]! & 0x7f, s[1]!, s[2]!, (s[3]! << 16) | (s[4]! << 8) | s[5]!, { utcOffset: tz?.offsetSeconds ?? null, fold: (s[0]! & 0x80) !== 0 ? 1 : 0 })
        } catch {
          throw bad('a state that is not a valid time')
        }
      }
      case 'timedelta': {
        if (args.length !== 3 || !args.every((a) => typeof a === 'number' && Number.isInteger(a))) throw bad('arguments other than 3 integers')
        try {
          return new PyTimedelta(args[0] as number, args[1] as number, args[2] as number)
        } catch {
          throw bad('arguments out of range')
        }
      }
      case 'timezone': {
        const offset = args[0]
        if (args.length < 1 || args.length > 2 || !(offset instanceof PyTimedelta) || (args.length === 2 && typeof args[1] !== 'string')) {
          throw bad('arguments other than a timedelta and an optional name')
        }
        const seconds = offset.days * 86_400 + offset.seconds + offset.microseconds / 1e6
        if (Math.abs(seconds) >= 86_400) throw bad('an offset of a day or more')
        return new Timezone(seconds)
      }
      case 'decimal': {
        if (args.length !== 1 || typeof args[0] !== 'string') throw bad('arguments other than one str')
        try {
          return new PyDecimal(args[0])
        } catch {
          throw bad(`a str that is not a decimal number`)
        }
      }
      case 'set':
      case 'frozenset': {
        const set = new SetNode(ref.kind === 'frozenset')
        if (args.length === 0) return set
        const from = args[0]
        if (args.length !== 1 || !(from instanceof ListNode || from instanceof TupleNode)) throw bad('arguments other than one list or tuple')
        for (const item of from.items) set.items.push(item)
        return set
      }
      case 'bytes':
        if (args.length !== 0) throw bad('arguments (only bytes() is read)')
        return new Uint8Array(0)
      case 'bytearray': {
        if (args.length === 0) return new Uint8Array(0)
        if (args.length === 1 && args[0] instanceof Uint8Array) return args[0].slice()
        if (args.length === 2 && typeof args[0] === 'string' && isLatin1Name(args[1])) return this.latin1(args[0], what)
        throw bad('arguments other than bytes, or a str and latin-1')
      }
      case 'codecs.encode':
        if (args.length !== 2 || typeof args[0] !== 'string' || !isLatin1Name(args[1])) throw bad('arguments other than a str and latin-1')
        return this.latin1(args[0], what)
    }
  }

  /** The packed state of a datetime, date or time: bytes (or, from Python 2, a latin-1 str) of `size`. */
  private state (v: unknown, size: number, what: string): Uint8Array {
    const s = typeof v === 'string' ? this.latin1(v, what) : v
    if (!(s instanceof Uint8Array) || s.length !== size) throw this.fail(`${what} with a state that is not ${size} bytes`)
    return s
  }

  private tzinfo (args: unknown[], what: string): Timezone | null {
    if (args.length === 1) return null
    const tz = args[1]
    if (args.length !== 2 || !(tz === null || tz instanceof Timezone)) throw this.fail(`${what} with arguments other than its state and a datetime.timezone`)
    return tz
  }

  private latin1 (s: string, what: string): Uint8Array {
    const out = new Uint8Array(s.length)
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i)
      if (c > 0xff) throw this.fail(`${what} of a str with characters beyond latin-1`)
      out[i] = c
    }
    return out
  }

  private build_ (target: ExceptionNode, state: unknown): void {
    if (state === null) return
    if (state instanceof DictNode) { target.states.push(state); return }
    // (dict or None, slot dict or None): both are attributes.
    if (state instanceof TupleNode && state.items.length === 2) {
      for (const part of state.items) {
        if (part === null) continue
        if (!(part instanceof DictNode)) throw this.fail('BUILD on an exception with a state that is not dicts')
        target.states.push(part)
      }
      return
    }
    throw this.fail('BUILD on an exception with a state that is not a dict')
  }

  // ---- reading the input ------------------------------------------------------

  /** Advances past `n` bytes and returns where they start; refused unless they are all there. */
  private take (n: number): number {
    if (n > this.end - this.pos) throw this.fail(`a length of ${n} bytes but only ${this.end - this.pos} remain`)
    const at = this.pos
    this.pos += n
    return at
  }

  private u8 (): number { return this.bytes[this.take(1)]! }

  private u32 (): number {
    const at = this.take(4)
    const b = this.bytes
    return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0
  }

  private i32 (): number { return this.u32() | 0 }

  private u64 (): number {
    const low = this.u32()
    const high = this.u32()
    if (high > 0x1fffff) throw this.fail('a 64-bit length beyond 2^53')
    return high * 0x1_0000_0000 + low
  }

  /** A two's complement little-endian integer of `n` bytes (LONG1, LONG4). */
  private long (n: number): number | bigint {
    if (n > this.limits.maxIntegerBytes) throw this.fail(`an integer of ${n} bytes, more than maxIntegerBytes (${this.limits.maxIntegerBytes})`)
    const at = this.take(n)
    const b = this.bytes
    if (n === 0) return 0
    if (n <= 6) {
      let v = 0
      for (let i = n - 1; i >= 0; i--) v = v * 256 + b[at + i]!
      // Sign: the top bit of the last byte.
      return (b[at + n - 1]! & 0x80) !== 0 ? v - 2 ** (8 * n) : v
    }
    let hex = ''
    for (let i = n - 1; i >= 0; i--) hex += HEX[b[at + i]!]!
    let v = BigInt('0x' + hex)
    if ((b[at + n - 1]! & 0x80) !== 0) v -= 1n << BigInt(8 * n)
    return v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : v
  }

  private raw (n: number): Uint8Array {
    const at = this.take(n)
    return this.bytes.slice(at, at + n)
  }

  /** A str: UTF-8, lone surrogates allowed (Python writes them with 'surrogatepass'). */
  private text (n: number): string {
    const at = this.take(n)
    const b = this.bytes
    if (n <= SHORT_STRING) {
      let s = ''
      let i = at
      for (; i < at + n; i++) {
        const c = b[i]!
        if (c >= 0x80) break
        s += String.fromCharCode(c)
      }
      if (i === at + n) return s
    }
    try {
      return strictUtf8.decode(b.subarray(at, at + n))
    } catch {
      const s = decodeSurrogatePass(b, at, at + n)
      if (s === null) {
        this.at = at
        throw this.fail('a str that is not valid UTF-8')
      }
      return s
    }
  }

  /** A Python 2 str (BINSTRING): read as ASCII, as Python 3's unpickler does by default. */
  private ascii (n: number): string {
    const at = this.take(n)
    let s = ''
    for (let i = at; i < at + n; i++) {
      const c = this.bytes[i]!
      if (c >= 0x80) throw this.fail('a Python 2 str that is not ASCII')
      s += String.fromCharCode(c)
    }
    return s
  }

  /** A newline-terminated ASCII/UTF-8 argument of GLOBAL, at most 256 bytes. */
  private line (what: string): string {
    const b = this.bytes
    const start = this.pos
    const limit = Math.min(this.end, start + 257)
    for (let i = start; i < limit; i++) {
      if (b[i] === 0x0a) {
        this.pos = i + 1
        try {
          return strictUtf8.decode(b.subarray(start, i))
        } catch {
          throw this.fail(`a GLOBAL ${what} that is not valid UTF-8`)
        }
      }
    }
    throw this.fail(`a GLOBAL ${what} without its newline within 256 bytes`)
  }

  // ---- second pass: JavaScript values -----------------------------------------

  private count (n: number): void {
    this.total += n
    if (this.total > this.limits.maxValues) throw this.fail(`more values than maxValues (${this.limits.maxValues}), counting shared references as copies`)
  }

  /** A container at `level` (0 for the top): refused at maxDepth. */
  private reach (level: number): void {
    if (level >= this.limits.maxDepth) throw this.fail(`values nested deeper than maxDepth (${this.limits.maxDepth})`)
    if (level > this.deepest) this.deepest = level
  }

  private build (v: unknown, level: number): unknown {
    if (!(v instanceof Node)) {
      if (v instanceof ClassRef) throw this.fail(`the class ${v.module}.${v.name} as a value (only calls of it are read)`)
      if (v instanceof Timezone) throw this.fail('a datetime.timezone other than the tzinfo of a datetime or time')
      this.count(1)
      return v
    }
    if (!v.shared) return this.buildNode(v, level)
    if (v.done) {
      this.count(v.weight)
      this.reach(level + v.span)
      return v.out
    }
    if (v.visiting) throw this.fail('a value that contains itself (cyclic values are not carried)')
    v.visiting = true
    const before = this.total
    const deepest = this.deepest
    this.deepest = level
    const out = this.buildNode(v, level)
    v.weight = this.total - before
    v.span = this.deepest - level
    this.deepest = Math.max(deepest, this.deepest)
    v.visiting = false
    v.done = true
    v.out = out
    return out
  }

  private buildNode (v: Node, level: number): unknown {
    this.reach(level)
    this.count(1)
    const next = level + 1
    if (v instanceof ListNode || v instanceof TupleNode) {
      const out: unknown[] = []
      for (const item of v.items) out.push(this.build(item, next))
      return out
    }
    if (v instanceof DictNode) {
      const keys: unknown[] = []
      let strings = true
      for (const key of v.keys) {
        this.hashable(key, 'a dict key')
        const k = this.build(key, next)
        if (typeof k !== 'string') strings = false
        keys.push(k)
      }
      if (strings) {
        const out: Record<string, unknown> = {}
        for (let i = 0; i < keys.length; i++) setProperty(out, keys[i] as string, this.build(v.values[i], next))
        return out
      }
      const out = new Map<unknown, unknown>()
      for (let i = 0; i < keys.length; i++) out.set(keys[i], this.build(v.values[i], next))
      return out
    }
    if (v instanceof SetNode) {
      const out = new Set<unknown>()
      for (const item of v.items) {
        this.hashable(item, 'a set member')
        out.add(this.build(item, next))
      }
      return out
    }
    const e = v as ExceptionNode
    const args: unknown[] = []
    for (const a of e.args) args.push(this.build(a, next))
    const attributes: Record<string, unknown> = {}
    for (const state of e.states) {
      for (let i = 0; i < state.keys.length; i++) {
        const key = state.keys[i]
        if (typeof key !== 'string') throw this.fail(`an attribute of ${e.module}.${e.name} whose name is not a str`)
        const value = this.build(state.values[i], next)
        if (!EXCEPTION_RESERVED.has(key)) setProperty(attributes, key, value)
      }
    }
    const error = new PythonException(e.name, args, { module: e.module, attributes })
    // A decoded exception has no JavaScript stack; its first line as Python prints it is what is known.
    error.stack = `${e.module === 'builtins' || e.module === '__main__' ? '' : `${e.module}.`}${e.name}: ${error.message}`
    return error
  }

  /** Python refuses lists, dicts and sets as keys and members: so does this codec. */
  private hashable (v: unknown, what: string): void {
    if (v instanceof ListNode || v instanceof DictNode || (v instanceof SetNode && !v.frozen)) {
      throw this.fail(`${what} that Python cannot hash (a ${v instanceof ListNode ? 'list' : v instanceof DictNode ? 'dict' : 'set'})`)
    }
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

function isLatin1Name (v: unknown): boolean {
  return typeof v === 'string' && /^(?:latin[-_]?1|iso[-_]?8859[-_]?1|l1)$/i.test(v)
}

/** Sets `key` as plain data: assigning `__proto__` (or a name Object.prototype has a setter for) would not. */
function setProperty (o: Record<string, unknown>, key: string, value: unknown): void {
  if (key in Object.prototype) Object.defineProperty(o, key, { value, writable: true, enumerable: true, configurable: true })
  else o[key] = value
}

/**
 * UTF-8 in which surrogate code points may appear as three-byte sequences, as
 * Python's 'surrogatepass' writes a str with lone surrogates; null for anything
 * else that is not UTF-8 (overlong forms, stray continuation bytes, beyond U+10FFFF).
 */
function decodeSurrogatePass (b: Uint8Array, start: number, end: number): string | null {
  const units: number[] = []
  let out = ''
  for (let i = start; i < end;) {
    const c = b[i]!
    let cp: number
    let n: number
    if (c < 0x80) { cp = c; n = 0 } else if (c >= 0xc2 && c <= 0xdf) { cp = c & 0x1f; n = 1 } else if (c >= 0xe0 && c <= 0xef) { cp = c & 0x0f; n = 2 } else if (c >= 0xf0 && c <= 0xf4) { cp = c & 0x07; n = 3 } else return null
    // The sequence's last byte must be within the string.
    if (i + n >= end) return null
    for (let k = 1; k <= n; k++) {
      const cc = b[i + k]!
      if ((cc & 0xc0) !== 0x80) return null
      cp = (cp << 6) | (cc & 0x3f)
    }
    if ((n === 2 && cp < 0x800) || (n === 3 && (cp < 0x10000 || cp > 0x10ffff))) return null
    i += n + 1
    if (cp > 0xffff) {
      cp -= 0x10000
      units.push(0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff))
    } else {
      units.push(cp)
    }
    if (units.length >= 4096) { out += String.fromCharCode(...units); units.length = 0 }
  }
  return out + String.fromCharCode(...units)
}
