// snakeMQ-format RPC against bytes: the 35 request/reply exchanges recorded
// between a real snakeMQ 1.6 RpcClient and RpcServer (../shared/vectors/
// snakemq-1.6-rpc.json, Python 3.11, pickle protocol 4) replayed over real
// loopback sockets against a live Node RpcServer and a live Node RpcClient, from
// a plain snakeMQ peer made of bytes (test/helpers/plain-peer.ts); then what
// goes wrong on the way: hostile pickles, a resent req_id, replies that are not
// data, serving turned off, and a Messaging with only a client or only a server.
//
// What is compared byte for byte, and why the rest cannot be:
// - A request or reply whose value this library reads back as the same value
//   (None, bools, ints of any size, floats with a fraction, str, bytes, lists
//   without floats that happen to be integral, dicts, sets, shared references,
//   datetime, date, Decimal, the exceptions): all its bytes, except a Node
//   client's req_id (its own request id, patched into the recorded bytes).
//   Which values qualify is decided, not listed: those whose recorded pickle the
//   encoder writes again from its decoded value, byte for byte.
// - Tuples, bytearray, frozenset and floats such as 3.0 come back as arrays,
//   Uint8Array, Set and numbers, and go back to Python as list, bytes, set and
//   int (docs/RPC.md's table): those replies and requests are compared as values.
// - An exception reply's `exception_format` is Python's traceback text in the
//   recording and a JavaScript stack from a Node server: everything else in that
//   reply is compared byte for byte.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  Link, Messaging, PythonException, RpcClient, RpcCodecError, RpcRemoteError, RpcServer, RpcTimeoutError, RpcUnknownMethodError,
  RpcUnknownObjectError, asSignal, decodePickle, encodePickle, type LogFields, type Logger, type Message
} from '../src/index.ts'
import { PickleTuple } from '../src/rpc/pickle.ts'
import { snakeRequestMessage } from '../src/rpc/snakemq.ts'
import { PlainPeer } from './helpers/plain-peer.ts'
import { connected, pair, waitFor } from './helpers/util.ts'

interface Vectors {
  cases: Array<{ name: string, python_result: 'return' | 'raise', python_value: string, messages: Array<{ direction: 'cli->srv' | 'srv->cli', data_hex: string }> }>
}
// A copy of ../shared/vectors/snakemq-1.6-rpc.json (recorded from a real snakeMQ 1.6), so a clone tests on its own.
const FIXTURE = fileURLToPath(new URL('./fixtures/snakemq-1.6-rpc.json', import.meta.url))
const vectors = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Vectors
const SHARED = fileURLToPath(new URL('../../shared/vectors/snakemq-1.6-rpc.json', import.meta.url))

test('the RPC vector fixture is the recorded file, byte for byte (where the shared original is beside the repo)', () => {
  assert.equal(vectors.cases.length, 35, 'the 35 recorded exchanges')
  if (existsSync(SHARED)) assert.ok(readFileSync(SHARED).equals(readFileSync(FIXTURE)), 'test/fixtures/snakemq-1.6-rpc.json differs from shared/vectors')
})
const PICKLE_PEER = fileURLToPath(new URL('./fixtures/pickle_peer.py', import.meta.url))

const PREFIX = 6
const pickleOf = (data: Uint8Array): Uint8Array => data.subarray(PREFIX)
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

interface Request { command: string, object: string, method: string, args: unknown[], kwargs: Record<string, unknown>, req_id?: Uint8Array }
interface Reply { ok: boolean, return?: unknown, exception?: unknown, exception_format?: string, req_id: Uint8Array }

/** True when the encoder writes `data`'s pickle again from its decoded value: such a message can be compared byte for byte. */
function mapsBackExactly (data: Buffer): boolean {
  const decoded = decodePickle(pickleOf(data)) as Record<string, unknown>
  if (Array.isArray(decoded.args)) decoded.args = new PickleTuple(decoded.args)
  return hex(encodePickle(decoded)) === hex(pickleOf(data))
}

/** `data` with the one occurrence of `from` replaced by `to` (same length). */
function patch (data: Buffer, from: Uint8Array, to: Uint8Array): Buffer {
  const at = data.indexOf(Buffer.from(from))
  assert.ok(at >= 0 && data.indexOf(Buffer.from(from), at + 1) < 0, 'the req_id occurs once')
  const out = Buffer.from(data)
  out.set(to, at)
  return out
}

/** A logger that keeps every line and emits each as 'line'. */
class LogCapture extends EventEmitter implements Logger {
  readonly lines: Array<{ level: string, message: string, fields: LogFields | undefined }> = []
  debug (message: string, fields?: LogFields): void { this.add('debug', message, fields) }
  info (message: string, fields?: LogFields): void { this.add('info', message, fields) }
  warn (message: string, fields?: LogFields): void { this.add('warn', message, fields) }
  error (message: string, fields?: LogFields): void { this.add('error', message, fields) }
  private add (level: string, message: string, fields: LogFields | undefined): void {
    this.lines.push({ level, message, fields })
    this.emit('line', { level, message })
  }

  async wait (level: string, pattern: RegExp): Promise<void> {
    if (this.lines.some((l) => l.level === level && pattern.test(l.message))) return
    await waitFor<{ level: string, message: string }>(this, 'line', (l) => l.level === level && pattern.test(l.message))
  }
}

/** The vectors' server object (snakemq-1.6-rpc.json's "server"), in JavaScript. */
function jsCalc (notes: string[]): object {
  return {
    echo: (x: unknown) => x,
    // add(a, b=0): Python's keyword arguments arrive as one more argument, an object.
    add: (a: number, b: number | { b?: number } = 0) => a + (typeof b === 'number' ? b : b.b ?? 0),
    kw: (a: number, { scale = 1, label = 'x' }: { scale?: number, label?: string } = {}) => ({ a: a * scale, label }),
    fail_value () { throw new PythonException('ValueError', ['bad value', 42]) },
    fail_key () { throw new PythonException('KeyError', ['missing']) },
    fail_zero () { throw new PythonException('ZeroDivisionError', ['division by zero']) },
    fail_app () { throw new PythonException('AppError', ['app went wrong'], { module: '__main__' }) },
    note: asSignal((text: string) => { notes.push(text) })
  }
}

/** A Node Messaging "srv" with an RpcServer serving jsCalc as "calc", and a plain snakeMQ peer "cli" connected to it. */
async function nodeServer (options: ConstructorParameters<typeof RpcServer>[1] = {}) {
  const link = new Link()
  const listener = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'srv' })
  const log = new LogCapture()
  const server = new RpcServer(mq, { logger: log, ...options })
  const notes: string[] = []
  server.register('calc', jsCalc(notes))
  const peer = await PlainPeer.connect(listener.port, 'cli')
  await connected(mq, 'cli')
  return {
    mq, server, peer, notes, log,
    close: async (): Promise<void> => {
      peer.destroy()
      await server.close()
      await mq.close()
    }
  }
}

test('the 35 recorded snakeMQ 1.6 exchanges replayed against a live Node RpcServer: each reply decodes to the recorded one, byte for byte where the format is fixed', async () => {
  const t = await nodeServer()
  try {
    assert.equal(t.mq.peerIsPlain('cli'), true)
    let exact = 0
    for (const c of vectors.cases) {
      const request = Buffer.from(c.messages[0]!.data_hex, 'hex')
      const isSignal = c.messages.length === 1
      // snakeMQ sends calls with TTL 0, this signal with its TTL of 10.
      t.peer.send(request, isSignal ? 10 : 0)
      if (isSignal) continue
      const recorded = Buffer.from(c.messages[1]!.data_hex, 'hex')
      const live = await t.peer.message()
      assert.equal(live.flags, 0, c.name)
      assert.equal(live.data.subarray(0, PREFIX).toString(), 'rpcrep', c.name)
      const got = decodePickle(pickleOf(live.data)) as Reply
      const want = decodePickle(pickleOf(recorded)) as Reply
      if (want.ok) {
        assert.deepStrictEqual(got, want, c.name)
        if (mapsBackExactly(recorded)) {
          assert.equal(hex(live.data), hex(recorded), `${c.name}: byte for byte`)
          exact++
        }
      } else {
        // The exception and the rest of the reply are the recorded ones; the traceback is a JavaScript stack
        // (or, for an unknown name, the one line snakeMQ's would end with), naming the exception.
        assert.deepStrictEqual({ ...got, exception_format: '' }, { ...want, exception_format: '' }, c.name)
        const e = want.exception as PythonException
        const module = e.module === 'builtins' || e.module === '__main__' ? '' : `${e.module}.`
        assert.equal(got.exception_format!.split('\n')[0], `${module}${e.name}: ${e.message}`, c.name)
        assert.equal(hex(live.data), hex(Buffer.concat([Buffer.from('rpcrep'), encodePickle({ ...want, exception_format: got.exception_format })])), `${c.name}: byte for byte but the traceback`)
        exact++
      }
    }
    // The signal ran, once, and sent nothing back: the next reply is the next call's.
    const probe = snakeRequestMessage({ command: 'call', object: 'calc', method: 'echo', args: ['after the signal'], reqId: new Uint8Array(16).fill(9) })
    t.peer.send(probe)
    const next = decodePickle(pickleOf((await t.peer.message()).data)) as Reply
    assert.deepEqual([next.return, [...next.req_id]], ['after the signal', new Array<number>(16).fill(9)])
    assert.deepEqual(t.notes, ['hi'])
    assert.equal(exact, 28, 'replies compared byte for byte (all but the signal and the 6 with tuples, bytearray, frozenset or 3.0)')
  } finally {
    await t.close()
  }
})

test('the recorded exchanges replayed against a live Node RpcClient: the same requests go out, and each call resolves or rejects as the Python one did', async () => {
  const peers: PlainPeer[] = []
  const accepted = new EventEmitter()
  const raw = net.createServer((socket) => {
    const p = PlainPeer.accept(socket, 'srv')
    peers.push(p)
    accepted.emit('peer', p)
  })
  raw.listen(0, '127.0.0.1')
  await once(raw, 'listening')
  const link = new Link()
  const mq = new Messaging(link, { identity: 'cli' })
  const client = new RpcClient(mq)
  link.connect({ port: (raw.address() as net.AddressInfo).port, reconnect: { minDelay: 20, maxDelay: 200 } })
  try {
    const peer = peers[0] ?? await waitFor<PlainPeer>(accepted, 'peer')
    await connected(mq, 'srv')
    let exact = 0
    for (const c of vectors.cases) {
      const recordedRequest = Buffer.from(c.messages[0]!.data_hex, 'hex')
      const want = decodePickle(pickleOf(recordedRequest)) as Request
      const kwargs = Object.keys(want.kwargs).length > 0 ? want.kwargs : undefined
      if (want.command === 'signal') {
        await client.signal('srv', want.object, want.method, want.args, { ttl: 10 })
        const sent = await peer.message()
        // A signal has no req_id: all of it is the recorded bytes.
        assert.deepEqual([sent.ttl, sent.flags, hex(sent.data)], [10, 0, hex(recordedRequest)], c.name)
        exact++
        continue
      }
      const outcome = client.call('srv', want.object, want.method, want.args, kwargs === undefined ? undefined : { kwargs })
      outcome.catch(() => {})
      const sent = await peer.message()
      assert.deepEqual([sent.ttl, sent.flags, sent.data.subarray(0, PREFIX).toString()], [0, 0, 'rpcreq'], c.name)
      const got = decodePickle(pickleOf(sent.data)) as Request
      assert.equal(got.req_id!.length, 16)
      assert.deepStrictEqual({ ...got, req_id: null }, { ...want, req_id: null }, c.name)
      if (mapsBackExactly(recordedRequest)) {
        assert.equal(hex(sent.data), hex(patch(recordedRequest, want.req_id!, got.req_id!)), `${c.name}: byte for byte but the req_id`)
        exact++
      }
      // The recorded reply, answering this call.
      const recordedReply = Buffer.from(c.messages[1]!.data_hex, 'hex')
      peer.send(patch(recordedReply, want.req_id!, got.req_id!))
      const reply = decodePickle(pickleOf(recordedReply)) as Reply
      if (reply.ok) {
        assert.deepStrictEqual(await outcome, reply.return, c.name)
        continue
      }
      const e = reply.exception as PythonException
      await assert.rejects(outcome, (err: unknown) => {
        if (e.name === 'NoInstanceError') return err instanceof RpcUnknownObjectError && err.objectName === want.object
        if (e.name === 'NoMethodError') return err instanceof RpcUnknownMethodError && err.methodName === want.method
        assert.ok(err instanceof RpcRemoteError, c.name)
        assert.deepEqual([err.remoteName, err.message, err.remoteStack], [e.name, e.message, reply.exception_format], c.name)
        assert.deepStrictEqual(err.cause, e)
        return true
      }, c.name)
    }
    assert.equal(exact, 29, 'requests compared byte for byte (all but the 6 with tuples, bytearray, frozenset or 3.0)')
    assert.equal(client.pendingCalls, 0)
  } finally {
    await client.close()
    await mq.close()
    for (const p of peers) p.destroy()
    raw.close()
  }
})

/** A pickle from opcodes and values: bytes as is, strings as SHORT_BINUNICODE + MEMOIZE. */
function pickle (...parts: Array<string | Uint8Array | number[]>): Buffer {
  return Buffer.concat(parts.map((p) => {
    if (typeof p !== 'string') return Buffer.from(p)
    const b = Buffer.from(p, 'utf8')
    return Buffer.concat([Buffer.from([0x8c, b.length]), b, Buffer.from([0x94])])
  }))
}

/** `rpcreq` + a request for calc.echo whose argument is posix.system(command) called by REDUCE. */
function hostileRequest (command: string, reqId: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from('rpcreq'), pickle(
    [0x80, 0x04, 0x7d, 0x94, 0x28], 'command', 'call', 'object', 'calc', 'method', 'echo', 'args',
    'posix', 'system', [0x93, 0x94], command, [0x85, 0x94, 0x52, 0x94, 0x85, 0x94], 'kwargs', [0x7d, 0x94], 'req_id',
    [0x43, 16], reqId, [0x94, 0x75, 0x2e]
  )])
}

test('a snakeMQ request carrying os.system is refused without acting: the caller gets an UnpicklingError, the server goes on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rpc-hostile-'))
  const marker = join(dir, 'pwned')
  const t = await nodeServer()
  try {
    const reqId = new Uint8Array(16).fill(0xab)
    const request = hostileRequest(`touch ${marker}`, reqId)
    // Python's unpickler would run it: shown by Python itself.
    const python = spawn('python3', [PICKLE_PEER, 'load', hex(pickleOf(request))], { cwd: dir, stdio: 'ignore' })
    assert.equal((await once(python, 'exit'))[0], 0)
    assert.ok(existsSync(marker))
    rmSync(marker)

    t.peer.send(request)
    const reply = decodePickle(pickleOf((await t.peer.message()).data)) as Reply
    assert.equal(reply.ok, false)
    assert.deepEqual([...reply.req_id], [...reqId])
    const e = reply.exception as PythonException
    assert.deepEqual([e.module, e.name], ['_pickle', 'UnpicklingError'])
    assert.match(e.message, /refused the class reference "posix\.system"/)
    assert.equal(existsSync(marker), false)
    assert.equal(t.log.lines.filter((l) => l.level === 'error' && /refused a snakeMQ RPC request: its pickle is not plain data/.test(l.message)).length, 1)
    // The same connection goes on being served.
    t.peer.send(snakeRequestMessage({ command: 'call', object: 'calc', method: 'add', args: [2, 3], reqId: new Uint8Array(16).fill(1) }))
    assert.equal((decodePickle(pickleOf((await t.peer.message()).data)) as Reply).return, 5)
  } finally {
    await t.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a snakeMQ call resent with the same req_id is answered from the result cache, not run twice', async () => {
  const t = await nodeServer()
  let runs = 0
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  t.server.register('slow', { async once () { runs++; await gate; return runs } })
  try {
    const request = snakeRequestMessage({ command: 'call', object: 'slow', method: 'once', args: [], reqId: new Uint8Array(16).fill(7) })
    t.peer.send(request)
    // Resent while it runs: nothing runs, nothing is answered yet.
    t.peer.send(request)
    await t.log.wait('debug', /a snakeMQ call seen before/)
    release()
    const first = await t.peer.message()
    // Resent once it is done: the same reply again.
    t.peer.send(request)
    const second = await t.peer.message()
    assert.equal(hex(second.data), hex(first.data))
    assert.equal((decodePickle(pickleOf(first.data)) as Reply).return, 1)
    assert.equal(runs, 1)
    // Two replies, no third: the next thing the peer gets is a message sent after them.
    await t.mq.send('cli', 'barrier')
    assert.equal((await t.peer.message()).data.toString(), 'barrier')
  } finally {
    await t.close()
  }
})

test('an error thrown to a Python caller always reaches it as an exception Python can load, its name and message kept when its class cannot go', async () => {
  const t = await nodeServer()
  t.server.register('bad', {
    // No module: builtins.AppError, which Python does not have.
    noModule () { throw new PythonException('AppError', ['went wrong']) },
    // Own properties Python's exceptions refuse as attributes (args must be a sequence, __cause__ an exception).
    slots () { throw Object.assign(new TypeError('typed'), { args: 5, __cause__: 'x', code: 'E_SLOT' }) }
  })
  try {
    const answers: Record<string, unknown> = {}
    for (const [i, method] of ['noModule', 'slots'].entries()) {
      t.peer.send(snakeRequestMessage({ command: 'call', object: 'bad', method, args: [], reqId: new Uint8Array(16).fill(i + 1) }))
      const body = pickleOf((await t.peer.message()).data)
      // What snakeMQ's RpcClient does with it: pickle.loads.
      const python = spawn('python3', [PICKLE_PEER, 'load', hex(body)], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      python.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
      assert.equal((await once(python, 'exit'))[0], 0, `Python could not load the reply to ${method}`)
      answers[method] = (JSON.parse(out) as { loaded: string }).loaded
      const e = (decodePickle(body) as Reply).exception as PythonException
      answers[`${method} decoded`] = [e.module, e.name, e.args, (e as unknown as { code?: unknown }).code]
    }
    assert.match(answers.noModule as string, /'exception': Exception\('AppError: went wrong'\)/)
    assert.deepEqual(answers['noModule decoded'], ['builtins', 'Exception', ['AppError: went wrong'], undefined])
    assert.match(answers.slots as string, /'exception': TypeError\('typed'\)/)
    assert.deepEqual(answers['slots decoded'], ['builtins', 'TypeError', ['typed'], 'E_SLOT'])
  } finally {
    await t.close()
  }
})

test('with snakemq: false an RpcServer refuses snakeMQ requests as before: logged, never decoded, not answered', async () => {
  const t = await nodeServer({ snakemq: false })
  try {
    t.peer.send(Buffer.from(vectors.cases.find((c) => c.name === 'add positional')!.messages[0]!.data_hex, 'hex'))
    await t.log.wait('error', /refused a snakeMQ RPC request: answering them is off/)
    await t.mq.send('cli', 'barrier')
    assert.equal((await t.peer.message()).data.toString(), 'barrier')
  } finally {
    await t.close()
  }
})

test('a reply a Node RpcClient cannot read as data fails its call with RpcCodecError instead of leaving it waiting', async () => {
  const raw = net.createServer()
  raw.listen(0, '127.0.0.1')
  await once(raw, 'listening')
  const accepted = once(raw, 'connection') as Promise<[net.Socket]>
  const link = new Link()
  const mq = new Messaging(link, { identity: 'cli' })
  const client = new RpcClient(mq)
  link.connect({ port: (raw.address() as net.AddressInfo).port, reconnect: { minDelay: 20, maxDelay: 200 } })
  const peer = PlainPeer.accept((await accepted)[0], 'srv')
  try {
    await connected(mq, 'srv')
    const call = client.call('srv', 'calc', 'echo', [1])
    const sent = decodePickle(pickleOf((await peer.message()).data)) as Request
    // {"ok": True, "return": posix.system("..."), "req_id": ...}: a Python server's reply no Node peer evaluates.
    peer.send(Buffer.concat([Buffer.from('rpcrep'), pickle(
      [0x80, 0x04, 0x7d, 0x94, 0x28], 'ok', [0x88], 'return', 'posix', 'system', [0x93, 0x94], 'true', [0x85, 0x94, 0x52, 0x94],
      'req_id', [0x43, 16], sent.req_id!, [0x94, 0x75, 0x2e]
    )]))
    await assert.rejects(call, (err: unknown) => err instanceof RpcCodecError && /answered calc\.echo with a pickle that is not plain data: .*posix\.system/.test(err.message))
    assert.equal(client.pendingCalls, 0)
  } finally {
    await client.close()
    await mq.close()
    peer.destroy()
    raw.close()
  }
})

test('a snakeMQ request reaching a Messaging with only an RpcClient gets NoInstanceError; a reply reaching one with only an RpcServer is dropped, not left for the application', async () => {
  const link = new Link()
  const listener = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'srv' })
  const client = new RpcClient(mq)
  const peer = await PlainPeer.connect(listener.port, 'cli')
  try {
    await connected(mq, 'cli')
    peer.send(snakeRequestMessage({ command: 'call', object: 'calc', method: 'add', args: [1], reqId: new Uint8Array(16).fill(3) }))
    const reply = decodePickle(pickleOf((await peer.message()).data)) as Reply
    assert.deepStrictEqual(reply.exception, new PythonException('NoInstanceError', ['calc'], { module: 'snakemq.rpc' }))
  } finally {
    await client.close()
    peer.destroy()
    await mq.close()
  }
  const t = await nodeServer()
  const app: Message[] = []
  const appLoop = (async () => {
    for await (const m of t.mq.messages()) {
      app.push(m)
      break
    }
  })()
  try {
    t.peer.send(Buffer.from(vectors.cases[0]!.messages[1]!.data_hex, 'hex'))
    t.peer.send(Buffer.from('for the application'))
    await appLoop
    assert.deepEqual(app.map((m) => Buffer.from(m.data).toString()), ['for the application'])
    assert.ok(t.log.lines.some((l) => l.message === 'dropped a snakeMQ RPC reply: no RpcClient on this Messaging'))
  } finally {
    await t.close()
  }
})

test('format \'snakemq\' between two Node peers: calls, keyword arguments, errors and signals go as pickles and are answered', async () => {
  const { a, b } = await pair()
  const log = new LogCapture()
  const server = new RpcServer(a, { logger: log })
  const notes: string[] = []
  const noted = new EventEmitter()
  server.register('calc', {
    ...jsCalc(notes),
    fail_type (m: string) { throw new TypeError(m) },
    note: asSignal((text: string) => { notes.push(text); noted.emit('note') })
  })
  const client = new RpcClient(b, { format: 'snakemq' })
  try {
    // A Node peer, connected with this library's extensions: 'auto' would not use pickles.
    assert.equal(b.peerIsPlain('alice'), false)
    assert.equal(b.peerIsPlain('nobody'), undefined)
    assert.equal(await client.call('alice', 'calc', 'add', [2], { kwargs: { b: 5 } }), 7)
    await assert.rejects(client.call('alice', 'calc', 'fail_type', ['wrong']), (err: unknown) => err instanceof RpcRemoteError && err.remoteName === 'TypeError' && err.message === 'wrong' && /^TypeError: wrong\n {4}at /.test(err.remoteStack!))
    await assert.rejects(client.call('alice', 'nothing', 'x'), RpcUnknownObjectError)
    const signalled = waitFor(noted, 'note')
    await client.signal('alice', 'calc', 'note', ['signalled'], { ttl: 5 })
    await signalled
    assert.deepEqual(notes, ['signalled'])
    // They were snakeMQ requests: a server that refuses those does not answer.
    const refusing = new RpcClient(b, { format: 'snakemq', timeout: 300 })
    await server.close()
    const off = new RpcServer(a, { logger: log, snakemq: false })
    off.register('calc', jsCalc(notes))
    await assert.rejects(refusing.call('alice', 'calc', 'add', [1, 1]), RpcTimeoutError)
    assert.ok(log.lines.some((l) => /answering them is off/.test(l.message)))
    await refusing.close()
    await off.close()
  } finally {
    await client.close()
    await server.close()
    await a.close()
    await b.close()
  }
})
