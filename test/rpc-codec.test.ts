// The RPC value codec: every supported type round-trips exactly, decoding bytes
// from the network cannot pollute prototypes or run code, unsupported values and
// broken or hostile bytes give RpcCodecError (never a crash, hang or another
// error), and the depth, size and value-count limits hold on both sides.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { InvalidArgumentError, SnakeMQError } from '../src/errors.ts'
import { decodeValue, defaultCodecLimits, encodeValue, type RpcCodecOptions } from '../src/rpc/codec.ts'
import { RpcCodecError } from '../src/rpc/errors.ts'

const roundTrip = (value: unknown, options?: RpcCodecOptions): unknown => decodeValue(encodeValue(value, options), options)

const SPECIAL_ERROR_PROPS = new Set(['name', 'message', 'stack', 'cause', 'code', 'errors'])

/**
 * Asserts that `actual` (decoded) is `expected` (encoded) as the codec promises:
 * same types and values, Object.is for numbers, the same order of keys, entries and
 * members, holes read as undefined, null-prototype objects decoded as plain ones,
 * Buffers as Uint8Arrays, errors by name, message, stack, cause, code and props.
 */
function assertSame (actual: unknown, expected: unknown, path = 'value'): void {
  if (typeof expected !== 'object' || expected === null) {
    assert.ok(Object.is(actual, expected), `${path}: ${String(actual)} is not ${String(expected)}`)
    return
  }
  assert.ok(typeof actual === 'object' && actual !== null, `${path}: not an object`)
  if (expected instanceof Uint8Array) {
    assert.equal(Object.getPrototypeOf(actual), Uint8Array.prototype, `${path}: not a plain Uint8Array`)
    assert.deepEqual(Array.from(actual as Uint8Array), Array.from(expected), `${path}: bytes differ`)
  } else if (expected instanceof Date) {
    assert.ok(actual instanceof Date, `${path}: not a Date`)
    assert.ok(Object.is(actual.getTime(), expected.getTime()), `${path}: time differs`)
  } else if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path}: not an array`)
    assert.equal(actual.length, expected.length, `${path}: length differs`)
    for (let i = 0; i < expected.length; i++) {
      assert.ok(Object.hasOwn(actual, i), `${path}[${i}] is a hole`)
      assertSame(actual[i], expected[i], `${path}[${i}]`)
    }
  } else if (expected instanceof Map) {
    assert.ok(actual instanceof Map, `${path}: not a Map`)
    const a = [...actual]
    const e = [...expected]
    assert.equal(a.length, e.length, `${path}: size differs`)
    e.forEach(([key, value], i) => {
      assertSame(a[i]?.[0], key, `${path}<key ${i}>`)
      assertSame(a[i]?.[1], value, `${path}<value ${i}>`)
    })
  } else if (expected instanceof Set) {
    assert.ok(actual instanceof Set, `${path}: not a Set`)
    const a = [...actual]
    const e = [...expected]
    assert.equal(a.length, e.length, `${path}: size differs`)
    e.forEach((member, i) => { assertSame(a[i], member, `${path}<member ${i}>`) })
  } else if (expected instanceof Error) {
    assert.ok(actual instanceof Error, `${path}: not an Error`)
    assert.equal(actual.name, expected.name, `${path}: name differs`)
    assert.equal(actual.message, expected.message, `${path}: message differs`)
    assert.equal(actual.stack, expected.stack, `${path}: stack differs`)
    assert.equal('cause' in actual, 'cause' in expected, `${path}: cause presence differs`)
    if ('cause' in expected) assertSame(actual.cause, expected.cause, `${path}.cause`)
    assertSame((actual as { code?: unknown }).code, (expected as { code?: unknown }).code, `${path}.code`)
    const keys = Object.keys(expected).filter((key) => !SPECIAL_ERROR_PROPS.has(key))
    assert.deepEqual(Object.keys(actual).filter((key) => !SPECIAL_ERROR_PROPS.has(key)), keys, `${path}: keys differ`)
    for (const key of keys) assertSame(Object.getOwnPropertyDescriptor(actual, key)?.value, Object.getOwnPropertyDescriptor(expected, key)?.value, `${path}.${key}`)
  } else {
    assert.equal(Object.getPrototypeOf(actual), Object.prototype, `${path}: not a plain object`)
    const keys = Object.keys(expected)
    assert.deepEqual(Object.keys(actual), keys, `${path}: keys differ`)
    for (const key of keys) {
      const descriptor = Object.getOwnPropertyDescriptor(actual, key)
      assert.ok(descriptor !== undefined && 'value' in descriptor && descriptor.enumerable === true, `${path}.${key} is not an own data property`)
      assertSame(descriptor.value, (expected as Record<string, unknown>)[key], `${path}.${key}`)
    }
  }
}

/** Decodes `bytes` and asserts that it either returned or threw RpcCodecError, nothing else. */
function decodesOrRefuses (bytes: Uint8Array, options?: RpcCodecOptions): void {
  try {
    decodeValue(bytes, options)
  } catch (err) {
    if (!(err instanceof RpcCodecError)) assert.fail(`decoding ${Buffer.from(bytes).toString('hex')} threw ${String(err)}`)
  }
}

function nestedArrays (depth: number): unknown[] {
  let value: unknown[] = []
  for (let i = 1; i < depth; i++) value = [value]
  return value
}

const isRpcCodecError = (pattern?: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof RpcCodecError, `expected RpcCodecError, got ${String(err)}`)
  assert.equal(err.code, 'ERR_RPC_CODEC')
  if (pattern !== undefined) assert.match(err.message, pattern)
  return true
}

/** Bytes of a varint, for hand-made encodings. */
function varint (n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80) }
  out.push(n)
  return out
}

const bytesOf = (...parts: Array<number | number[]>): Uint8Array => Uint8Array.from(parts.flat())
const utf8 = (s: string): number[] => [...varint(Buffer.byteLength(s)), ...Buffer.from(s)]

void describe('round trips', () => {
  void test('scalars keep their exact value, including -0, NaN and the infinities', () => {
    const values = [undefined, null, true, false, 0, -0, 1, -1, 127, 128, -128, 255, 256, 65535, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32 + 1,
      Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 53, -(2 ** 53), 1e300, -1e-300, 0.1, Math.PI, Number.EPSILON,
      Number.MIN_VALUE, Number.MAX_VALUE, NaN, Infinity, -Infinity]
    for (const value of values) assertSame(roundTrip(value), value, `value ${String(value)}`)
  })

  void test('small integers take one byte and [1, 2] takes four', () => {
    assert.equal(encodeValue(0).length, 1)
    assert.equal(encodeValue(127).length, 1)
    assert.equal(encodeValue(128).length, 3)
    assert.deepEqual(Array.from(encodeValue([1, 2])), [0x09, 0x02, 0x81, 0x82])
  })

  void test('strings: empty, long, non-ASCII, astral, a leading BOM and NUL survive', () => {
    const values = ['', 'a', 'hello', 'x'.repeat(127), 'x'.repeat(128), 'y'.repeat(100_000), 'héllo wörld', '☃', '😀 emoji',
      '\uFEFFbom first', 'nul\u0000inside', 'ü'.repeat(40), '日本語'.repeat(1000)]
    for (const value of values) assertSame(roundTrip(value), value)
  })

  void test('BigInts of any size and sign, beyond 2^64', () => {
    const values = [0n, 1n, -1n, 255n, 256n, -256n, 2n ** 63n, 2n ** 64n, 2n ** 64n + 1n, -(2n ** 64n) - 1n, -(2n ** 200n) + 7n,
      (3n ** 5000n) * -1n, BigInt(Number.MAX_SAFE_INTEGER) + 1n]
    for (const value of values) assertSame(roundTrip(value), value)
  })

  void test('Dates, including an invalid one and the extremes', () => {
    const values = [new Date(0), new Date('2024-02-29T12:34:56.789Z'), new Date(-8.64e15), new Date(8.64e15), new Date(NaN), new Date(-1)]
    for (const value of values) assertSame(roundTrip(value), value)
  })

  void test('Uint8Array and Buffer decode as a Uint8Array of exactly the viewed bytes', () => {
    const backing = Uint8Array.from({ length: 64 }, (_, i) => i)
    const view = backing.subarray(10, 20)
    const decoded = roundTrip(view)
    assert.ok(decoded instanceof Uint8Array)
    assert.equal(decoded.byteOffset, 0)
    assert.equal(decoded.buffer.byteLength, 10)
    assert.deepEqual(Array.from(decoded), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19])

    const buffer = Buffer.from('buffer bytes')
    const fromBuffer = roundTrip(buffer)
    assert.equal(Object.getPrototypeOf(fromBuffer), Uint8Array.prototype)
    assertSame(fromBuffer, new Uint8Array(buffer))
    assertSame(roundTrip(new Uint8Array(0)), new Uint8Array(0))
    assertSame(roundTrip(new Uint8Array(200_000).fill(7)), new Uint8Array(200_000).fill(7))
  })

  void test('decoded bytes are a copy, not a view of the input', () => {
    const encoded = encodeValue(Uint8Array.of(1, 2, 3))
    const decoded = decodeValue(encoded) as Uint8Array
    encoded.fill(0)
    assert.deepEqual(Array.from(decoded), [1, 2, 3])
  })

  void test('undefined inside arrays and objects is kept, and holes of sparse arrays become undefined', () => {
    const decoded = roundTrip({ a: undefined, b: [undefined, 1, undefined] }) as { a: unknown, b: unknown[] }
    assert.ok(Object.hasOwn(decoded, 'a'))
    assert.equal(decoded.a, undefined)
    assertSame(decoded.b, [undefined, 1, undefined])

    const sparse = [1, , 3] // eslint-disable-line no-sparse-arrays
    sparse[6] = 7
    const fromSparse = roundTrip(sparse) as unknown[]
    assert.equal(fromSparse.length, 7)
    assert.ok(Object.hasOwn(fromSparse, 1), 'the hole is now an element')
    assertSame(fromSparse, [1, undefined, 3, undefined, undefined, undefined, 7])
  })

  void test('Maps keep object keys, order and entries; Sets keep members and order', () => {
    const key = { id: 1 }
    const map = new Map<unknown, unknown>([[key, 'object key'], ['s', 1], [2, new Set([1, 'two', key])], [NaN, null], [[1, 2], new Map([[1n, new Date(5)]])]])
    assertSame(roundTrip(map), map)
    const set = new Set<unknown>([3, 1, 2, 'x', { a: 1 }, [1], NaN, undefined, null])
    assertSame(roundTrip(set), set)
    assertSame(roundTrip(new Map()), new Map())
    assertSame(roundTrip(new Set()), new Set())
  })

  void test('plain objects keep key order (including integer-like keys); null-prototype objects decode as plain ones', () => {
    const value = { b: 1, a: 2, 10: 'ten', 2: 'two', '': 'empty', 'with space': [] }
    assertSame(roundTrip(value), value)
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { x: 1, y: { z: 2 } })
    const decoded = roundTrip(bare)
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype)
    assertSame(decoded, bare)
  })

  void test('object keys decode right however often they repeat or share a slot of the key cache', () => {
    const wide = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`key${i}`, i]))
    const again = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`kez${i}`, -i]))
    for (let round = 0; round < 2; round++) {
      assertSame(roundTrip(wide), wide)
      assertSame(roundTrip(again), again)
    }
    assertSame(roundTrip([{ ab: 1 }, { ba: 2 }, { ab: 3, 'aé': 4, ['x'.repeat(33)]: 5 }]), [{ ab: 1 }, { ba: 2 }, { ab: 3, 'aé': 4, ['x'.repeat(33)]: 5 }])
  })

  void test('shared (non-cyclic) references are encoded twice and decode as equal copies', () => {
    const shared = { n: 1 }
    const decoded = roundTrip([shared, shared, { shared }]) as Array<Record<string, unknown>>
    assertSame(decoded, [shared, shared, { shared }])
    assert.notEqual(decoded[0], decoded[1])
  })

  void test('nested combinations of every type', () => {
    const value = {
      list: [1, 'two', 3n, null, undefined, [new Date(1), new Uint8Array([1, 2])], -0, NaN],
      map: new Map<unknown, unknown>([[{ k: [1] }, new Set([new Map([['deep', { deeper: [Infinity] }]])])]]),
      error: new RangeError('out of range'),
      nested: { a: { b: { c: { d: ['end', -(2n ** 70n)] } } } }
    }
    assertSame(roundTrip(value), value)
  })

  void test('a Buffer input, or a view at an offset into a larger buffer, decodes', () => {
    const value = { a: [1.5, 'x', 2n ** 65n, new Date(3)] }
    const encoded = encodeValue(value)
    assertSame(decodeValue(Buffer.from(encoded)), value)
    const larger = new Uint8Array(encoded.length + 13)
    larger.set(encoded, 5)
    assertSame(decodeValue(larger.subarray(5, 5 + encoded.length)), value)
    assertSame(decodeValue(Buffer.from(larger.buffer, 5, encoded.length)), value)
  })

  void test('large values grow the encoder buffer, and later small encodings are still right', () => {
    const big = { bytes: new Uint8Array(3 * 1024 * 1024).fill(9), text: 'é'.repeat(500_000) }
    assertSame(roundTrip(big), big)
    assert.deepEqual(Array.from(encodeValue([1, 2])), [0x09, 0x02, 0x81, 0x82])
  })

  void test('a getter that encodes while the encoder is busy does not corrupt either result', () => {
    let inner: Uint8Array | undefined
    const value = { a: 1, get b () { inner = encodeValue(['inner', 2]); return 'outer' }, c: [3] }
    const decoded = roundTrip(value)
    assertSame(decoded, { a: 1, b: 'outer', c: [3] })
    assert.ok(inner !== undefined)
    assertSame(decodeValue(inner), ['inner', 2])
  })
})

void describe('errors', () => {
  void test('built-in error classes are rebuilt, with message and the remote stack', () => {
    for (const error of [new Error('plain'), new TypeError('type'), new RangeError('range'), new SyntaxError('syntax'),
      new ReferenceError('ref'), new EvalError('eval'), new URIError('uri')]) {
      const decoded = roundTrip(error) as Error
      assert.equal(Object.getPrototypeOf(decoded), Object.getPrototypeOf(error), `${error.name} class`)
      assertSame(decoded, error)
      assert.equal(decoded.stack, error.stack)
    }
  })

  void test('code, a cause chain and other own data properties travel; getters and functions do not', () => {
    const root = Object.assign(new Error('disk full'), { code: 'ENOSPC', errno: -28, path: '/tmp/x' })
    const middle = new TypeError('write failed', { cause: root })
    const top = Object.assign(new Error('save failed', { cause: middle }), {
      code: 'ERR_SAVE',
      status: 503,
      details: { retryIn: 5, tags: new Set(['a']) },
      callback: () => 1
    })
    Object.defineProperty(top, 'computed', { get: () => 'runs code', enumerable: true })
    const decoded = roundTrip(top) as Error & Record<string, unknown>
    assert.equal(decoded.message, 'save failed')
    assert.equal(decoded.code, 'ERR_SAVE')
    assert.equal(decoded.status, 503)
    assertSame(decoded.details, top.details)
    assert.ok(!('callback' in decoded), 'a function property is left out')
    assert.ok(!('computed' in decoded), 'an accessor property is left out')
    assert.equal(decoded.stack, top.stack)
    const cause = decoded.cause as Error
    assert.ok(cause instanceof TypeError)
    assert.equal(cause.stack, middle.stack)
    const rootCause = cause.cause as Error & Record<string, unknown>
    assert.equal(rootCause.message, 'disk full')
    assert.equal(rootCause.code, 'ENOSPC')
    assert.equal(rootCause.errno, -28)
    assert.equal(rootCause.path, '/tmp/x')
    assert.ok(!Object.getOwnPropertyDescriptor(decoded, 'cause')?.enumerable, 'cause stays non-enumerable')
    assert.ok(!Object.getOwnPropertyDescriptor(decoded, 'stack')?.enumerable, 'stack stays non-enumerable')
    assert.ok(Object.getOwnPropertyDescriptor(decoded, 'code')?.enumerable, 'code is an enumerable own property')
  })

  void test('an error of an unknown class decodes as an Error carrying its name, never that class', () => {
    class QuotaError extends Error {
      override name = 'QuotaError'
      readonly limit = 10
    }
    const original = new QuotaError('over quota')
    const decoded = roundTrip(original) as Error & { limit?: number }
    assert.equal(Object.getPrototypeOf(decoded), Error.prototype)
    assert.equal(decoded.name, 'QuotaError')
    assert.equal(decoded.message, 'over quota')
    assert.equal(decoded.limit, 10)
    assert.equal(decoded.stack, original.stack)
  })

  void test('wire names like constructor, __proto__ and Function give a plain Error with that name', () => {
    for (const name of ['constructor', '__proto__', 'Function', 'toString', 'Promise', 'hasOwnProperty']) {
      const decoded = decodeValue(bytesOf(0x10, utf8(name), utf8('msg'), 0)) as Error
      assert.equal(Object.getPrototypeOf(decoded), Error.prototype, name)
      assert.equal(decoded.name, name)
      assert.ok(Object.hasOwn(decoded, 'name'))
      assert.equal(decoded.message, 'msg')
      assert.equal(decoded.stack, undefined, 'no stack on the wire, none made up locally')
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
  })

  void test('SnakeMQ errors keep name and code; AggregateError keeps its errors', () => {
    const decoded = roundTrip(new RpcCodecError('bad bytes')) as Error & { code?: string }
    assert.equal(decoded.name, 'RpcCodecError')
    assert.equal(decoded.code, 'ERR_RPC_CODEC')
    assert.ok(!(decoded instanceof RpcCodecError), 'local classes are not rebuilt from the wire')

    const aggregate = new AggregateError([new Error('one'), new TypeError('two')], 'both failed')
    const fromAggregate = roundTrip(aggregate) as AggregateError
    assert.ok(fromAggregate instanceof AggregateError)
    assert.equal(fromAggregate.message, 'both failed')
    assertSame(fromAggregate.errors, aggregate.errors)
  })

  void test('a cycle through an error or a cause chain past maxDepth is cut, not fatal', () => {
    const selfish = new Error('me') as Error & { self?: unknown }
    selfish.self = selfish
    selfish.cause = selfish
    const decoded = roundTrip(selfish) as Error
    assert.equal(decoded.message, 'me')
    assert.ok(!('self' in decoded) && !('cause' in decoded))

    let chain = new Error('cause 0')
    for (let i = 1; i < 100; i++) chain = new Error(`cause ${i}`, { cause: chain })
    let links = 0
    for (let e: unknown = roundTrip(chain); e instanceof Error; e = e.cause) links++
    assert.equal(links, defaultCodecLimits.maxDepth)
  })

  void test('a lone surrogate in an error message is replaced rather than losing the error', () => {
    const decoded = roundTrip(new Error('bad \uD800 text')) as Error
    assert.equal(decoded.message, 'bad \uFFFD text')
  })

  void test('decoding an error restores Error.stackTraceLimit', () => {
    const before = Error.stackTraceLimit
    roundTrip(new Error('x'))
    assert.equal(Error.stackTraceLimit, before)
  })
})

void describe('prototype pollution and code execution', () => {
  void test('__proto__ and constructor keys decode as own data properties, polluting nothing', () => {
    const hostile = JSON.parse('{"__proto__": {"polluted": "yes", "isAdmin": true}, "constructor": {"prototype": {"polluted": "yes"}}, "a": 1}') as Record<string, unknown>
    const decoded = roundTrip(hostile) as Record<string, unknown>
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype)
    assert.equal(decoded.isAdmin, undefined)
    const proto = Object.getOwnPropertyDescriptor(decoded, '__proto__')
    assert.ok(proto !== undefined && 'value' in proto && proto.enumerable === true)
    assert.deepEqual(proto.value, { polluted: 'yes', isAdmin: true })
    assert.ok(Object.hasOwn(decoded, 'constructor'))
    assert.deepEqual(decoded.constructor, { prototype: { polluted: 'yes' } })
    assert.deepEqual(Object.keys(decoded), ['__proto__', 'constructor', 'a'])
  })

  void test('hand-made bytes with __proto__ keys nested in objects, Maps and errors pollute nothing', () => {
    const pollute = bytesOf(0x0a, 1, utf8('polluted'), 0x03)
    const bytes = bytesOf(0x09, 3,
      0x0a, 2, utf8('__proto__'), [...pollute], utf8('__proto__'), 0x0a, 1, utf8('__proto__'), [...pollute],
      0x0b, 1, 0x07, utf8('__proto__'), [...pollute],
      0x10, utf8('Error'), utf8('m'), 1, utf8('__proto__'), [...pollute])
    const decoded = decodeValue(bytes) as [Record<string, unknown>, Map<unknown, unknown>, Error]
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    assert.equal(Object.getPrototypeOf(decoded[0]), Object.prototype)
    assert.equal(decoded[0].polluted, undefined)
    assert.deepEqual(Object.keys(decoded[0]), ['__proto__'], 'a repeated key keeps the last value')
    assert.equal(decoded[1].get('__proto__') instanceof Object, true)
    assert.equal(Object.getPrototypeOf(decoded[2]), Error.prototype)
    assert.ok(Object.hasOwn(decoded[2], '__proto__'))
  })

  void test('decoding runs no setter, even one planted on Object.prototype', () => {
    let called = 0
    Object.defineProperty(Object.prototype, 'planted', { set () { called++ }, configurable: true })
    try {
      const decoded = decodeValue(encodeValue(JSON.parse('{"planted": 1, "toString": 2, "valueOf": 3}'))) as Record<string, unknown>
      assert.equal(called, 0)
      assert.ok(Object.hasOwn(decoded, 'planted'))
      assert.equal(Object.getOwnPropertyDescriptor(decoded, 'planted')?.value, 1)
      assert.equal(Object.getOwnPropertyDescriptor(decoded, 'toString')?.value, 2)
    } finally {
      delete (Object.prototype as Record<string, unknown>).planted
    }
  })
})

void describe('values that cannot be encoded', () => {
  class Point { constructor (readonly x: number) {} }
  const cases: Array<[string, unknown, RegExp]> = [
    ['a function', () => 1, /cannot encode a function$/],
    ['a symbol', Symbol('s'), /cannot encode a symbol$/],
    ['a class instance', new Point(1), /an instance of Point/],
    ['a Promise', Promise.resolve(1), /an instance of Promise/],
    ['a WeakMap', new WeakMap(), /an instance of WeakMap/],
    ['another typed array', new Int16Array(2), /an instance of Int16Array/],
    ['an ArrayBuffer', new ArrayBuffer(4), /an instance of ArrayBuffer/],
    ['a boxed number', Object(1), /an instance of Number/],
    ['a RegExp', /x/, /an instance of RegExp/],
    ['an object with a custom prototype', Object.create({ inherited: 1 }), /prototype is not Object.prototype/],
    ['a nested function', { a: [1, { b: () => 1 }] }, /a function at value\.a\[1\]\.b$/],
    ['a symbol under an odd key', { 'odd key': Symbol('s') }, /at value\["odd key"\]$/],
    ['a function in a Map', new Map([[1, () => 1]]), /at value\[map entry 0\]$/],
    ['a function in a Set', new Set([1, () => 1]), /at value\[set member 1\]$/],
    ['a lone surrogate', 'a\uD800b', /lone surrogate/],
    ['a lone surrogate in a key', { '\uDC00': 1 }, /lone surrogate/]
  ]
  for (const [name, value, pattern] of cases) {
    void test(`${name} is refused with RpcCodecError`, () => {
      assert.throws(() => encodeValue(value), isRpcCodecError(pattern))
    })
  }

  void test('cycles through arrays, objects, Maps and Sets are detected', () => {
    const array: unknown[] = [1]
    array.push(array)
    const object: Record<string, unknown> = {}
    object.self = { deeper: [object] }
    const map = new Map<unknown, unknown>()
    map.set('me', map)
    const set = new Set<unknown>()
    set.add([set])
    const keyCycle = new Map<unknown, unknown>()
    keyCycle.set(keyCycle, 1)
    for (const value of [array, object, map, set, keyCycle]) {
      assert.throws(() => encodeValue(value), isRpcCodecError(/cycle/))
    }
    assert.throws(() => encodeValue(object), isRpcCodecError(/at value\.self\.deeper\[0\]$/))
  })

  void test('a getter that throws gives RpcCodecError with the original as cause', () => {
    const boom = new Error('boom')
    const value = { get bad (): never { throw boom } }
    assert.throws(() => encodeValue(value), (err: unknown) => isRpcCodecError(/boom/)(err) && (err as Error).cause === boom)
  })

  void test('RpcCodecError is a SnakeMQError with a stable name and code', () => {
    const err = new RpcCodecError('x')
    assert.ok(err instanceof SnakeMQError)
    assert.equal(err.name, 'RpcCodecError')
    assert.equal(err.code, 'ERR_RPC_CODEC')
  })
})

void describe('limits', () => {
  void test('the defaults are 64 levels, 16 MiB and 2^20 values', () => {
    assert.deepEqual({ ...defaultCodecLimits }, { maxDepth: 64, maxBytes: 16 * 1024 * 1024, maxValues: 1024 * 1024 })
  })

  void test('64 nested containers encode and decode; 65 are refused on both sides', () => {
    assertSame(roundTrip(nestedArrays(64)), nestedArrays(64))
    assert.throws(() => encodeValue(nestedArrays(65)), isRpcCodecError(/maxDepth \(64\)/))
    const deep = bytesOf(Array.from({ length: 65 }, () => [0x09, 1]).flat(), 0x00)
    assert.throws(() => decodeValue(deep), isRpcCodecError(/maxDepth \(64\)/))
    assert.ok(Array.isArray(decodeValue(deep, { maxDepth: 65 })))
  })

  void test('depth counts every kind of container', () => {
    const limits = { maxDepth: 2 }
    const values: unknown[] = [{ a: { b: {} } }, new Map([[1, new Map([[1, new Map()]])]]), new Set([new Set([new Set()])]),
      [[new Error('e')]], [[new Map()]]]
    for (const value of values) {
      assert.throws(() => encodeValue(value, limits), isRpcCodecError(/maxDepth \(2\)/))
      assert.throws(() => decodeValue(encodeValue(value, { maxDepth: 3 }), limits), isRpcCodecError(/maxDepth \(2\)/))
    }
    assert.throws(() => encodeValue([], { maxDepth: 0 }), isRpcCodecError(/maxDepth/))
    assert.equal(decodeValue(encodeValue(5, { maxDepth: 0 }), { maxDepth: 0 }), 5)
  })

  void test('a million levels of hostile nesting are refused quickly, even with maxDepth raised past the stack', () => {
    const pairs = 1_000_000
    const bytes = new Uint8Array(pairs * 2 + 1)
    for (let i = 0; i < pairs; i++) { bytes[2 * i] = 0x09; bytes[2 * i + 1] = 1 }
    assert.throws(() => decodeValue(bytes), isRpcCodecError(/maxDepth/))
    assert.throws(() => decodeValue(bytes, { maxDepth: pairs + 1 }), isRpcCodecError())
    assert.throws(() => encodeValue(nestedArrays(200_000), { maxDepth: 1_000_000 }), isRpcCodecError())
  })

  void test('maxBytes bounds the encoding exactly and refuses longer input before reading it', () => {
    const value = new Uint8Array(1000) // tag + 2-byte length + 1000 bytes
    assert.equal(encodeValue(value, { maxBytes: 1003 }).length, 1003)
    assert.throws(() => encodeValue(value, { maxBytes: 1002 }), isRpcCodecError(/maxBytes/))
    assert.throws(() => encodeValue('x'.repeat(100_000), { maxBytes: 50_000 }), isRpcCodecError(/maxBytes/))
    assert.throws(() => encodeValue(Array.from({ length: 100_000 }, () => 'abc'), { maxBytes: 10_000 }), isRpcCodecError(/maxBytes/))
    const encoded = encodeValue(value)
    assert.throws(() => decodeValue(encoded, { maxBytes: 1002 }), isRpcCodecError(/maxBytes/))
    assert.equal((decodeValue(encoded, { maxBytes: 1003 }) as Uint8Array).length, 1000)
  })

  void test('maxValues counts every element, entry and member, on both sides', () => {
    const array = new Array<number>(10).fill(0)
    assert.equal(encodeValue(array, { maxValues: 11 }).length, 12)
    assert.throws(() => encodeValue(array, { maxValues: 10 }), isRpcCodecError(/maxValues/))
    assert.throws(() => decodeValue(encodeValue(array), { maxValues: 10 }), isRpcCodecError(/maxValues/))
    const map = new Map([[1, 2], [3, 4]]) // itself + 2 keys + 2 values
    assert.ok(decodeValue(encodeValue(map, { maxValues: 5 }), { maxValues: 5 }) instanceof Map)
    assert.throws(() => encodeValue(map, { maxValues: 4 }), isRpcCodecError(/maxValues/))
  })

  void test('many tiny containers cannot make the decoder build more than maxValues objects', () => {
    // 8 MiB of empty objects would be 4 million objects; the limit stops it first.
    const count = 4 * 1024 * 1024
    const bytes = new Uint8Array(2 + 4 + count * 2)
    bytes.set([0x09, ...varint(count)])
    for (let i = 0; i < count; i++) bytes[5 + 2 * i] = 0x0a
    assert.throws(() => decodeValue(bytes.subarray(0, 5 + count * 2)), isRpcCodecError(/maxValues/))
  })

  void test('options must be non-negative integers', () => {
    for (const options of [{ maxDepth: -1 }, { maxBytes: 1.5 }, { maxValues: NaN }, { maxDepth: Infinity }]) {
      assert.throws(() => encodeValue(1, options), InvalidArgumentError)
      assert.throws(() => decodeValue(Uint8Array.of(0x81), options), InvalidArgumentError)
    }
    assert.throws(() => decodeValue('not bytes' as unknown as Uint8Array), InvalidArgumentError)
  })
})

void describe('hostile bytes', () => {
  void test('empty input, unknown tags and trailing bytes are refused', () => {
    assert.throws(() => decodeValue(new Uint8Array(0)), isRpcCodecError(/ends/))
    for (let tag = 0x11; tag < 0x80; tag++) {
      assert.throws(() => decodeValue(Uint8Array.of(tag)), isRpcCodecError(/unknown tag/))
    }
    assert.throws(() => decodeValue(Uint8Array.of(0x81, 0x00)), isRpcCodecError(/after the end/))
  })

  void test('every truncation of a valid encoding is refused', () => {
    const encoded = encodeValue({ s: 'héllo', n: [1, 300, -5, 1.5, 2n ** 80n], d: new Date(1), m: new Map([[1, new Set([null])]]), e: new TypeError('t'), b: Uint8Array.of(1, 2) })
    for (let length = 0; length < encoded.length; length++) {
      assert.throws(() => decodeValue(encoded.subarray(0, length)), isRpcCodecError(), `prefix of ${length} bytes`)
    }
  })

  void test('huge claimed lengths and counts are refused before anything is allocated', () => {
    const huge = varint(Number.MAX_SAFE_INTEGER)
    for (const tag of [0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0e, 0x0f]) {
      assert.throws(() => decodeValue(bytesOf(tag, huge, 0x00, 0x00)), isRpcCodecError(/remain/), `tag ${tag}`)
    }
    assert.throws(() => decodeValue(bytesOf(0x10, utf8('Error'), utf8(''), huge)), isRpcCodecError(/remain/))
    assert.throws(() => decodeValue(bytesOf(0x10, huge)), isRpcCodecError(/remain/))
    assert.throws(() => decodeValue(bytesOf(0x0a, 1, huge, 0x00)), isRpcCodecError(/remain/))
    // An object of n pairs needs at least 2n bytes.
    assert.throws(() => decodeValue(bytesOf(0x0a, 3, 0, 0x00, 0, 0x00)), isRpcCodecError(/remain/))
  })

  void test('overlong and oversized varints are refused; non-minimal ones are accepted', () => {
    assert.throws(() => decodeValue(bytesOf(0x04, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)), isRpcCodecError(/longer than 8 bytes/))
    assert.throws(() => decodeValue(bytesOf(0x04, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)), isRpcCodecError(/2\^53/))
    assert.equal(decodeValue(bytesOf(0x04, varint(Number.MAX_SAFE_INTEGER))), Number.MAX_SAFE_INTEGER)
    assert.equal(decodeValue(bytesOf(0x05, varint(Number.MAX_SAFE_INTEGER))), Number.MIN_SAFE_INTEGER)
    assert.ok(Object.is(decodeValue(bytesOf(0x05, 0)), 0), 'a negative zero integer is +0')
    assert.deepEqual(decodeValue(bytesOf(0x09, 0x82, 0x80, 0x00, 0x81, 0x82)), [1, 2])
  })

  void test('invalid UTF-8 in strings, keys and error names is refused', () => {
    const invalid = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [...Array<number>(40).fill(0x61), 0xfe]]
    for (const bad of invalid) {
      const str = [...varint(bad.length), ...bad]
      assert.throws(() => decodeValue(bytesOf(0x07, str)), isRpcCodecError(/UTF-8/), Buffer.from(bad).toString('hex'))
      assert.throws(() => decodeValue(bytesOf(0x0a, 1, str, 0x00)), isRpcCodecError(/UTF-8/))
      assert.throws(() => decodeValue(bytesOf(0x10, str, utf8(''), 0)), isRpcCodecError(/UTF-8/))
    }
  })

  void test('random bytes decode to a value or give RpcCodecError, and always finish', () => {
    const tags = fc.integer({ min: 0, max: 0x10 })
    fc.assert(fc.property(fc.array(tags, { maxLength: 4 }), fc.uint8Array({ maxLength: 300 }), (prefix, body) => {
      decodesOrRefuses(Uint8Array.from([...prefix, ...body]))
      decodesOrRefuses(Uint8Array.from([...prefix, ...body]), { maxDepth: 3, maxValues: 20 })
    }), { numRuns: 3000 })
  })
})

// Arbitraries of every supported value, with the keys and numbers that matter most.
const wellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed()
const keyArb = fc.oneof(fc.string({ maxLength: 8 }), fc.string({ unit: 'grapheme', maxLength: 4 }),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '0', '10', '4294967295', ''))
const leafArb = fc.oneof(
  fc.constantFrom(undefined, null, true, false, -0, NaN, Infinity, -Infinity, 127, 128, 2 ** 53, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER),
  fc.integer(), fc.maxSafeInteger(), fc.double(),
  fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary', maxLength: 40 }).filter(wellFormed), fc.string({ minLength: 100, maxLength: 300 }),
  fc.bigInt(), fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }),
  fc.date({ noInvalidDate: false }),
  fc.uint8Array({ maxLength: 40 }),
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.nat(), fc.nat()).map(([bytes, a, b]) => bytes.subarray(a % bytes.length, b % (bytes.length + 1)))
)
const errorNames = fc.constantFrom('Error', 'TypeError', 'RangeError', 'SyntaxError', 'CustomError', '__proto__', 'constructor')
const errorClasses = new Map<string, ErrorConstructor>([['Error', Error], ['TypeError', TypeError], ['RangeError', RangeError], ['SyntaxError', SyntaxError]])
const { value: valueArb } = fc.letrec<{ value: unknown, error: Error }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leafArb,
    fc.array(tie('value'), { maxLength: 5 }),
    fc.array(fc.tuple(keyArb, tie('value')), { maxLength: 5 }).map((entries) => Object.fromEntries(entries)),
    fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 4 }).map((entries) => new Map(entries)),
    fc.array(tie('value'), { maxLength: 4 }).map((members) => new Set(members)),
    tie('error')),
  error: fc.record({
    name: errorNames,
    message: fc.string(),
    code: fc.option(fc.oneof(fc.string(), fc.integer()), { nil: undefined }),
    cause: fc.option(tie('value'), { nil: undefined }),
    props: fc.array(fc.tuple(keyArb, tie('value')), { maxLength: 3 }),
    stack: fc.option(fc.string(), { nil: undefined })
  }).map(({ name, message, code, cause, props, stack }) => {
    const error = new (errorClasses.get(name) ?? Error)(message)
    if (error.name !== name) Object.defineProperty(error, 'name', { value: name, writable: true, configurable: true })
    if (stack !== undefined) error.stack = stack
    if (cause !== undefined) Object.defineProperty(error, 'cause', { value: cause, writable: true, configurable: true })
    if (code !== undefined) Object.defineProperty(error, 'code', { value: code, writable: true, enumerable: true, configurable: true })
    for (const [key, value] of props) {
      if (!SPECIAL_ERROR_PROPS.has(key)) Object.defineProperty(error, key, { value, writable: true, enumerable: true, configurable: true })
    }
    return error
  })
}))

/** Whether fast-check's `anything` made a value the codec carries (it also makes boxed values, other typed arrays, lone surrogates). */
function isSupported (value: unknown): boolean {
  if (typeof value === 'string') return wellFormed(value)
  if (typeof value !== 'object' || value === null) return typeof value !== 'function' && typeof value !== 'symbol'
  if (Array.isArray(value)) return Array.from({ length: value.length }, (_, i) => value[i] as unknown).every(isSupported)
  if (value instanceof Uint8Array || value instanceof Date) return true
  if (value instanceof Map) return [...value].every(([k, v]) => isSupported(k) && isSupported(v))
  if (value instanceof Set) return [...value].every(isSupported)
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return false
  return Object.keys(value).every((key) => wellFormed(key) && isSupported((value as Record<string, unknown>)[key]))
}

void describe('properties', () => {
  void test('every supported value round-trips', () => {
    fc.assert(fc.property(valueArb, (value) => {
      assertSame(roundTrip(value), value)
    }), { numRuns: 2000 })
  })

  void test("fast-check's anything: supported values round-trip, the rest give RpcCodecError", () => {
    const anything = fc.anything({
      withBigInt: true, withDate: true, withMap: true, withSet: true, withTypedArray: true, withNullPrototype: true,
      withSparseArray: true, withBoxedValues: true, withObjectString: true, stringUnit: 'binary', maxDepth: 6
    })
    let supported = 0
    fc.assert(fc.property(anything, (value) => {
      if (isSupported(value)) {
        supported++
        assertSame(roundTrip(value), value)
      } else {
        assert.throws(() => encodeValue(value), isRpcCodecError())
      }
    }), { numRuns: 2000 })
    assert.ok(supported > 200, `only ${supported} supported values were tried`)
  })

  void test('mutated valid encodings decode or give RpcCodecError, and always finish quickly', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.constantFrom(0x00, 0x7f, 0x80, 0xff, 0x10, 0x11, 0x09, 0x0a) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 9 }) }),
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 9 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() })
    )
    let slowest = 0
    fc.assert(fc.property(valueArb, fc.array(mutation, { minLength: 1, maxLength: 4 }), (value, mutations) => {
      const bytes = Array.from(encodeValue(value))
      for (const m of mutations) {
        const at = m.at % (bytes.length + 1)
        if (m.kind === 'flip' && at < bytes.length) bytes[at] = bytes[at]! ^ (1 << m.bit)
        else if (m.kind === 'set' && at < bytes.length) bytes[at] = m.byte
        else if (m.kind === 'insert') bytes.splice(at, 0, ...m.bytes)
        else if (m.kind === 'delete') bytes.splice(at, m.count)
        else if (m.kind === 'truncate') bytes.length = at
      }
      const start = performance.now()
      decodesOrRefuses(Uint8Array.from(bytes))
      slowest = Math.max(slowest, performance.now() - start)
    }), { numRuns: 3000 })
    assert.ok(slowest < 1000, `the slowest decode took ${slowest} ms`)
  })
})
