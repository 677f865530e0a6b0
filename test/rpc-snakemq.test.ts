// RPC between this library and Python snakeMQ 1.6 peers, both ways, over real
// loopback sockets. snakeMQ cannot be installed here, so
// test/fixtures/snakemq_rpc_peer.py plays one with python3's standard library:
// snakeMQ's wire protocol and its RpcServer / RpcClient, pickles made and read
// by Python's own pickle. python3 is part of every machine these tests run on:
// without it they fail, they do not skip.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import {
  Link, Messaging, PyDecimal, PythonException, RpcClient, RpcRemoteError, RpcServer, RpcUnknownMethodError, RpcUnknownObjectError,
  asSignal, type LogFields, type Logger, type MessagingEvents
} from '../src/index.ts'
import { connected, waitFor } from './helpers/util.ts'

const SCRIPT = fileURLToPath(new URL('./fixtures/snakemq_rpc_peer.py', import.meta.url))

interface PyEvent {
  event: string
  port?: number
  peer?: string
  ttl?: number
  flags?: number
  prefix?: string
  command?: string | null
  method?: string | null
  req_id?: string | null
  text?: string
  case?: string
  ok?: boolean
  repr?: string
  error?: string
}

/** snakemq_rpc_peer.py, with the JSON lines it printed, awaitable. */
class PyPeer {
  readonly events: PyEvent[] = []
  private readonly emitter = new EventEmitter()
  private stderr = ''
  readonly exited: Promise<number | null>

  private constructor (readonly child: ChildProcessByStdio<Writable, Readable, Readable>) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const e = JSON.parse(line) as PyEvent
      this.events.push(e)
      this.emitter.emit('event', e)
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { this.stderr += d })
    this.exited = once(child, 'exit').then(([code]) => code as number | null)
  }

  static spawn (args: string[]): PyPeer {
    return new PyPeer(spawn('python3', [SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }))
  }

  /** The first event named `event` that passes `filter`, already printed or still to come. */
  async wait (event: string, filter: (e: PyEvent) => boolean = () => true, ms = 20_000): Promise<PyEvent> {
    const seen = this.events.find((e) => e.event === event && filter(e))
    if (seen !== undefined) return seen
    const exited = this.exited.then((code) => { throw new Error(`snakemq_rpc_peer.py exited (${code}) before ${event}: ${this.stderr}`) })
    return await Promise.race([waitFor<PyEvent>(this.emitter, 'event', (e) => e.event === event && filter(e), ms), exited])
  }

  all (event: string): PyEvent[] { return this.events.filter((e) => e.event === event) }

  /** Resolves once `n` events named `event` that pass `filter` were printed (its lines may trail what it sent on the socket). */
  async count (event: string, filter: (e: PyEvent) => boolean, n: number): Promise<PyEvent[]> {
    const matching = (): PyEvent[] => this.events.filter((e) => e.event === event && filter(e))
    while (matching().length < n) await this.wait(event, (e) => filter(e) && matching().length >= n)
    return matching()
  }

  /** Ends it (stdin closed, then SIGKILL if it lingers) and resolves once it is gone. */
  async close (): Promise<void> {
    this.child.stdin.end()
    const timer = setTimeout(() => { this.child.kill('SIGKILL') }, 5000)
    await this.exited
    clearTimeout(timer)
  }

  get errors (): string { return this.stderr }
}

/** The Python server's Calc (the recorded vectors' server object, and sample() and drop_once()). */
interface PyCalc {
  add (a: number, b?: number): number
  echo<T> (x: T): T
  kw (a: number): { a: number, label: string }
  sample (): Record<string, unknown>
  fail_value (): never
  fail_key (): never
  fail_app (): never
  drop_once (key: string): string
  note (text: string): void
}

/** A Messaging "cli" that dials the Python server at `port`. */
function dial (port: number, identity = 'cli'): { link: Link, mq: Messaging } {
  const link = new Link()
  const mq = new Messaging(link, { identity })
  link.connect({ port, reconnect: { minDelay: 20, maxDelay: 200 } })
  return { link, mq }
}

interface LogLine { level: string, message: string, fields: LogFields | undefined }

/** A logger that keeps every line and emits each as 'line'. */
class LogCapture extends EventEmitter implements Logger {
  readonly lines: LogLine[] = []
  debug (message: string, fields?: LogFields): void { this.add({ level: 'debug', message, fields }) }
  info (message: string, fields?: LogFields): void { this.add({ level: 'info', message, fields }) }
  warn (message: string, fields?: LogFields): void { this.add({ level: 'warn', message, fields }) }
  error (message: string, fields?: LogFields): void { this.add({ level: 'error', message, fields }) }
  private add (line: LogLine): void {
    this.lines.push(line)
    this.emit('line', line)
  }
}

/** A Date from UTC fields. */
const utc = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0): Date => new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms))

test('a Node RpcClient calls a Python snakeMQ 1.6 RpcServer: add(2, 3) is 5, every value type comes back as its JS value, a ValueError arrives as RpcRemoteError', async () => {
  const py = PyPeer.spawn(['server'])
  const { port } = await py.wait('listening')
  const { mq } = dial(port!)
  const client = new RpcClient(mq)
  try {
    await connected(mq, 'srv')
    // The Python peer announced no extensions: its connection is plain snakeMQ, and RPC speaks snakeMQ's format.
    assert.equal(mq.peerIsPlain('srv'), true)
    const calc = client.proxy<PyCalc>('srv', 'calc')

    assert.equal(await calc.add(2, 3), 5)
    // A dict of int, big int, float, str, bytes, list, tuple and datetime.
    assert.deepStrictEqual(await calc.sample(), {
      int: 7,
      big: 2n ** 70n + 5n,
      neg: -300,
      float: 1.5,
      str: 'Žluťoučký 🐍',
      bytes: Uint8Array.of(0, 1, 0xfe, 0xff),
      list: [1, 'two', null],
      tuple: [1, 2],
      datetime: utc(2026, 12, 2, 15, 42, 7, 123)
    })
    // A raised ValueError: its name, its message as Python's str(), the traceback Python formatted.
    await assert.rejects(calc.fail_value(), (err: unknown) => {
      assert.ok(err instanceof RpcRemoteError)
      assert.equal(err.remoteName, 'ValueError')
      assert.equal(err.message, "('bad value', 42)")
      assert.match(err.remoteStack!, /^Traceback \(most recent call last\):\n[\s\S]*raise ValueError\("bad value", 42\)\nValueError: \('bad value', 42\)\n$/)
      assert.ok(err.cause instanceof PythonException)
      assert.deepEqual([err.cause.module, err.cause.args, err.cause.stack], ['builtins', ['bad value', 42], err.remoteStack])
      return true
    })
    await assert.rejects(calc.fail_key(), (err: unknown) => err instanceof RpcRemoteError && err.remoteName === 'KeyError' && err.message === 'missing')
    await assert.rejects(calc.fail_app(), (err: unknown) => {
      assert.ok(err instanceof RpcRemoteError && err.cause instanceof PythonException)
      assert.deepEqual([err.remoteName, err.message, err.cause.module], ['AppError', 'app went wrong', '__main__'])
      return true
    })
    // snakeMQ's own NoMethodError and NoInstanceError, as the typed errors a Node server's unknown names give.
    await assert.rejects(client.call('srv', 'calc', 'nope'), RpcUnknownMethodError)
    await assert.rejects(client.call('srv', 'nothing', 'x'), RpcUnknownObjectError)
    // Keyword arguments, keyword-only ones included.
    assert.deepEqual(await calc.kw.with({ kwargs: { scale: 2, label: 'y' } })(3), { a: 6, label: 'y' })
    assert.equal(await client.call('srv', 'calc', 'add', [2], { kwargs: { b: 5 } }), 7)
    // What Node sends comes back from Python's echo as it went.
    const sent = { s: 'x', big: -(2n ** 64n), f: -0.5, d: utc(1999, 12, 31, 23, 59, 59, 999), set: new Set([1, 'a']), map: new Map([[1, 'one']]), dec: new PyDecimal('0.10'), nested: [[], {}, new Uint8Array(3)] }
    assert.deepStrictEqual(await calc.echo(sent), sent)

    await calc.note.signal({ ttl: 10 })('hi')
    assert.equal((await py.wait('note')).text, 'hi')

    // On the wire: snakeMQ's messages. Calls with TTL 0, flags 0 and a 16-byte req_id; the signal with its TTL and none.
    const requests = py.all('message').filter((e) => e.prefix === 'rpcreq')
    assert.equal(requests.length, 11)
    for (const r of requests.filter((e) => e.command === 'call')) {
      assert.deepEqual([r.ttl, r.flags, r.req_id?.length], [0, 0, 32], r.method ?? '')
    }
    assert.deepEqual(requests.filter((e) => e.command === 'signal').map((e) => [e.method, e.ttl, e.req_id]), [['note', 10, null]])
    assert.equal(new Set(requests.map((e) => e.req_id)).size, requests.length, 'every call has a req_id of its own')
    assert.equal(py.all('message').some((e) => e.error !== undefined), false, py.errors)
  } finally {
    await client.close()
    await mq.close()
    await py.close()
  }
})

test('a call to a Python server is sent again with the same req_id after its connection drops, and one made before the server connected waits for it', async () => {
  const py = PyPeer.spawn(['server'])
  const { port } = await py.wait('listening')
  const link = new Link()
  const mq = new Messaging(link, { identity: 'cli' })
  const client = new RpcClient(mq)
  try {
    const calc = client.proxy<PyCalc>('srv', 'calc')
    // Before any connection: held, then sent in snakeMQ's format once the peer turns out to be plain snakeMQ.
    const early = calc.add(40, 2)
    assert.equal(mq.queued('srv'), 0)
    link.connect({ port: port!, reconnect: { minDelay: 20, maxDelay: 200 } })
    assert.equal(await early, 42)
    // drop_once closes the connection on the first request, before replying.
    const reconnects = waitFor<MessagingEvents['connect'][0]>(mq, 'connect', (e) => e.ident === 'srv')
    assert.equal(await calc.drop_once('k'), 'answered k')
    await reconnects
    const sent = await py.count('message', (e) => e.method === 'drop_once', 2)
    assert.equal(sent[0]!.req_id, sent[1]!.req_id)
    assert.deepEqual(sent.map((e) => e.ttl), [0, 0])
  } finally {
    await client.close()
    await mq.close()
    await py.close()
  }
})

test('a Python snakeMQ 1.6 RpcClient calls a Node RpcServer: add, an echo of every type round-trips equal, a TypeError reaches Python with its message', async () => {
  const link = new Link()
  const listener = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'node' })
  const notes: string[] = []
  const noted = new EventEmitter()
  const runs = new Map<string, number>()
  let cliConnection: MessagingEvents['connect'][0]['connection'] | undefined
  mq.on('connect', (e) => { if (e.ident === 'cli') cliConnection = e.connection })
  const log = new LogCapture()
  const server = new RpcServer(mq, { logger: log })
  server.register('calc', {
    add (a: number, b: number) { return a + b },
    echo (x: unknown) { return x },
    kw (a: number, { scale = 1, label = 'x' }: { scale?: number, label?: string } = {}) { return { a: a * scale, label } },
    fail_type (message: string) { throw new TypeError(message) },
    note: asSignal((text: string) => { notes.push(text); noted.emit('note') }),
    /**
     * Counts its runs. The first drops the caller's connection and answers only
     * once the caller, connected again, has sent the call again (same req_id):
     * that request finds the call running and is not run.
     */
    async runOnce (key: string) {
      runs.set(key, (runs.get(key) ?? 0) + 1)
      if (runs.get(key) === 1) {
        const resent = waitFor<LogLine>(log, 'line', (l) => l.message === 'a snakeMQ call seen before' && l.fields?.method === 'runOnce')
        cliConnection!.close()
        await resent
      }
      return runs.get(key)
    }
  })
  const py = PyPeer.spawn(['client', '--port', String(listener.port)])
  try {
    await py.wait('done', () => true, 60_000)
    const results = py.all('result')
    assert.deepEqual(results.map((r) => r.case), ['add', 'echo', 'kw', 'TypeError', 'NoMethodError', 'NoInstanceError', 'datetime', 'resent'])
    // Each was compared in Python: types included (a dict of str, bytes, big int, float, list, None and set for the echo).
    for (const r of results) assert.ok(r.ok, `${r.case}: Python got ${r.repr}`)
    assert.match(results.find((r) => r.case === 'TypeError')!.repr!, /TypeError\('a str is not a number'\), 'TypeError: a str is not a number\\n {4}at (Object\.)?fail_type/)
    if (notes.length === 0) await waitFor(noted, 'note')
    assert.deepEqual(notes, ['hi from python'])
    // The resent call ran once: the second request, same req_id, was found in the result cache.
    assert.equal(runs.get('k1'), 1)
    assert.equal(log.lines.filter((l) => l.message === 'a snakeMQ call seen before' && l.fields?.method === 'runOnce').length, 1)
    assert.equal(await py.exited, 0, py.errors)
  } finally {
    await py.close()
    await server.close()
    await mq.close()
  }
})
