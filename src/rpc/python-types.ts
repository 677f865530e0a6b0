// Python values that JavaScript has no type for, as they cross to and from
// Python snakeMQ peers in pickles (src/rpc/pickle-decode.ts, pickle-encode.ts):
// decimal.Decimal, datetime.date, datetime.time, datetime.timedelta and Python
// exceptions. Each is plain data: decoding one runs nothing, and encoding one
// writes the Python class reference and its constructor arguments, so a value a
// Python peer sent can be sent back as the same Python type.
import { InvalidArgumentError } from '../errors.ts'

/** Python's Decimal string syntax: what `str(Decimal(...))` prints and `Decimal(str)` reads. */
const DECIMAL_SYNTAX = /^[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[sS]?[nN][aA][nN]\d*)$/

/**
 * A Python `decimal.Decimal`, kept as its exact text (`'1.10'`, `'-0'`,
 * `'1E+3'`, `'NaN'`): JavaScript numbers would round it. Sent back to Python it
 * is a Decimal again. `toString()` and `toJSON()` give the text, `toNumber()`
 * the nearest number.
 */
export class PyDecimal {
  /** The decimal as Python's `str()` prints it. */
  readonly value: string

  /** Takes Decimal syntax (`'3.14'`, `'-1e-7'`, `'Infinity'`), a finite number or a bigint; InvalidArgumentError for anything else. */
  constructor (value: string | number | bigint) {
    const text = typeof value === 'string' ? value.trim() : typeof value === 'bigint' ? value.toString() : Number.isFinite(value) ? String(value) : ''
    if (text.length > 10_000 || !DECIMAL_SYNTAX.test(text)) throw new InvalidArgumentError(`not a decimal number: ${JSON.stringify(String(value).slice(0, 100))}`)
    this.value = text
  }

  toNumber (): number { return Number(this.value.replace(/^([+-]?)s?nan\d*$/i, 'NaN').replace(/^([+-]?)inf(inity)?$/i, '$1Infinity')) }
  toString (): string { return this.value }
  toJSON (): string { return this.value }
}

function checkInt (value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${what} must be an integer from ${min} to ${max}, got ${String(value)}`)
  }
  return value
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0')

/** Days in `month` (1-12) of `year`, in the proleptic Gregorian calendar Python uses. */
export function daysInMonth (year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)) ? 29 : 28
  return [4, 6, 9, 11].includes(month) ? 30 : 31
}

/** A Python `datetime.date`: a calendar day, no time, no time zone. `toString()` is ISO 8601 (`2026-12-02`). */
export class PyDate {
  constructor (readonly year: number, readonly month: number, readonly day: number) {
    checkInt(year, 'year', 1, 9999)
    checkInt(month, 'month', 1, 12)
    checkInt(day, 'day', 1, daysInMonth(year, month))
  }

  /** The day of `date` in UTC. */
  static fromDate (date: Date): PyDate {
    return new PyDate(date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate())
  }

  /** Midnight UTC of this day. */
  toDate (): Date {
    const d = new Date(0)
    d.setUTCFullYear(this.year, this.month - 1, this.day)
    return d
  }

  toString (): string { return `${pad(this.year, 4)}-${pad(this.month, 2)}-${pad(this.day, 2)}` }
  toJSON (): string { return this.toString() }
}

/** Options of a PyTime. */
export interface PyTimeOptions {
  /**
   * The time's fixed offset from UTC, in seconds (Python's `timezone(timedelta(seconds=...))`);
   * null (the default) for a naive time. At most a day either way, exclusive.
   */
  utcOffset?: number | null
  /** Python's `fold` (0 or 1): which of two equal wall-clock times at a DST change. Default 0. */
  fold?: 0 | 1
}

/** A Python `datetime.time`: a time of day, naive or with a fixed UTC offset. `toString()` is ISO 8601 (`15:42:07.123000`). */
export class PyTime {
  /** Offset from UTC in seconds, or null for a naive time. */
  readonly utcOffset: number | null
  readonly fold: 0 | 1

  constructor (readonly hour: number, readonly minute: number, readonly second = 0, readonly microsecond = 0, options: PyTimeOptions = {}) {
    checkInt(hour, 'hour', 0, 23)
    checkInt(minute, 'minute', 0, 59)
    checkInt(second, 'second', 0, 59)
    checkInt(microsecond, 'microsecond', 0, 999_999)
    const offset = options.utcOffset ?? null
    if (offset !== null && (typeof offset !== 'number' || !Number.isFinite(offset) || Math.abs(offset) >= 86_400)) {
      throw new InvalidArgumentError(`utcOffset must be seconds strictly between -86400 and 86400, or null; got ${String(offset)}`)
    }
    this.utcOffset = offset
    this.fold = options.fold === 1 ? 1 : 0
  }

  toString (): string {
    let s = `${pad(this.hour, 2)}:${pad(this.minute, 2)}:${pad(this.second, 2)}`
    if (this.microsecond !== 0) s += `.${pad(this.microsecond, 6)}`
    if (this.utcOffset !== null) s += formatOffset(this.utcOffset)
    return s
  }

  toJSON (): string { return this.toString() }
}

function formatOffset (seconds: number): string {
  const sign = seconds < 0 ? '-' : '+'
  const abs = Math.abs(seconds)
  const h = Math.floor(abs / 3600)
  const m = Math.floor((abs % 3600) / 60)
  const s = abs % 60
  return `${sign}${pad(h, 2)}:${pad(m, 2)}${s !== 0 ? `:${pad(Math.floor(s), 2)}` : ''}`
}

const MAX_TIMEDELTA_DAYS = 999_999_999

/**
 * A Python `datetime.timedelta`, normalized as Python does: `days` (any sign),
 * `seconds` (0 to 86,399), `microseconds` (0 to 999,999). `toMilliseconds()`
 * gives it as a JavaScript duration; `toString()` as Python's `str()` prints it.
 */
export class PyTimedelta {
  readonly days: number
  readonly seconds: number
  readonly microseconds: number

  /** Integers of any sign, carried into range as Python's constructor does (`new PyTimedelta(0, -1)` is `-1 day, 23:59:59`). */
  constructor (days = 0, seconds = 0, microseconds = 0) {
    for (const [v, what] of [[days, 'days'], [seconds, 'seconds'], [microseconds, 'microseconds']] as const) {
      if (!Number.isSafeInteger(v)) throw new InvalidArgumentError(`timedelta ${what} must be a safe integer, got ${String(v)}`)
    }
    // Carried with BigInt: days * 86,400,000,000 passes 2^53 long before the day limit.
    const total = (BigInt(days) * 86_400n + BigInt(seconds)) * 1_000_000n + BigInt(microseconds)
    const perDay = 86_400_000_000n
    let d = total / perDay
    let rest = total % perDay
    if (rest < 0n) { rest += perDay; d -= 1n }
    if (d > BigInt(MAX_TIMEDELTA_DAYS) || d < -BigInt(MAX_TIMEDELTA_DAYS)) throw new InvalidArgumentError(`a timedelta of ${d} days is out of Python's range (at most 999,999,999 either way)`)
    this.days = Number(d)
    this.seconds = Number(rest / 1_000_000n)
    this.microseconds = Number(rest % 1_000_000n)
  }

  /** A duration in milliseconds, to the microsecond (`fromMilliseconds(1.5)` is 1,500 microseconds). */
  static fromMilliseconds (ms: number): PyTimedelta {
    if (!Number.isFinite(ms)) throw new InvalidArgumentError(`not a finite number of milliseconds: ${String(ms)}`)
    return new PyTimedelta(0, 0, Math.round(ms * 1000))
  }

  /** The duration in milliseconds (fractional below a millisecond). */
  toMilliseconds (): number { return (this.days * 86_400 + this.seconds) * 1000 + this.microseconds / 1000 }

  toString (): string {
    const h = Math.floor(this.seconds / 3600)
    const m = Math.floor((this.seconds % 3600) / 60)
    const s = this.seconds % 60
    let text = `${h}:${pad(m, 2)}:${pad(s, 2)}`
    if (this.microseconds !== 0) text += `.${pad(this.microseconds, 6)}`
    if (this.days !== 0) text = `${this.days} day${Math.abs(this.days) === 1 ? '' : 's'}, ${text}`
    return text
  }

  toJSON (): string { return this.toString() }
}

/**
 * Python's built-in exception classes (3.8 to 3.13), by name. A JavaScript error
 * whose name is one of those deriving from Exception goes to Python as that
 * class; any other as `Exception`. The BaseException family outside Exception
 * (SystemExit, KeyboardInterrupt, ...) is never sent: raised in a Python caller
 * it would stop its thread or its process.
 */
export const PYTHON_EXCEPTIONS: ReadonlySet<string> = new Set([
  'ArithmeticError', 'AssertionError', 'AttributeError', 'BlockingIOError', 'BrokenPipeError', 'BufferError',
  'BytesWarning', 'ChildProcessError', 'ConnectionAbortedError', 'ConnectionError', 'ConnectionRefusedError',
  'ConnectionResetError', 'DeprecationWarning', 'EOFError', 'EncodingWarning', 'EnvironmentError', 'Exception',
  'ExceptionGroup', 'FileExistsError', 'FileNotFoundError', 'FloatingPointError', 'FutureWarning', 'IOError',
  'ImportError', 'ImportWarning', 'IndentationError', 'IndexError', 'InterruptedError', 'IsADirectoryError',
  'KeyError', 'LookupError', 'MemoryError', 'ModuleNotFoundError', 'NameError', 'NotADirectoryError',
  'NotImplementedError', 'OSError', 'OverflowError', 'PendingDeprecationWarning', 'PermissionError',
  'ProcessLookupError', 'PythonFinalizationError', 'RecursionError', 'ReferenceError', 'ResourceWarning',
  'RuntimeError', 'RuntimeWarning', 'StopAsyncIteration', 'StopIteration', 'SyntaxError', 'SyntaxWarning',
  'SystemError', 'TabError', 'TimeoutError', 'TypeError', 'UnboundLocalError', 'UnicodeDecodeError',
  'UnicodeEncodeError', 'UnicodeError', 'UnicodeTranslateError', 'UnicodeWarning', 'UserWarning', 'ValueError',
  'Warning', 'ZeroDivisionError'
])

/** Built-in exceptions outside Exception: read from Python like any other, never sent to it. */
export const PYTHON_BASE_EXCEPTIONS: ReadonlySet<string> = new Set([
  'BaseException', 'BaseExceptionGroup', 'GeneratorExit', 'KeyboardInterrupt', 'SystemExit'
])

/** Property names of a PythonException that are its own, not attributes of the Python object. */
export const EXCEPTION_RESERVED = new Set(['name', 'message', 'stack', 'cause', 'module', 'args', 'constructor', '__proto__'])

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/

/** True for a dotted Python name: `ValueError`, `snakemq.rpc`, `Outer.InnerError`. */
export function isDottedName (s: string): boolean {
  if (s.length === 0 || s.length > 256) return false
  for (const part of s.split('.')) if (!IDENTIFIER.test(part)) return false
  return true
}

/**
 * A Python exception, as data: the class `module.name`, its `args` and its
 * attributes (the instance's `__dict__`, own enumerable properties here). A
 * Python peer's exception decodes to one; one thrown by an RPC method goes to a
 * Python caller as that very exception, e.g.
 * `throw new PythonException('ValueError', ['bad value', 42])` or
 * `new PythonException('AppError', ['went wrong'], { module: 'myapp.errors' })`.
 * `message` is Python's `str()` of it for one argument (the argument itself
 * when it is a string), the arguments' repr for several.
 */
export class PythonException extends Error {
  static override readonly name = 'PythonException'
  /** The class's qualified name, e.g. `ValueError`. */
  override name: string
  /** The class's module, e.g. `builtins`, `__main__`, `snakemq.rpc`. */
  readonly module: string
  /** The exception's args, as Python's `exc.args`. */
  readonly args: unknown[]

  constructor (name: string, args: readonly unknown[] = [], options: { module?: string, attributes?: Record<string, unknown> } = {}) {
    const module = options.module ?? 'builtins'
    if (typeof name !== 'string' || !isDottedName(name)) throw new InvalidArgumentError(`not a Python class name: ${JSON.stringify(name)}`)
    if (typeof module !== 'string' || !isDottedName(module)) throw new InvalidArgumentError(`not a Python module name: ${JSON.stringify(module)}`)
    if (!Array.isArray(args)) throw new InvalidArgumentError('the args of a PythonException must be an array')
    super(exceptionMessage(args))
    this.name = name
    this.module = module
    this.args = (args as readonly unknown[]).slice()
    for (const [key, value] of Object.entries(options.attributes ?? {})) {
      if (EXCEPTION_RESERVED.has(key)) continue
      Object.defineProperty(this, key, { value, writable: true, enumerable: true, configurable: true })
    }
  }

  /** The attributes (the Python `__dict__`): own enumerable properties but the reserved ones. */
  attributes (): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(this)) {
      if (EXCEPTION_RESERVED.has(key)) continue
      Object.defineProperty(out, key, { value: (this as unknown as Record<string, unknown>)[key], writable: true, enumerable: true, configurable: true })
    }
    return out
  }
}

/** Python's str() of an exception with these args, close enough for a message. */
export function exceptionMessage (args: readonly unknown[]): string {
  if (args.length === 0) return ''
  if (args.length === 1) return typeof args[0] === 'string' ? args[0] : pyRepr(args[0], 0)
  return pyRepr(args, 0, true)
}

/** A short repr of a decoded value, in Python's notation, for messages only. */
export function pyRepr (v: unknown, depth: number, tuple = false): string {
  if (depth > 8) return '...'
  if (v === null || v === undefined) return 'None'
  if (v === true) return 'True'
  if (v === false) return 'False'
  if (typeof v === 'string') return quote(v)
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : Number.isNaN(v) ? 'nan' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : String(v)
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof Uint8Array) {
    let s = "b'"
    for (const b of v.subarray(0, 256)) s += b === 0x27 || b === 0x5c ? `\\${String.fromCharCode(b)}` : b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`
    return s + (v.length > 256 ? "...'" : "'")
  }
  if (Array.isArray(v)) {
    const items = v.slice(0, 32).map((x) => pyRepr(x, depth + 1))
    if (v.length > 32) items.push('...')
    return tuple ? `(${items.join(', ')}${v.length === 1 ? ',' : ''})` : `[${items.join(', ')}]`
  }
  if (v instanceof PyDecimal) return `Decimal('${v.value}')`
  if (v instanceof Error) return `${v.name}(${quote(v.message)})`
  if (v instanceof PyDate || v instanceof PyTime || v instanceof PyTimedelta) return v.toString()
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString()
  return '{...}'
}

function quote (s: string): string {
  const body = (s.length > 1000 ? s.slice(0, 1000) + '...' : s).replace(/[\\'\n\r\t]/g, (c) => ({ '\\': '\\\\', "'": "\\'", '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c]!)
  return `'${body}'`
}
