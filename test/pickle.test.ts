// The data-only pickle codec against Python's own pickle, both ways: what Python
// pickles at protocols 2 to 5 decodes to the JavaScript values of docs/RPC.md's
// table, what the encoder writes unpickles in Python to the expected Python
// values (compared there, types included), random values survive the trip
// through Python, damaged pickles give only RpcCodecError, and hostile pickles
// (os.system, eval, objects, persistent ids, extensions, out-of-band buffers,
// huge lengths and integers, deep nesting, memo abuse) are refused at the opcode
// that would act, which Python itself shows does act. python3 is part of every
// machine these tests run on: without it they fail, they do not skip.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import {
  PyDate, PyDecimal, PyTime, PyTimedelta, PythonException, RpcCodecError, decodePickle, encodePickle, defaultPickleLimits
} from '../src/index.ts'
import { PYTHON_EXCEPTIONS } from '../src/rpc/python-types.ts'

const SCRIPT = fileURLToPath(new URL('./fixtures/pickle_peer.py', import.meta.url))

/** Runs pickle_peer.py with `args` (and `input` as JSON on stdin) in `cwd`; its JSON output. */
async function python (args: string[], input?: unknown, cwd = tmpdir()): Promise<unknown> {
  const child = spawn('python3', [SCRIPT, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
  child.stdin.end(input === undefined ? '' : JSON.stringify(input))
  const [code] = await once(child, 'close') as [number | null]
  if (code !== 0) throw new Error(`pickle_peer.py ${args[0]} exited with ${code}: ${err}`)
  return JSON.parse(out) as unknown
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'))

/** A Date from UTC fields, years below 100 included (Date.UTC would read 1 as 1901). */
function utc (year: number, month: number, day: number, h = 0, m = 0, s = 0, ms = 0): Date {
  const d = new Date(0)
  d.setUTCFullYear(year, month - 1, day)
  d.setUTCHours(h, m, s, ms)
  return d
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

/** What each value of pickle_peer.py's CASES must decode to, whatever the protocol. */
const FROM_PYTHON: Record<string, unknown> = {
  none: null,
  true: true,
  false: false,
  'int 0': 0,
  'int 255': 255,
  'int 256': 256,
  'int 65535': 65535,
  'int 65536': 65536,
  'int -1': -1,
  'int -2**31': -(2 ** 31),
  'int 2**31-1': 2 ** 31 - 1,
  'int 2**31': 2 ** 31,
  'int 2**53-1': 2 ** 53 - 1,
  'int 2**53': 2n ** 53n,
  'int -(2**53-1)': -(2 ** 53 - 1),
  'int -2**53': -(2n ** 53n),
  'int 2**70+5': 2n ** 70n + 5n,
  'int -(2**70)-5': -(2n ** 70n) - 5n,
  'int 2**64': 2n ** 64n,
  'int -2**63': -(2n ** 63n),
  'float 1.5': 1.5,
  'float -0.0': -0,
  'float inf': Infinity,
  'float -inf': -Infinity,
  'float nan': NaN,
  'float 1e308': 1e308,
  'float 5e-324': 5e-324,
  'float 3.0': 3,
  'str empty': '',
  'str ascii': 'hello',
  'str unicode': 'Žluťoučký kůň 🐍',
  'str lone surrogate': 'a\ud800b',
  'str 300': 'x'.repeat(300),
  'str 70000': 'é'.repeat(70000),
  'bytes empty': new Uint8Array(0),
  bytes: Uint8Array.of(0, 1, 0xfe, 0xff),
  'bytes 300': Uint8Array.from([...range(256), ...new Array<number>(44).fill(0x79)]),
  'bytes 70000': new Uint8Array(70000).fill(0x7a),
  bytearray: Uint8Array.of(0x61, 0x62),
  'bytearray empty': new Uint8Array(0),
  list: [1, 'two', 3.5, null],
  tuple: [1, 2],
  'tuple 5': [1, 2, 3, 4, 5],
  'empty containers': [[], {}, [], '', new Set()],
  nested: { list: [{ x: [1, Uint8Array.of(0x79)] }], s: 'z' },
  dict: { a: 1, b: [true, false] },
  'dict int keys': new Map([[1, 'one'], [2, 'two']]),
  'dict mixed keys': new Map<unknown, unknown>([['a', 1], [2, 'b'], [null, 3], [[1, 2], 4]]),
  'dict __proto__ key': JSON.parse('{"__proto__": 1, "constructor": 2}') as unknown,
  set: new Set([3]),
  frozenset: new Set([4]),
  'set of tuples': new Set([[1, 2]]),
  'frozenset in set': new Set([new Set([5])]),
  'list 2500': range(2500),
  'dict 1500': Object.fromEntries(range(1500).map((i) => [`k${i}`, i])),
  'set 1200': new Set(range(1200)),
  shared: [[1, 2], [1, 2], { x: [1, 2] }],
  datetime: utc(2026, 12, 2, 15, 42, 7, 123),
  'datetime year 1': utc(1, 1, 1),
  'datetime +02:00': utc(2026, 1, 1, 22, 30),
  'datetime utc': utc(2026, 1, 2, 3, 4, 5),
  'datetime fold': utc(2026, 10, 25, 2, 30),
  date: new PyDate(2026, 12, 2),
  time: new PyTime(15, 42, 7, 123456),
  'time -05:30': new PyTime(1, 2, 3, 0, { utcOffset: -19800 }),
  timedelta: new PyTimedelta(-1, 5, 7),
  decimal: new PyDecimal('1.10'),
  'decimal -inf': new PyDecimal('-Infinity'),
  'decimal nan': new PyDecimal('NaN'),
  'decimal 1e-30': new PyDecimal('1E-30'),
  'ValueError two args': new PythonException('ValueError', ['bad value', 42]),
  KeyError: new PythonException('KeyError', ['missing']),
  ZeroDivisionError: new PythonException('ZeroDivisionError', ['division by zero']),
  'no args': new PythonException('RuntimeError', []),
  'AppError with attribute': new PythonException('AppError', ['went wrong'], { module: '__main__', attributes: { code: 7 } }),
  notes: new PythonException('ValueError', ['with a note'], { attributes: { __notes__: ['a note'] } }),
  NoMethodError: new PythonException('NoMethodError', ['nope'], { module: 'snakemq.rpc' }),
  ExceptionGroup: new PythonException('ExceptionGroup', ['two', [new PythonException('ValueError', ['a']), new PythonException('TypeError', ['b'])]])
}

test('values Python pickles at protocols 2, 3, 4 and 5 decode to the JavaScript values of the type table', async () => {
  const cases = await python(['cases']) as Record<string, Record<string, string>>
  assert.deepEqual(Object.keys(cases).sort(), Object.keys(FROM_PYTHON).sort(), 'the test knows every case Python pickles')
  for (const [name, byProtocol] of Object.entries(cases)) {
    for (const [protocol, h] of Object.entries(byProtocol)) {
      assert.deepStrictEqual(decodePickle(bytes(h)), FROM_PYTHON[name], `${name}, protocol ${protocol}`)
    }
  }
  // Shared references stay shared, as in Python; a decoded exception's message is Python's str() of it.
  const shared = decodePickle(bytes(cases.shared!['4']!)) as [number[], number[], { x: number[] }]
  assert.ok(shared[0] === shared[1] && shared[2].x === shared[0])
  const e = decodePickle(bytes(cases['ValueError two args']!['4']!)) as PythonException
  assert.ok(e instanceof PythonException && e instanceof Error)
  assert.deepEqual([e.name, e.module, e.message, e.stack], ['ValueError', 'builtins', "('bad value', 42)", "ValueError: ('bad value', 42)"])
  const app = decodePickle(bytes(cases['AppError with attribute']!['2']!)) as PythonException & { code: number }
  assert.deepEqual([app.module, app.code, app.stack], ['__main__', 7, 'AppError: went wrong'])
})

/** JavaScript values and the name of the Python value (EXPECTED in pickle_peer.py) each must unpickle to. */
function toPython (): Array<[string, unknown]> {
  const coded = Object.assign(new Error('failed'), { code: 'E_FAIL', detail: [1, 2] })
  const named = new Error('named so')
  named.name = 'ValueError'
  const shared = [1]
  return [
    ['null', null], ['undefined', undefined], ['true', true], ['false', false],
    ['int 0', 0], ['int 255', 255], ['int 256', 256], ['int 65535', 65535], ['int 65536', 65536], ['int -1', -1],
    ['int -2**31', -(2 ** 31)], ['int -2**31-1', -(2 ** 31) - 1], ['int 2**31', 2 ** 31], ['int 2**53-1', 2 ** 53 - 1],
    ['bigint 2**70+5', 2n ** 70n + 5n], ['bigint -(2**70)-5', -(2n ** 70n) - 5n], ['bigint 7', 7n], ['bigint -128', -128n],
    ['bigint 255', 255n], ['bigint 2**63', 2n ** 63n], ['bigint -2**63', -(2n ** 63n)], ['bigint 2**2000', 2n ** 2000n],
    ['float 1.5', 1.5], ['float -0', -0], ['float inf', Infinity], ['float -inf', -Infinity], ['float nan', NaN],
    ['float 2**60', 2 ** 60], ['float 5e-324', 5e-324],
    ['str empty', ''], ['str ascii', 'hello'], ['str unicode', 'Žluťoučký kůň 🐍'], ['str lone surrogate', 'a\ud800b'],
    ['str 300', 'x'.repeat(300)], ['str 70000', 'é'.repeat(70000)], ['str repeated', ['ab', 'ab', 'ab']],
    ['bytes', Uint8Array.of(0, 1, 0xfe, 0xff)], ['bytes empty', new Uint8Array(0)], ['buffer', Buffer.from('buf')],
    ['bytes 70000', new Uint8Array(70000).fill(0x7a)],
    // eslint-disable-next-line no-sparse-arrays
    ['list', [1, 'two', 3.5, null]], ['list holes', [, 1, ,]], ['empty containers', [[], {}, '', new Set()]],
    ['object', { a: 1, b: [true, false], c: { d: null } }], ['object __proto__ key', JSON.parse('{"__proto__": 1, "constructor": 2}')],
    ['map int keys', new Map([[1, 'one'], [2, 'two']])], ['map tuple keys', new Map<unknown, string>([[[1, 2], 'a'], [['x', [3]], 'b']])],
    ['set', new Set([3, 'x'])], ['set of tuples', new Set([[1, 2], [3]])], ['set with frozenset', new Set([new Set([1, 2])])],
    ['list 2500', range(2500)], ['object 1500', Object.fromEntries(range(1500).map((i) => [`k${i}`, i]))],
    ['set 1200', new Set(range(1200))],
    ['date', utc(2026, 12, 2, 15, 42, 7, 123)], ['date year 1', utc(1, 1, 1)],
    ['pydate', new PyDate(2026, 12, 2)], ['pytime', new PyTime(15, 42, 7, 123456)],
    ['pytime -05:30', new PyTime(1, 2, 3, 0, { utcOffset: -19800 })], ['pytime fold', new PyTime(1, 30, 0, 0, { fold: 1 })],
    ['pytimedelta', new PyTimedelta(-1, 5, 7)], ['pydecimal', new PyDecimal('1.10')], ['pydecimal nan', new PyDecimal('NaN')],
    ['TypeError', new TypeError('wrong type')], ['RangeError', new RangeError('out of range')],
    ['Error with code', coded], ['custom-named ValueError', named],
    ['PythonException ValueError', new PythonException('ValueError', ['bad value', 42])],
    ['PythonException AppError', new PythonException('AppError', ['went wrong'], { module: '__main__', attributes: { code: 7 } })],
    ['PythonException NoMethodError', new PythonException('NoMethodError', ['nope'], { module: 'snakemq.rpc' })],
    ['shared list', [shared, shared]]
  ]
}

/**
 * What a JavaScript value reads back as after a trip through Python: the
 * decoder's side of the type table applied to the encoder's.
 */
function normalize (v: unknown): unknown {
  if (v === undefined || v === null) return null
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v
  if (typeof v !== 'object') return v
  if (v instanceof Uint8Array) return new Uint8Array(v)
  if (Array.isArray(v)) return Array.from(v, normalize)
  if (v instanceof Map) {
    const entries = [...v].map(([k, x]) => [normalize(k), normalize(x)] as const)
    if (entries.every(([k]) => typeof k === 'string')) return normalizeObject(entries)
    return new Map(entries)
  }
  if (v instanceof Set) return new Set([...v].map(normalize))
  if (v instanceof PythonException || v instanceof Date || v instanceof PyDate || v instanceof PyTime || v instanceof PyTimedelta || v instanceof PyDecimal) return v
  if (v instanceof Error) {
    const attributes: Record<string, unknown> = {}
    for (const key of Object.keys(v)) if (key !== 'name') attributes[key] = normalize((v as unknown as Record<string, unknown>)[key])
    return new PythonException(PYTHON_EXCEPTIONS.has(v.name) ? v.name : 'Exception', [v.message], { attributes })
  }
  return normalizeObject(Object.entries(v).map(([k, x]) => [k, normalize(x)] as const))
}

function normalizeObject (entries: ReadonlyArray<readonly [unknown, unknown]>): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  for (const [k, x] of entries) Object.defineProperty(o, k as string, { value: x, enumerable: true, writable: true, configurable: true })
  return o
}

test('what the encoder writes unpickles in Python to the expected Python values, and reads back as the type table says', async () => {
  const values = toPython()
  const results = await python(['check'], values.map(([name, v]) => ({ name, hex: hex(encodePickle(v)) }))) as Array<{ name: string, ok: boolean, repr: string, back?: string }>
  for (const r of results) assert.ok(r.ok, `${r.name}: Python read ${r.repr}`)
  assert.equal(results.length, values.length)
  // Python pickled each again (protocol 4): it decodes to the value as the table maps it.
  for (const [i, [name, v]] of values.entries()) {
    assert.deepStrictEqual(decodePickle(bytes(results[i]!.back!)), normalize(v), `${name} back from Python`)
  }
})

test('every JavaScript error the encoder writes loads in Python: names Python cannot make from one message go as Exception, attributes Python refuses are left out', async () => {
  // Python names two of its built-ins by their alias.
  const aliases: Record<string, string> = { IOError: 'OSError', EnvironmentError: 'OSError' }
  const unbuildable = ['ExceptionGroup', 'UnicodeDecodeError', 'UnicodeEncodeError', 'UnicodeTranslateError', 'EncodingWarning', 'PythonFinalizationError']
  const errors: Array<[string, Error, string, string[]]> = []
  for (const name of PYTHON_EXCEPTIONS) {
    const e = new Error('boom')
    e.name = name
    errors.push([`named ${name}`, e, unbuildable.includes(name) ? 'Exception' : aliases[name] ?? name, []])
  }
  // Own properties named as BaseException's own slots: Python's __setstate__ checks their types.
  for (const key of ['args', '__traceback__', '__cause__', '__context__', '__suppress_context__', '__class__', '__dict__']) {
    errors.push([`with a property ${key}`, Object.assign(new TypeError('boom'), { [key]: 5, code: 'E_X' }), 'TypeError', ['code']])
    errors.push([`PythonException with an attribute ${key}`, new PythonException('ValueError', ['boom'], { attributes: { [key]: 5, code: 'E_X' } }), 'ValueError', ['code']])
  }
  const loaded = await python(['exceptions'], errors.map(([, e]) => hex(encodePickle(e)))) as Array<{ type?: string, args?: string, attributes?: string[], error?: string }>
  assert.equal(loaded.length, errors.length)
  for (const [i, [what, , type, attributes]] of errors.entries()) {
    assert.deepEqual(loaded[i], { type, args: "('boom',)", attributes }, what)
  }
})

test('the encoder writes protocol 4 as Python does: one FRAME, none under 4 bytes or past 64 KiB', () => {
  // Python: pickle.dumps(None, 4) and pickle.dumps([1, 2], 4).
  assert.equal(hex(encodePickle(null)), '80044e2e')
  assert.equal(hex(encodePickle([1, 2])), '80049509000000000000005d94284b014b02652e')
  // A body of 64 KiB or more goes unframed; Python reads it (the check test sends 'str 70000').
  const big = encodePickle('x'.repeat(70000))
  assert.deepEqual([...big.subarray(0, 3)], [0x80, 0x04, 0x58])
  assert.equal(decodePickle(big), 'x'.repeat(70000))
})

/** Values the encoder carries whose trip through Python is exact up to normalize(). */
const hashable = fc.oneof(fc.integer(), fc.string({ unit: 'binary', maxLength: 8 }))
const leaf = fc.oneof(
  fc.constant(null), fc.constant(undefined), fc.boolean(), fc.integer(), fc.maxSafeInteger(), fc.double(),
  fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }), fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 300 }),
  fc.uint8Array({ maxLength: 40 }),
  fc.date({ min: utc(1, 1, 1), max: utc(9999, 12, 31, 23, 59, 59, 999), noInvalidDate: true }),
  fc.integer().map((n) => new PyDecimal(`${n}.${Math.abs(n) % 100}`)),
  fc.tuple(fc.integer({ min: -1e8, max: 1e8 }), fc.integer(), fc.integer()).map(([d, s, us]) => new PyTimedelta(d, s, us)),
  fc.date({ min: utc(1, 1, 1), max: utc(9999, 12, 31), noInvalidDate: true }).map((d) => PyDate.fromDate(d)),
  fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 999_999 })).map(([h, m, us]) => new PyTime(h, m, 0, us)),
  fc.string({ maxLength: 20 }).map((m) => new TypeError(m))
)
const { value: arbitraryValue } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', maxDepth: 5 },
    leaf,
    fc.array(tie('value'), { maxLength: 6 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('value'), { maxKeys: 6 }),
    fc.uniqueArray(hashable, { maxLength: 6 }).map((a) => new Set(a)),
    fc.uniqueArray(fc.tuple(hashable, tie('value')), { maxLength: 6, selector: ([k]) => k }).map((e) => new Map(e)))
}))

test('fuzz: random values survive encode then decode, and a trip through Python\'s pickle at protocols 2 to 5', async () => {
  fc.assert(fc.property(arbitraryValue, (v) => {
    assert.deepStrictEqual(decodePickle(encodePickle(v)), normalize(v))
  }), { numRuns: 1000 })
  const values = fc.sample(arbitraryValue, { numRuns: 300, seed: 17 })
  const back = await python(['roundtrip'], values.map((v) => hex(encodePickle(v)))) as Array<{ hex?: string, error?: string }>
  for (const [i, v] of values.entries()) {
    assert.equal(back[i]!.error, undefined, `Python could not read value ${i}`)
    assert.deepStrictEqual(decodePickle(bytes(back[i]!.hex!)), normalize(v), `value ${i}, protocol ${2 + i % 4}`)
  }
})

test('fuzz: damaged pickles decode to a value or fail with RpcCodecError, never anything else', async () => {
  const cases = await python(['cases']) as Record<string, Record<string, string>>
  const seeds = Object.values(cases).flatMap((p) => Object.values(p).map(bytes)).filter((b) => b.length < 2000)
  fc.assert(fc.property(
    fc.integer({ min: 0, max: seeds.length - 1 }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
    fc.nat(),
    (which, edits, cut) => {
      const b = seeds[which]!.slice()
      for (const [at, byte] of edits) b[at % b.length] = byte
      for (const input of [b, b.subarray(0, cut % (b.length + 1))]) {
        try {
          decodePickle(input)
        } catch (err) {
          assert.ok(err instanceof RpcCodecError, `${(err as Error).name}: ${(err as Error).message}`)
        }
      }
    }), { numRuns: 5000 })
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
    try {
      decodePickle(Uint8Array.of(0x80, 0x04, ...junk))
    } catch (err) {
      assert.ok(err instanceof RpcCodecError, `${(err as Error).name}: ${(err as Error).message}`)
    }
  }), { numRuns: 5000 })
})

interface Hostile { hex: string, ops: Array<[string, number]> }

test('hostile pickles are refused at the opcode that would act, before it acts; Python shows each one does act', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pickle-hostile-'))
  const marker = join(dir, 'pwned')
  try {
    const hostile = await python(['hostile', marker]) as Record<string, Hostile>
    /** Which opcode each must be refused at (its nth occurrence), and what the message says. */
    const refusals: Record<string, [string, number, RegExp]> = {
      'os.system protocol 0': ['GLOBAL', 0, /class reference "os\.system"/],
      'os.system': ['STACK_GLOBAL', 0, /class reference "posix\.system"/],
      'os.system protocol 2': ['GLOBAL', 0, /class reference "posix\.system"/],
      'builtins.eval': ['STACK_GLOBAL', 0, /class reference "builtins\.eval"/],
      'builtins.exec': ['STACK_GLOBAL', 0, /class reference "builtins\.exec"/],
      'builtins.getattr': ['STACK_GLOBAL', 0, /class reference "builtins\.getattr"/],
      'copyreg._reconstructor': ['GLOBAL', 0, /class reference "copy_reg\._reconstructor"/],
      'types.SimpleNamespace and BUILD': ['GLOBAL', 0, /class reference "types\.SimpleNamespace"/],
      'NEWOBJ of an exception-named class': ['NEWOBJ', 0, /opcode NEWOBJ is refused/],
      "os.system inside an exception's args": ['STACK_GLOBAL', 1, /class reference "posix\.system"/],
      BINPERSID: ['BINPERSID', 0, /opcode BINPERSID is refused/],
      EXT1: ['EXT1', 0, /opcode EXT1 is refused/],
      NEXT_BUFFER: ['NEXT_BUFFER', 0, /opcode NEXT_BUFFER is refused/]
    }
    for (const [name, [opName, nth, message]] of Object.entries(refusals)) {
      const h = hostile[name]!
      const at = h.ops.filter(([op]) => op === opName)[nth]![1]
      assert.throws(() => decodePickle(bytes(h.hex)), (err: unknown) => {
        assert.ok(err instanceof RpcCodecError)
        assert.equal(err.code, 'ERR_RPC_CODEC')
        assert.match(err.message, message, name)
        // Refused at that opcode: before any REDUCE, NEWOBJ or BUILD after it could run.
        assert.match(err.message, new RegExp(`\\(at byte ${at}\\)$`), name)
        return true
      }, name)
    }
    // The same bytes do run code in Python: loading the os.system and eval pickles there creates the marker...
    for (const name of ['os.system protocol 0', 'os.system', 'builtins.eval']) {
      await python(['load', hostile[name]!.hex], undefined, dir)
      assert.ok(existsSync(marker), `Python ran ${name}`)
      rmSync(marker)
      // ...decoding them here does not.
      assert.throws(() => decodePickle(bytes(hostile[name]!.hex)), RpcCodecError)
      assert.equal(existsSync(marker), false, `decoding ${name} created nothing`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('hostile sizes are refused before anything is allocated: 2^31 lengths, huge integers, deep nesting, memo abuse, cycles', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pickle-limits-'))
  try {
    const hostile = await python(['hostile', join(dir, 'unused')]) as Record<string, Hostile>
    const refused = (input: Uint8Array, message: RegExp, options?: Parameters<typeof decodePickle>[1]): void => {
      assert.throws(() => decodePickle(input, options), (err: unknown) => err instanceof RpcCodecError && message.test(err.message))
    }
    // Lengths announced beyond the input: refused from the header.
    refused(bytes('80045800000080' + '41'.repeat(8) + '2e'), /a length of 2147483648 bytes but only 9 remain/)
    refused(bytes('80048e0000000000010000' + '2e'), /a length of 1099511627776 bytes/)
    refused(bytes('800496ffffffffffffffff2e'), /beyond 2\^53/)
    refused(bytes('80048bffffff7f2e'), /an integer of 2147483647 bytes, more than maxIntegerBytes/)
    // A huge integer that is all there: refused by maxIntegerBytes, read when the limit allows it.
    refused(bytes(hostile['an int of 2**100000']!.hex), /maxIntegerBytes \(1024\)/)
    assert.equal(decodePickle(bytes(hostile['an int of 2**100000']!.hex), { maxIntegerBytes: 20_000 }), 2n ** 100000n)
    // Deep nesting: Python's 101 levels pass maxDepth (64), and read with a higher limit; 100,000 MARKs or
    // 200,000 lists in lists are refused without a deep recursion.
    refused(bytes(hostile['lists nested 101 deep']!.hex), /nested deeper than maxDepth \(64\)/)
    assert.ok(Array.isArray(decodePickle(bytes(hostile['lists nested 101 deep']!.hex), { maxDepth: 200 })))
    refused(Uint8Array.from([0x80, 0x04, ...new Array<number>(100_000).fill(0x28), 0x2e]), /MARKs nested deeper than maxDepth/)
    refused(Uint8Array.from([0x80, 0x04, ...new Array<number>(200_000).fill(0x5d), ...new Array<number>(199_999).fill(0x61), 0x2e]), /nested deeper than maxDepth/)
    // Memo abuse: ten lists shared ten times over, nine levels deep (10^10 values from 250 bytes) count as copies.
    const laughs = bytes(hostile['a billion shared references']!.hex)
    assert.ok(laughs.length < 300)
    refused(laughs, /more values than maxValues \(1048576\), counting shared references as copies/)
    // A memo past maxMemo, a reference to an entry never made; an index of 2^32 - 1 is a key, not an allocation.
    // (MEMOIZE again and again on one None: entries without values.)
    const flood = new Uint8Array(3 + defaultPickleLimits.maxMemo + 1 + 1).fill(0x94)
    flood.set([0x80, 0x04, 0x4e])
    flood[flood.length - 1] = 0x2e
    refused(flood, /more memo entries than maxMemo \(1048576\)/)
    refused(bytes('800468052e'), /memo reference to entry 5, which is not there/)
    assert.equal(decodePickle(bytes('80044e72ffffffff2e')), null)
    // A list that contains itself.
    refused(bytes(hostile['a list that contains itself']!.hex), /contains itself/)
    // Past maxBytes: refused before a byte is read.
    refused(new Uint8Array(1025), /more than maxBytes \(1024\)/, { maxBytes: 1024 })
    // Malformed: no STOP, bytes after it, unknown opcodes, a stack left over, a class used as a value.
    refused(bytes('80044e'), /ends before its STOP/)
    refused(bytes('80044e2e00'), /1 bytes after STOP/)
    refused(bytes('8004ff2e'), /unknown opcode 0xff/)
    refused(bytes('80044e4e2e'), /2 values on the stack/)
    // STACK_GLOBAL datetime.date, then STOP: the class itself, not a call of it.
    refused(bytes('80048c086461746574696d65948c04646174659493942e'), /the class datetime\.date as a value/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('values the encoder cannot carry are refused with RpcCodecError naming where', () => {
  const refused = (v: unknown, message: RegExp, options?: Parameters<typeof encodePickle>[1]): void => {
    assert.throws(() => encodePickle(v, options), (err: unknown) => err instanceof RpcCodecError && message.test(err.message))
  }
  refused({ a: [1, () => 1] }, /a function at value\.a\[1\]/)
  refused([Symbol('s')], /a symbol at value\[0\]/)
  refused(new (class Point { x = 1 })(), /an instance of Point/)
  refused(new Float32Array(2), /Float32Array/)
  const cyclic: unknown[] = []
  cyclic.push(cyclic)
  refused(cyclic, /a cycle/)
  refused(new Date(NaN), /invalid Date/)
  refused(utc(10000, 1, 1), /year 10000/)
  refused(new Map([[{}, 1]]), /Python cannot hash a dict/)
  refused(new Set([new Map()]), /Python cannot hash a dict/)
  refused(2n ** 10000n, /maxIntegerBytes/)
  // Python's loads would fail on these (TypeError: cannot hash a signaling NaN; no builtins.AppError).
  refused(new Map([[new PyDecimal('sNaN'), 1]]), /signaling NaN Decimal as a dict key/)
  refused(new Set([new PyDecimal('-snan7')]), /signaling NaN Decimal as a dict key or set member/)
  assert.deepStrictEqual(decodePickle(encodePickle([new PyDecimal('sNaN')])), [new PyDecimal('sNaN')])
  refused({ e: new PythonException('AppError', ['x']) }, /builtins\.AppError, which Python does not have .* at value\.e/)
  refused('x'.repeat(2000), /longer than maxBytes/, { maxBytes: 1000 })
  let deep: unknown = []
  for (let i = 0; i < 70; i++) deep = [deep]
  refused(deep, /deeper than maxDepth \(64\)/)
  // A shared value counts as a copy against maxValues, as the decoder counts it.
  const wide = range(100)
  refused(range(100).map(() => wide), /more than maxValues \(5000\)/, { maxValues: 5000 })
  // An error's attribute that cannot be pickled is left out, not the error.
  const e = Object.assign(new Error('kept'), { fn: () => 1, n: 1 })
  assert.deepStrictEqual(decodePickle(encodePickle(e)), new PythonException('Exception', ['kept'], { attributes: { n: 1 } }))
})
