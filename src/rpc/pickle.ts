// What the data-only pickle codec (pickle-decode.ts, pickle-encode.ts) shares:
// the opcodes of Python's pickle protocols 2 to 5, the class references it reads
// as data, and its limits. Python snakeMQ peers send their RPC requests and
// replies as pickles; unpickling in Python can call any importable callable, so
// this codec reads only data opcodes and a fixed list of classes, and never
// calls, imports or evaluates anything.
import { InvalidArgumentError } from '../errors.ts'
import { defaultCodecLimits, type RpcCodecOptions } from './codec.ts'
import { PYTHON_BASE_EXCEPTIONS, PYTHON_EXCEPTIONS, isDottedName } from './python-types.ts'

/** Limits of the pickle codec: those of the RPC codec, and two that only pickles need. */
export interface PickleCodecOptions extends RpcCodecOptions {
  /**
   * The most entries a pickle's memo (its table of shared references) may hold.
   * Python's pickler memoizes every string, bytes object and container, so a
   * pickle has about as many entries as values. Default 1,048,576.
   */
  maxMemo?: number
  /**
   * The longest integer a pickle may carry, in bytes of its two's complement
   * form (LONG1, LONG4). Default 1,024 (8,192 bits, about 2,466 decimal digits).
   */
  maxIntegerBytes?: number
}

/** The pickle codec's limits where an option is not given; `maxDepth`, `maxBytes`, `maxValues` are the RPC codec's. */
export const defaultPickleLimits: Readonly<Required<PickleCodecOptions>> = Object.freeze({
  ...defaultCodecLimits,
  maxMemo: 1024 * 1024,
  maxIntegerBytes: 1024
})

/** @internal Resolved limits. */
export interface PickleLimits {
  maxDepth: number
  maxBytes: number
  maxValues: number
  maxMemo: number
  maxIntegerBytes: number
}

/** @internal The limits of `options`, checked; InvalidArgumentError names a bad one. */
export function resolvePickleLimits (options: PickleCodecOptions | undefined): PickleLimits {
  if (options === undefined) return defaultPickleLimits
  const limit = (name: keyof PickleLimits): number => {
    const value = options[name]
    if (value === undefined) return defaultPickleLimits[name]
    if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${String(value)}`)
    return value
  }
  return {
    maxDepth: limit('maxDepth'),
    maxBytes: limit('maxBytes'),
    maxValues: limit('maxValues'),
    maxMemo: limit('maxMemo'),
    maxIntegerBytes: limit('maxIntegerBytes')
  }
}

/** @internal The opcodes this codec knows, by name (Python's Lib/pickletools.py documents each). */
export const Op = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  FLOAT: 0x46, // F, protocol 0 text
  INT: 0x49, // I, protocol 0 text
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  LONG: 0x4c, // L, protocol 0 text
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  PERSID: 0x50, // P
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  STRING: 0x53, // S, protocol 0 text
  BINSTRING: 0x54, // T
  SHORT_BINSTRING: 0x55, // U
  UNICODE: 0x56, // V, protocol 0 text
  BINUNICODE: 0x58, // X
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  DICT: 0x64, // d
  EMPTY_DICT: 0x7d, // }
  APPENDS: 0x65, // e
  GET: 0x67, // g, protocol 0 text
  BINGET: 0x68, // h
  INST: 0x69, // i
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  EMPTY_LIST: 0x5d, // ]
  OBJ: 0x6f, // o
  PUT: 0x70, // p, protocol 0 text
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  EMPTY_TUPLE: 0x29, // )
  SETITEMS: 0x75, // u
  BINFLOAT: 0x47, // G
  PROTO: 0x80,
  NEWOBJ: 0x81,
  EXT1: 0x82,
  EXT2: 0x83,
  EXT4: 0x84,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  BINBYTES: 0x42, // B
  SHORT_BINBYTES: 0x43, // C
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
  NEXT_BUFFER: 0x97,
  READONLY_BUFFER: 0x98
} as const

/** @internal What an allowed class reference stands for. */
export type ClassKind =
  | 'exception' | 'datetime' | 'date' | 'time' | 'timedelta' | 'timezone' | 'decimal'
  | 'set' | 'frozenset' | 'bytearray' | 'bytes' | 'codecs.encode'

/** The classes (module, then name) read as data, besides exceptions. */
const DATA_CLASSES = new Map<string, ReadonlyMap<string, ClassKind>>([
  ['datetime', new Map<string, ClassKind>([['datetime', 'datetime'], ['date', 'date'], ['time', 'time'], ['timedelta', 'timedelta'], ['timezone', 'timezone']])],
  ['decimal', new Map<string, ClassKind>([['Decimal', 'decimal']])],
  ['builtins', new Map<string, ClassKind>([['set', 'set'], ['frozenset', 'frozenset'], ['bytearray', 'bytearray'], ['bytes', 'bytes']])],
  // Protocol 2 writes Python 2's names (pickle's fix_imports): builtins as __builtin__, exceptions as exceptions.
  ['__builtin__', new Map<string, ClassKind>([['set', 'set'], ['frozenset', 'frozenset'], ['bytearray', 'bytearray'], ['bytes', 'bytes']])],
  // Protocol 2 has no bytes opcode: bytes travel as _codecs.encode(text, 'latin1').
  ['_codecs', new Map<string, ClassKind>([['encode', 'codecs.encode']])]
])

/** snakeMQ's own exceptions (snakemq/rpc.py), some of which the naming rule below would miss. */
const SNAKEMQ_EXCEPTIONS = new Set(['Error', 'NoInstanceError', 'NoMethodError', 'SignalCallWarning', 'CallError', 'NotConnected', 'PartialCall'])

/** PEP 8 names exception classes with one of these endings. */
const EXCEPTION_NAME = /(?:Error|Exception|Warning)$/

/**
 * @internal What the class reference `module.name` stands for, or null when it is
 * not one this codec reads: the data classes above, Python's built-in
 * exceptions, snakeMQ's, and any other class named like an exception (its last
 * part ends in Error, Exception or Warning). Nothing else: not `os.system`, not
 * `builtins.eval`, not `copyreg._reconstructor`.
 */
export function classKind (module: string, name: string): ClassKind | null {
  const data = DATA_CLASSES.get(module)?.get(name)
  if (data !== undefined) return data
  if (module === 'builtins' || module === '__builtin__' || module === 'exceptions') {
    return PYTHON_EXCEPTIONS.has(name) || PYTHON_BASE_EXCEPTIONS.has(name) ? 'exception' : null
  }
  if (!isDottedName(module) || !isDottedName(name)) return null
  if (module === 'snakemq.rpc' && SNAKEMQ_EXCEPTIONS.has(name)) return 'exception'
  return EXCEPTION_NAME.test(name) ? 'exception' : null
}

/** @internal An array that goes to Python as a tuple rather than a list (RPC's `args`). */
export class PickleTuple {
  constructor (readonly items: readonly unknown[]) {}
}
