// RPC between two peers of this library: typed proxies whose calls are awaited,
// resolve once with the right result and run once on the server even when every
// connection is reset every second, survive a server killed with SIGKILL, time
// out and abort, carry remote errors, send signals with a TTL, refuse unknown and
// forbidden names, hostile bytes and snakeMQ pickles, and carry structured values.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { inspect } from 'node:util'
import {
  AbortError, ClosedError, InvalidArgumentError, Link, MessageDroppedError, Messaging, RpcCallKindError, RpcClient,
  RpcCodecError, RpcProtocolError, RpcRemoteError, RpcServer, RpcTimeoutError, RpcUnknownMethodError,
  RpcUnknownObjectError, asSignal, encodeValue, FLAG_UNACKED, RPC_MAGIC, type LogFields, type Logger, type Message, type Signal
} from '../src/index.ts'
import { Kind } from '../src/rpc/wire.ts'
import { CallLimiter } from '../src/rpc/limiter.ts'
import { FaultProxy, type FaultProxyOptions } from './helpers/proxy.ts'
import { connected, pair, waitFor } from './helpers/util.ts'

const REPO = fileURLToPath(new URL('..', import.meta.url))
const SERVER_FIXTURE = fileURLToPath(new URL('./fixtures/rpc-server.ts', import.meta.url))

/** A logger that keeps every line and lets a test await one. */
class LogCapture extends EventEmitter implements Logger {
  readonly lines: Array<{ level: string, message: string, fields: LogFields | undefined }> = []
  debug (message: string, fields?: LogFields): void { this.add('debug', message, fields) }
  info (message: string, fields?: LogFields): void { this.add('info', message, fields) }
  warn (message: string, fields?: LogFields): void { this.add('warn', message, fields) }
  error (message: string, fields?: LogFields): void { this.add('error', message, fields) }
  private add (level: string, message: string, fields: LogFields | undefined): void {
    this.lines.push({ level, message, fields })
    this.emit('line')
  }

  count (level: string, pattern: RegExp): number {
    return this.lines.filter((l) => l.level === level && pattern.test(l.message)).length
  }

  /** Resolves once `n` lines of `level` match `pattern`. */
  async wait (level: string, pattern: RegExp, n = 1): Promise<void> {
    while (this.count(level, pattern) < n) await waitFor(this, 'line')
  }
}

/** A deferred promise a test resolves when it wants. */
function deferred<T = void> (): { promise: Promise<T>, resolve: (v: T) => void } {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => { resolve = r })
  return { promise, resolve }
}

interface Calc {
  add (a: number, b: number): number
  echo<T> (...values: T[]): T[]
  slow (key: string): Promise<string>
  explode (message: string): never
  ping: Signal<(n: number) => void>
}

/** Peers alice (server side) and bob (client side), a server serving `calc` and a client. */
async function setup (serverOptions: ConstructorParameters<typeof RpcServer>[1] = {}) {
  const { a, b, linkB } = await pair()
  const log = new LogCapture()
  const server = new RpcServer(a, { logger: log, ...serverOptions })
  const runs = new Map<string, number>()
  const gates = new Map<string, { promise: Promise<void>, resolve: () => void }>()
  const pings: number[] = []
  const pinged = new EventEmitter()
  const impl = {
    add (x: number, y: number): number { return x + y },
    echo (...values: unknown[]): unknown[] { return values },
    async slow (key: string): Promise<string> {
      runs.set(key, (runs.get(key) ?? 0) + 1)
      let gate = gates.get(key)
      if (gate === undefined) { gate = deferred(); gates.set(key, gate) }
      await gate.promise
      return `done ${key}`
    },
    explode (message: string): never {
      const err = new TypeError(message) as TypeError & { code: string, detail: unknown }
      err.code = 'E_EXPLODED'
      err.detail = { when: new Date(0), tags: new Set(['x']) }
      throw err
    },
    ping: asSignal((n: number): void => { pings.push(n); pinged.emit('ping', n) })
  }
  server.register('calc', impl)
  const client = new RpcClient(b)
  const calc = client.proxy<Calc>('alice', 'calc')
  const release = (key: string): void => {
    let gate = gates.get(key)
    if (gate === undefined) { gate = deferred(); gates.set(key, gate) }
    gate.resolve()
  }
  const close = async (): Promise<void> => {
    for (const g of gates.values()) g.resolve()
    await client.close()
    await server.close()
    await a.close()
    await b.close()
  }
  return { a, b, linkB, server, client, calc, log, runs, release, pings, pinged, close }
}

test('a typed proxy call resolves with the remote result; a proxy is never a thenable', async () => {
  const t = await setup()
  try {
    const sum: number = await t.calc.add(1, 2)
    assert.equal(sum, 3)
    assert.equal((t.calc as Record<string, unknown>).then, undefined)
    assert.equal((t.calc as Record<string, unknown>).toJSON, undefined)
    // Awaiting the proxy itself gives the proxy back (it is not a promise), and sends nothing.
    const same = await Promise.resolve(t.calc)
    assert.equal(same, t.calc)
    assert.equal(JSON.stringify({ p: t.calc }), '{"p":{}}')
    assert.equal(t.client.pendingCalls, 0)
    assert.throws(() => { (t.calc as Record<string, unknown>).add = 1 }, TypeError)
    assert.equal(await t.client.call('alice', 'calc', 'add', [40, 2]), 42)
  } finally {
    await t.close()
  }
})

test('a proxy turned into a string or logged says what it is, and sends no toString() or valueOf() call', async () => {
  const t = await setup()
  try {
    const name = '[RpcClient proxy of "calc" on "alice"]'
    // Without Symbol.toPrimitive these fell back on toString() and valueOf(): two remote
    // calls (whose rejections went unhandled) and a TypeError.
    assert.equal(String(t.calc as unknown as string), name)
    assert.equal(`${t.calc as unknown as string}`, name)
    assert.equal('' + (t.calc as unknown as string), name)
    assert.equal(inspect(t.calc), name)
    assert.equal(inspect({ calc: t.calc }), `{ calc: ${name} }`)
    assert.equal(t.client.pendingCalls, 0)
    // An explicit toString() is still a remote method like any other name.
    assert.equal(typeof (t.calc as unknown as Record<string, unknown>).toString, 'function')
    assert.equal(await t.calc.add(1, 2), 3)
  } finally {
    await t.close()
  }
})

test('a call made before the server peer ever connected waits for it and resolves', async () => {
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice' })
  const server = new RpcServer(a)
  server.register('calc', { add: (x: number, y: number) => x + y })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob' })
  const client = new RpcClient(b)
  try {
    const call = client.proxy<Calc>('alice', 'calc').add(2, 3)
    assert.equal(b.isConnected('alice'), false)
    linkB.connect({ port: l.port })
    assert.equal(await call, 5)
  } finally {
    await client.close()
    await server.close()
    await a.close()
    await b.close()
  }
})

/**
 * A Messaging "server" listening on 127.0.0.1 and a Messaging "client" that
 * reaches it through a FaultProxy with `faults` (reconnecting within 5-50 ms);
 * `close()` closes the proxy and both.
 */
async function throughProxy (faults: Omit<FaultProxyOptions, 'target'>): Promise<{ a: Messaging, b: Messaging, proxy: FaultProxy, close: () => Promise<void> }> {
  const linkA = new Link()
  const l = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'server' })
  const proxy = await FaultProxy.start({ target: l.port, ...faults })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'client' })
  linkB.connect({ port: proxy.port, reconnect: { minDelay: 5, maxDelay: 50 } })
  return {
    a,
    b,
    proxy,
    async close () {
      await proxy.close()
      await a.close()
      await b.close()
    }
  }
}

test('through a proxy that resets every connection every second, every call resolves with its result and runs once', async () => {
  const { a, b, proxy, close } = await throughProxy({ resetEvery: 1000 })
  const server = new RpcServer(a)
  const runs = new Map<number, number>()
  server.register('calc', {
    async add (i: number, x: number): Promise<number> {
      runs.set(i, (runs.get(i) ?? 0) + 1)
      // Yield once, so calls are in the middle of running when a reset comes.
      await new Promise((resolve) => setImmediate(resolve))
      return i + x
    }
  })
  const clientLog = new LogCapture()
  const client = new RpcClient(b, { logger: clientLog })
  const calc = client.proxy<{ add (i: number, x: number): number }>('server', 'calc')
  let next = 0
  let resolved = 0
  const worker = async (): Promise<void> => {
    // Calls keep going until the connection was reset three times under them and
    // the fourth is up (all calls can be answered between two resets, a reset then
    // catching none in flight).
    while (proxy.resets < 3 || proxy.accepted < 4) {
      const i = next++
      assert.equal(await calc.add(i, 1_000_000), i + 1_000_000)
      resolved++
    }
  }
  try {
    await Promise.all(Array.from({ length: 50 }, worker))
    assert.equal(resolved, next)
    assert.ok(next > 500, `only ${next} calls`)
    assert.ok(proxy.accepted >= 4, `${proxy.accepted} connections`)
    for (let i = 0; i < next; i++) assert.equal(runs.get(i), 1, `call ${i} ran ${runs.get(i) ?? 0} times`)
    assert.equal(runs.size, next)
    // The resend path was taken. Whether a reset catches a reply on its way (the
    // server then answers the resend from its cache, as the runs above count)
    // depends on timing here; the tests below make each case happen.
    assert.ok(clientLog.count('debug', /calls sent again after a reconnect/) >= 1, 'no call was sent again')
  } finally {
    await client.close()
    await server.close()
    await close()
  }
})

test('a call running on the server while its connection is reset runs once and resolves after the reconnect', async () => {
  const { a, b, proxy, close } = await throughProxy({})
  const server = new RpcServer(a)
  const started = deferred()
  const gate = deferred()
  let runs = 0
  server.register('job', {
    async run (): Promise<string> {
      runs++
      started.resolve()
      await gate.promise
      return 'finished'
    }
  })
  const client = new RpcClient(b)
  try {
    await connected(b, 'server')
    const call = client.call('server', 'job', 'run')
    await started.promise
    // The request was taken (and acknowledged) by the server: only the client's resend can recover it now.
    const reconnected = waitFor(b, 'connect')
    assert.equal(proxy.resetAll(), 1)
    await reconnected
    gate.resolve()
    assert.equal(await call, 'finished')
    assert.equal(runs, 1)
  } finally {
    gate.resolve()
    await client.close()
    await server.close()
    await close()
  }
})

test('a reply lost with its connection is sent again from the result cache when the client resends the call; the call runs once', async () => {
  const { a, b, proxy, close } = await throughProxy({})
  const serverLog = new LogCapture()
  const server = new RpcServer(a, { logger: serverLog })
  let runs = 0
  server.register('calc', { add (x: number, y: number): number { runs++; return x + y } })
  const client = new RpcClient(b)
  try {
    await connected(b, 'server')
    proxy.holdFromTarget()
    // The reply leaves the server (it is sent without acknowledgement, so it is
    // delivered once written) and stops in the proxy.
    const replied = waitFor(a, 'delivered')
    const call = client.call('server', 'calc', 'add', [2, 3])
    await replied
    assert.equal(runs, 1)
    const reconnected = waitFor(b, 'connect')
    assert.equal(proxy.resetAll(), 1)
    await reconnected
    assert.equal(await call, 5)
    assert.equal(runs, 1)
    assert.equal(serverLog.count('debug', /a call seen before/), 1)
  } finally {
    await client.close()
    await server.close()
    await close()
  }
})

for (const format of ['native', 'snakemq'] as const) {
  test(`format ${format}: a result made while its caller was away, larger than the caller accepts, is answered with an error saying so when the caller is back`, async () => {
    const linkA = new Link()
    const l = await linkA.listen({ port: 0 })
    const a = new Messaging(linkA, { identity: 'server' })
    let proxy = await FaultProxy.start({ target: l.port })
    const port = proxy.port
    const linkB = new Link()
    const b = new Messaging(linkB, { identity: 'client', maxPacketSize: 64 * 1024 })
    linkB.connect({ port, reconnect: { minDelay: 5, maxDelay: 50 } })
    const server = new RpcServer(a)
    let runs = 0
    let started!: () => void
    const running = new Promise<void>((resolve) => { started = resolve })
    let finish!: () => void
    const release = new Promise<void>((resolve) => { finish = resolve })
    server.register('svc', {
      async make (n: number): Promise<Uint8Array> { runs++; started(); await release; return new Uint8Array(n) }
    })
    const client = new RpcClient(b, { format })
    try {
      await connected(b, 'server')
      // Before, the reply was dropped as too large when the caller came back, and again at each resend: the call waited for its timeout.
      const call = client.call('server', 'svc', 'make', [100 * 1024], { timeout: 20_000 })
      await running
      const away = waitFor(a, 'disconnect')
      await proxy.close()
      await away
      finish()
      await release
      await new Promise((resolve) => setImmediate(resolve))
      // The reply is queued for the caller, whose limit the server does not know while it is away.
      assert.equal(a.queued('client'), 1)
      proxy = await FaultProxy.start({ target: l.port, port })
      const why = /more than "client" accepts/
      await assert.rejects(call, format === 'native'
        ? (e: unknown) => e instanceof RpcCodecError && why.test(e.message)
        : (e: unknown) => e instanceof RpcRemoteError && e.remoteName === 'ValueError' && why.test(e.message))
      assert.equal(runs, 1)
      assert.equal((await client.call('server', 'svc', 'make', [1000], { timeout: 20_000 }) as Uint8Array).byteLength, 1000)
    } finally {
      finish()
      await client.close()
      await server.close()
      await proxy.close()
      await a.close()
      await b.close()
    }
  })
}

test('a call whose reply was lost is answered from the result cache, not run again, while more calls than resultCacheSize run behind it', async () => {
  const { a, b, proxy, close } = await throughProxy({})
  const server = new RpcServer(a, { resultCacheSize: 8 })
  const runs = new Map<number, number>()
  const slow = 30
  let startedSlow = 0
  let allStarted!: () => void
  const started = new Promise<void>((resolve) => { allStarted = resolve })
  let open!: () => void
  const gate = new Promise<void>((resolve) => { open = resolve })
  server.register('svc', {
    quick (i: number): number { runs.set(i, (runs.get(i) ?? 0) + 1); return i },
    async slow (i: number): Promise<number> {
      runs.set(i, (runs.get(i) ?? 0) + 1)
      if (++startedSlow === slow) allStarted()
      await gate
      return i
    }
  })
  const client = new RpcClient(b)
  try {
    await connected(b, 'server')
    proxy.holdFromTarget()
    // The quick call's reply stops in the proxy; 30 calls, more than the cache's 8, then run behind it.
    const replied = waitFor(a, 'delivered')
    const quick = client.call('server', 'svc', 'quick', [0])
    await replied
    const calls = Promise.allSettled(Array.from({ length: slow }, (_, i) => client.call('server', 'svc', 'slow', [i + 1])))
    await started
    const reconnected = waitFor(b, 'connect')
    proxy.resetAll()
    await reconnected
    // Resent after the reconnect: answered from the cache. Before, the 30
    // running calls pushed it out, and it ran a second time.
    assert.equal(await quick, 0)
    assert.equal(runs.get(0), 1)
    open()
    assert.deepEqual((await calls).map((r): unknown => r.status === 'fulfilled' ? r.value : r.reason), Array.from({ length: slow }, (_, i) => i + 1))
    for (let i = 1; i <= slow; i++) assert.equal(runs.get(i), 1, `call ${i}`)
  } finally {
    open()
    await client.close()
    await server.close()
    await close()
  }
})

test('a proxy that delays and cuts the bytes into 3-byte pieces does not change any result', async () => {
  const { a, b, close } = await throughProxy({ delay: 2, slice: 3 })
  const server = new RpcServer(a)
  server.register('calc', { echo: (v: unknown) => v })
  const client = new RpcClient(b)
  try {
    const values = [1, 'two', { three: [3n, new Date(3)] }, new Uint8Array([4, 4, 4, 4])]
    const results = await Promise.all(values.map((v) => client.call('server', 'calc', 'echo', [v])))
    assert.deepEqual(results, values)
  } finally {
    await client.close()
    await server.close()
    await close()
  }
})

/** The fixture server in a child process. */
class ServerProcess {
  readonly ready: Promise<{ port: number, pid: number }>
  readonly exited: Promise<void>
  ran = 0
  private constructor (readonly child: ChildProcess) {
    this.ready = new Promise((resolve, reject) => {
      child.on('message', (m: { port?: number, pid?: number, ran?: number }) => {
        if (m.port !== undefined) resolve({ port: m.port, pid: m.pid! })
        if (m.ran !== undefined) { this.ran = m.ran; child.emit('ran', m.ran) }
      })
      child.once('exit', (code, signal) => { reject(new Error(`the server fixture exited (${signal ?? code}) before it was ready`)) })
    })
    this.exited = once(child, 'exit').then(() => {})
  }

  static start (port: number): ServerProcess {
    return new ServerProcess(spawn(process.execPath, ['--import', 'tsx', SERVER_FIXTURE, String(port), '20'], {
      cwd: REPO, stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    }))
  }

  /** Resolves once the fixture has run `n` calls. */
  async ranAtLeast (n: number): Promise<void> {
    while (this.ran < n) await once(this.child, 'ran')
  }

  async kill (): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
    await this.exited
  }
}

test('calls resolve after the server process is killed with SIGKILL mid-calls and started again on the same port', async () => {
  const first = ServerProcess.start(0)
  let second: ServerProcess | undefined
  const link = new Link()
  const mq = new Messaging(link, { identity: 'client' })
  const client = new RpcClient(mq)
  try {
    const { port, pid: firstPid } = await first.ready
    link.connect({ port, reconnect: { minDelay: 10, maxDelay: 100 } })
    const calc = client.proxy<{ add (a: number, b: number): { sum: number, pid: number } }>('server', 'calc')
    const calls = Array.from({ length: 1000 }, (_, i) => calc.add(i, 1000))
    // With 64 calls of 20 ms at a time, 1,000 calls take about 300 ms: kill it a tenth of the way.
    await first.ranAtLeast(100)
    await first.kill()
    assert.ok(client.pendingCalls > 0, 'calls were still waiting when the server died')
    second = ServerProcess.start(port)
    const { pid: secondPid } = await second.ready
    const results = await Promise.all(calls)
    results.forEach((r, i) => { assert.equal(r.sum, i + 1000) })
    const pids = new Set(results.map((r) => r.pid))
    assert.deepEqual([...pids].sort(), [firstPid, secondPid].sort())
  } finally {
    await client.close()
    await mq.close()
    await first.kill()
    if (second !== undefined) await second.kill()
  }
})

test('a call times out with RpcTimeoutError, by call or by client default, also while waiting for the peer', async () => {
  const t = await setup()
  const slowClient = new RpcClient(t.b, { timeout: 50 })
  try {
    const started = Date.now()
    await assert.rejects(t.calc.slow.with({ timeout: 50 })('never'), (err: unknown) => {
      assert.ok(err instanceof RpcTimeoutError)
      assert.equal(err.code, 'ERR_RPC_TIMEOUT')
      assert.equal(err.timeout, 50)
      assert.equal(err.methodName, 'slow')
      // The local stack shows where the call was awaited.
      assert.match(err.stack ?? '', /rpc\.test\.ts/)
      return true
    })
    assert.ok(Date.now() - started >= 45)
    await assert.rejects(slowClient.proxy<Calc>('alice', 'calc').slow('never'), RpcTimeoutError)
    // An explicit null switches the client's default off.
    const unbounded = slowClient.proxy<Calc>('alice', 'calc').slow.with({ timeout: null })('later')
    t.release('later')
    assert.equal(await unbounded, 'done later')
    await assert.rejects(t.client.proxy<Calc>('nobody', 'calc').add.with({ timeout: 50 })(1, 2), RpcTimeoutError)
    assert.equal(t.client.pendingCalls, 0)
    assert.throws(() => t.calc.add.with(null as unknown as object), InvalidArgumentError)
    await assert.rejects(t.calc.add.with({ timeout: -1 })(1, 2), InvalidArgumentError)
  } finally {
    await slowClient.close()
    await t.close()
  }
})

test('an aborted call rejects with AbortError; an already aborted signal sends nothing', async () => {
  const t = await setup()
  try {
    const ac = new AbortController()
    const call = t.calc.slow.with({ signal: ac.signal })('aborted')
    ac.abort()
    await assert.rejects(call, AbortError)
    assert.equal(t.client.pendingCalls, 0)
    await assert.rejects(t.calc.slow.with({ signal: AbortSignal.abort() })('not sent'), AbortError)
    await assert.rejects(t.calc.slow.with({ signal: AbortSignal.timeout(20) })('timed'), AbortError)
    // Everything sent before this call has been taken by the server: the pre-aborted one never was.
    assert.equal(await t.calc.add(1, 1), 2)
    assert.equal(t.runs.get('not sent'), undefined)
  } finally {
    await t.close()
  }
})

test('format native: a call that timed out or was aborted while its request waited for the peer is taken back, and never runs when the peer comes', async () => {
  const linkB = new Link()
  const listener = await linkB.listen({ port: 0 })
  const bob = new Messaging(linkB, { identity: 'bob' })
  const ran: string[] = []
  new RpcServer(bob).register('svc', { note (what: string) { ran.push(what); return what } })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  const client = new RpcClient(alice, { format: 'native' })
  const svc = client.proxy<{ note(what: string): Promise<string> }>('bob', 'svc')
  try {
    await assert.rejects(svc.note.with({ timeout: 50 })('timed out'), RpcTimeoutError)
    const ac = new AbortController()
    const aborted = svc.note.with({ signal: ac.signal })('aborted')
    assert.equal(alice.queued('bob'), 1, 'the request waits in the queue while bob is away')
    ac.abort()
    await assert.rejects(aborted, AbortError)
    assert.equal(alice.queued('bob'), 0, 'and is taken back with its call')
    const waiting = svc.note('sent when bob comes')
    linkA.connect({ port: listener.port })
    assert.equal(await waiting, 'sent when bob comes')
    // Messages to one peer keep their order: had the others been sent, they would have run first.
    assert.deepEqual(ran, ['sent when bob comes'])
  } finally {
    await client.close()
    await Promise.all([alice.close(), bob.close()])
  }
})

test('replies waiting for callers that left are bounded by maxQueuedReplyBytes: the oldest are taken back, the newest kept', async () => {
  const log = new LogCapture()
  const linkS = new Link()
  const listener = await linkS.listen({ port: 0 })
  const server = new Messaging(linkS, { identity: 'server' })
  const started = new Map<string, { promise: Promise<void>, resolve: () => void }>()
  const gates = new Map<string, { promise: Promise<void>, resolve: () => void }>()
  // Room for two of the five 100 KiB replies.
  new RpcServer(server, { logger: log, maxQueuedReplyBytes: 250 * 1024 }).register('svc', {
    async big (caller: string) { started.get(caller)!.resolve(); await gates.get(caller)!.promise; return new Uint8Array(100 * 1024) }
  })
  const callers = ['c0', 'c1', 'c2', 'c3', 'c4']
  try {
    for (const name of callers) {
      started.set(name, deferred())
      gates.set(name, deferred())
      const link = new Link()
      const mq = new Messaging(link, { identity: name })
      link.connect({ port: listener.port })
      new RpcClient(mq).call('server', 'svc', 'big', [name]).catch(() => {})
      // The call runs on the server; its caller goes away before the reply is made.
      await started.get(name)!.promise
      const gone = waitFor(server, 'disconnect', (e: { ident: string }) => e.ident === name)
      await mq.close()
      await gone
      gates.get(name)!.resolve()
      // The reply is made and queued (making room as it must) in the microtasks after the gate opens.
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(server.queued(name), 1, `the reply to ${name} waits for it`)
    }
    assert.deepEqual(callers.map((c) => server.queued(c)), [0, 0, 0, 1, 1], 'the two newest replies wait; the older ones were taken back')
    assert.equal(log.count('debug', /taken back/), 3)
    assert.equal(log.count('warn', /was dropped/), 0)
  } finally {
    for (const g of gates.values()) g.resolve()
    await server.close()
  }
})

test('a remote error rejects the call with RpcRemoteError: remote name, message, code, remote stack, local stack', async () => {
  const t = await setup()
  class QuotaError extends Error {
    override name = 'QuotaError'
    readonly limit = 10
  }
  t.server.register('errors', {
    async rejects (): Promise<never> { throw new QuotaError('over quota') },
    throwsString (): never { throw 'just a string' },
    range (): number { return [].length.toFixed(200).length }
  })
  try {
    await assert.rejects(t.calc.explode('kaboom'), (err: unknown) => {
      assert.ok(err instanceof RpcRemoteError)
      assert.equal(err.name, 'RpcRemoteError')
      assert.equal(err.message, 'kaboom')
      assert.equal(err.remoteName, 'TypeError')
      assert.equal(err.code, 'E_EXPLODED')
      assert.equal(err.remoteCode, 'E_EXPLODED')
      assert.equal(err.peer, 'alice')
      assert.equal(err.objectName, 'calc')
      assert.equal(err.methodName, 'explode')
      assert.match(err.remoteStack ?? '', /^TypeError: kaboom\n\s+at (Object\.)?explode/)
      assert.match(err.stack ?? '', /^RpcRemoteError: kaboom\n/)
      assert.match(err.stack ?? '', /rpc\.test\.ts/)
      assert.ok(err.cause instanceof TypeError)
      assert.deepEqual((err.cause as unknown as { detail: unknown }).detail, { when: new Date(0), tags: new Set(['x']) })
      return true
    })
    const errors = t.client.proxy<{ rejects (): Promise<never>, throwsString (): never, range (): number }>('alice', 'errors')
    await assert.rejects(errors.rejects(), (err: unknown) => {
      assert.ok(err instanceof RpcRemoteError)
      assert.equal(err.remoteName, 'QuotaError')
      assert.equal(err.message, 'over quota')
      assert.equal(err.code, 'ERR_RPC_REMOTE')
      assert.equal((err.cause as unknown as { limit: number }).limit, 10)
      return true
    })
    await assert.rejects(errors.throwsString(), (err: unknown) => err instanceof RpcRemoteError && err.message === 'just a string')
    await assert.rejects(errors.range(), (err: unknown) => err instanceof RpcRemoteError && err.remoteName === 'RangeError')
  } finally {
    await t.close()
  }
})

test('with transferExceptions off, the caller only learns that the call failed, and the server logs the error', async () => {
  const t = await setup({ transferExceptions: false })
  try {
    await assert.rejects(t.calc.explode('secret detail'), (err: unknown) => {
      assert.ok(err instanceof RpcRemoteError)
      assert.doesNotMatch(err.message, /secret/)
      assert.equal(err.remoteStack, undefined)
      assert.equal(err.code, 'ERR_RPC_REMOTE')
      return true
    })
    assert.equal(t.log.count('error', /a call failed/), 1)
    t.server.transferExceptions = true
    await assert.rejects(t.calc.explode('now transferred'), (err: unknown) => err instanceof RpcRemoteError && err.message === 'now transferred')
  } finally {
    await t.close()
  }
})

test('signals run without a reply; a signal whose TTL runs out while the peer is away never runs', async () => {
  const t = await setup()
  try {
    await t.calc.ping.signal({ ttl: 10 })(1)
    if (t.pings.length === 0) await once(t.pinged, 'ping')
    assert.deepEqual(t.pings, [1])

    // A peer that is not connected: the signal waits for it, within its TTL.
    const linkC = new Link()
    const c = new Messaging(linkC, { identity: 'carol' })
    const cServer = new RpcServer(c)
    const carolPings: number[] = []
    cServer.register('calc', { ping: asSignal((n: number) => { carolPings.push(n) }), add: (x: number, y: number) => x + y })
    const toCarol = t.client.proxy<Calc>('carol', 'calc')
    const expired = waitFor<{ reason: string }>(t.b, 'drop', (e) => e.reason === 'expired')
    await toCarol.ping.signal({ ttl: 0.05 })(2)
    await toCarol.ping.signal({ ttl: 60 })(3)
    await expired
    // With the default TTL (0, as in snakeMQ) a signal to a peer that is away is dropped at once.
    await assert.rejects(toCarol.ping.signal()(4), MessageDroppedError)
    // bob connects to carol now.
    const l = await linkC.listen({ port: 0 })
    t.linkB.connect({ port: l.port })
    // Messages to one peer arrive in order: once the call after them returns, the signals were taken.
    assert.equal(await toCarol.add(1, 1), 2)
    await cServer.close()
    assert.deepEqual(carolPings, [3])
    await c.close()
  } finally {
    await t.close()
  }
})

test('a signal called as a regular method fails with RpcCallKindError; a regular method sent as a signal is not run', async () => {
  const t = await setup()
  try {
    await assert.rejects(t.client.call('alice', 'calc', 'ping', [5]), RpcCallKindError)
    // A signal listed at registration works the same as one marked with asSignal.
    t.server.register('listed', { notify (): void {}, get: () => 1 }, { signals: ['notify'] })
    await assert.rejects(t.client.call('alice', 'listed', 'notify'), (err: unknown) => err instanceof RpcCallKindError && err.code === 'ERR_RPC_CALL_KIND')
    await t.calc.add.signal({ ttl: 10 })(1, 2)
    await t.log.wait('warn', /regular method was sent as a signal/)
    assert.deepEqual(t.pings, [])
    assert.throws(() => { t.server.register('bad', { x: 1 }, { signals: ['x'] }) }, InvalidArgumentError)
    // @ts-expect-error a method typed as a Signal cannot be called for a result
    const typeCheck = (): unknown => t.calc.ping(1)
    void typeCheck
  } finally {
    await t.close()
  }
})

test('unknown objects and methods fail with typed errors', async () => {
  const t = await setup()
  try {
    await assert.rejects(t.client.proxy<Calc>('alice', 'nothing').add(1, 2), (err: unknown) => {
      assert.ok(err instanceof RpcUnknownObjectError)
      assert.equal(err.objectName, 'nothing')
      assert.equal(err.code, 'ERR_RPC_UNKNOWN_OBJECT')
      return true
    })
    await assert.rejects(t.client.call('alice', 'calc', 'subtract', [1, 2]), (err: unknown) => {
      assert.ok(err instanceof RpcUnknownMethodError)
      assert.equal(err.methodName, 'subtract')
      return true
    })
    assert.equal(t.server.unregister('calc'), true)
    assert.equal(t.server.unregister('calc'), false)
    await assert.rejects(t.calc.add(1, 2), RpcUnknownObjectError)
    await assert.rejects(t.client.call('alice', 'x'.repeat(256), 'm'), InvalidArgumentError)
    await assert.rejects(t.client.call('alice', 'calc', ''), InvalidArgumentError)
  } finally {
    await t.close()
  }
})

test('only methods of the registered object can be called: never constructor, __proto__ or Object.prototype', async () => {
  const t = await setup()
  class Account {
    balance = 5
    get secret (): () => string { return () => 'leaked' }
    deposit (n: number): number { this.balance += n; return this.balance }
    toString (): string { return 'an account' }
  }
  t.server.register('account', new Account())
  t.server.register('plain', { hello: () => 'hi' })
  const fn = Object.assign(() => 'called', { own: () => 'own' })
  t.server.register('fn', fn)
  t.server.register('bare', Object.assign(Object.create(null) as object, { only: () => 'only' }))
  try {
    assert.equal(await t.client.call('alice', 'account', 'deposit', [2]), 7)
    assert.equal(await t.client.call('alice', 'account', 'toString'), 'an account')
    assert.equal(await t.client.call('alice', 'fn', 'own'), 'own')
    assert.equal(await t.client.call('alice', 'bare', 'only'), 'only')
    const forbidden = [
      ['account', 'constructor'], ['account', '__proto__'], ['account', 'hasOwnProperty'], ['account', 'valueOf'],
      ['account', 'balance'], ['account', 'secret'], ['plain', 'toString'], ['plain', 'constructor'],
      ['plain', '__proto__'], ['plain', 'hasOwnProperty'], ['plain', '__defineGetter__'], ['plain', 'isPrototypeOf'],
      ['plain', 'propertyIsEnumerable'], ['plain', 'toLocaleString'], ['plain', '__lookupGetter__'],
      ['fn', 'call'], ['fn', 'apply'], ['fn', 'bind'], ['fn', 'constructor'], ['bare', 'toString']
    ] as const
    for (const [object, method] of forbidden) {
      await assert.rejects(t.client.call('alice', object, method, []), RpcUnknownMethodError, `${object}.${method}`)
    }
    // The proxy forwards those names too, and the server refuses them the same way.
    const proxy = t.client.proxy<Record<string, () => unknown>>('alice', 'plain') as unknown as Record<string, () => Promise<unknown>>
    await assert.rejects(proxy['constructor']!(), RpcUnknownMethodError)
    await assert.rejects(proxy['__proto__']!(), RpcUnknownMethodError)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
  } finally {
    await t.close()
  }
})

/** Raw RPC bytes: magic, version, kind, then the rest. */
function rpcBytes (version: number, kind: number, ...rest: Array<Uint8Array | number[]>): Buffer {
  return Buffer.concat([Buffer.from(RPC_MAGIC), Buffer.from([version, kind]), ...rest.map((r) => Buffer.from(r))])
}
const ID = new Uint8Array(16).fill(7)
function names (object: string, method: string): Buffer {
  const o = Buffer.from(object)
  const m = Buffer.from(method)
  return Buffer.concat([Buffer.from([o.length]), o, Buffer.from([m.length]), m])
}

test('hostile requests are logged and dropped or refused; the server keeps serving', async () => {
  const t = await setup({ codec: { maxDepth: 16 } })
  const hostile: Buffer[] = [
    Buffer.from(RPC_MAGIC),
    rpcBytes(1, Kind.Call, [1, 2, 3]),
    rpcBytes(2, Kind.Call, ID, names('calc', 'add'), encodeValue([1, 2])),
    rpcBytes(1, 0x7f, ID),
    rpcBytes(1, Kind.Call, ID),
    rpcBytes(1, Kind.Call, ID, [200, 1, 2, 3]),
    rpcBytes(1, Kind.Call, ID, [0]),
    rpcBytes(1, Kind.Call, ID, [2, 0xc3, 0x28, 1, 0x61]),
    rpcBytes(1, Kind.Call, ID, names('calc', 'add'), [0xff, 0xfe, 0xfd]),
    rpcBytes(1, Kind.Call, ID, names('calc', 'add')),
    rpcBytes(1, Kind.Call, ID, names('calc', 'add'), encodeValue({ not: 'an array' })),
    rpcBytes(1, Kind.Call, ID, names('calc', 'add'), Array.from({ length: 100 }, () => [0x09, 0x01]).flat()),
    rpcBytes(1, Kind.Call, ID, names('calc', 'add'), [0x09, 0xff, 0xff, 0xff, 0xff, 0x0f]),
    rpcBytes(1, Kind.Call, ID, names('calc', 'add'), [0x0a, 0x01, 0x09, ...Buffer.from('__proto__'), 0x0a, 0x00]),
    rpcBytes(1, Kind.Signal, ID, names('calc', 'ping'), [0x07, 0x05, 0x61])
  ]
  const random = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256)))
  for (let i = 0; i < 200; i++) {
    hostile.push(rpcBytes(1, i % 2 === 0 ? Kind.Call : Kind.Signal, random(16), random(Math.floor(Math.random() * 64))))
  }
  try {
    for (const bytes of hostile) await t.b.send('alice', bytes)
    // Messages to one peer are taken in order: once this call returns, every hostile one was handled.
    assert.equal(await t.calc.add(2, 2), 4)
    assert.equal(t.pings.length, 0)
    assert.ok(t.log.count('warn', /dropped an RPC message too short/) >= 2)
    assert.equal(t.log.count('warn', /unsupported version/), 1)
    assert.equal(t.log.count('warn', /unknown kind/), 1)
    assert.ok(t.log.count('warn', /malformed RPC request/) >= 4)
    assert.ok(t.log.count('warn', /arguments could not be decoded/) >= 6)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    assert.equal(t.client.pendingCalls, 0)
  } finally {
    await t.close()
  }
})

test('hostile replies reject only the call they answer, with a typed error', async () => {
  // A fake server that answers each request with the next hostile reply.
  const { a, b } = await pair()
  const replies = [
    (id: Uint8Array) => rpcBytes(1, Kind.Result, id, [0x11]),
    (id: Uint8Array) => rpcBytes(1, Kind.Result, id, Array.from({ length: 100 }, () => [0x09, 0x01]).flat()),
    (id: Uint8Array) => rpcBytes(1, Kind.Thrown, id, encodeValue('not an error')),
    (id: Uint8Array) => rpcBytes(1, Kind.Failed, id, [99, 0x41]),
    (id: Uint8Array) => rpcBytes(1, 0x9f, id),
    (id: Uint8Array) => rpcBytes(1, Kind.Failed, id)
  ]
  const fake = (async () => {
    let i = 0
    for await (const m of a.messages({ prefix: RPC_MAGIC })) {
      await a.send('bob', replies[i++]!(m.data.subarray(8, 24)))
      if (i === replies.length) break
    }
  })()
  const client = new RpcClient(b, { codec: { maxDepth: 16 } })
  try {
    await assert.rejects(client.call('alice', 'o', 'm'), RpcCodecError)
    await assert.rejects(client.call('alice', 'o', 'm'), RpcCodecError)
    await assert.rejects(client.call('alice', 'o', 'm'), (err: unknown) => err instanceof RpcRemoteError && err.cause === 'not an error')
    await assert.rejects(client.call('alice', 'o', 'm'), RpcProtocolError)
    await assert.rejects(client.call('alice', 'o', 'm'), RpcProtocolError)
    await assert.rejects(client.call('alice', 'o', 'm'), RpcProtocolError)
    await fake
  } finally {
    await client.close()
    await a.close()
    await b.close()
  }
})

test('a pickled snakeMQ RPC request is refused with a logged error and never reaches the application', async () => {
  const t = await setup()
  // What a snakeMQ client sends: "rpcreq" and a pickle (this one would run a shell command if unpickled).
  const pickle = Buffer.concat([Buffer.from('rpcreq'), Buffer.from("cos\nsystem\n(S'touch /tmp/snakemq-pwned'\ntR.", 'latin1')])
  const app: Message[] = []
  const appLoop = (async () => {
    for await (const m of t.a.messages()) {
      app.push(m)
      break
    }
  })()
  try {
    await t.b.send('alice', pickle)
    await t.b.send('alice', 'for the application')
    await appLoop
    assert.deepEqual(app.map((m) => Buffer.from(m.data).toString()), ['for the application'])
    assert.equal(t.log.count('error', /snakeMQ RPC request/), 1)
    const line = t.log.lines.find((l) => /snakeMQ RPC request/.test(l.message))!
    assert.equal(line.fields?.from, 'bob')
  } finally {
    await t.close()
  }
})

test('application messages and RPC share one Messaging without taking each other’s messages', async () => {
  const t = await setup()
  try {
    const got: string[] = []
    const appLoop = (async () => {
      for await (const m of t.a.messages()) {
        got.push(Buffer.from(m.data).toString())
        if (got.length === 2) break
      }
    })()
    await t.b.send('alice', 'one')
    assert.equal(await t.calc.add(3, 4), 7)
    await t.b.send('alice', 'two')
    await appLoop
    assert.deepEqual(got, ['one', 'two'])
  } finally {
    await t.close()
  }
})

test('100 concurrent calls all resolve, run at most `concurrency` at a time', async () => {
  // One caller here, so let it have every slot (its default share is half).
  const t = await setup({ concurrency: 8, perPeerConcurrency: 8 })
  let running = 0
  let most = 0
  let ran = 0
  t.server.register('work', {
    async job (i: number): Promise<number> {
      running++
      most = Math.max(most, running)
      await new Promise((resolve) => setImmediate(resolve))
      running--
      ran++
      return i * 2
    }
  })
  try {
    const work = t.client.proxy<{ job (i: number): Promise<number> }>('alice', 'work')
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => work.job(i)))
    assert.deepEqual(results, Array.from({ length: 100 }, (_, i) => i * 2))
    assert.equal(ran, 100)
    assert.equal(most, 8)
  } finally {
    await t.close()
  }
})

test('replies made while one chunk of requests is read go out as they pile up, not all at the chunk\'s end', async () => {
  // The server's side of its connection, watched: how many writes each chunk it reads leads to while that chunk is handled.
  const linkA = new Link()
  const writesPerChunk: number[] = []
  linkA.on('connection', (c) => {
    const read = c.read.bind(c)
    const write = c.write.bind(c)
    let writes = -1
    c.read = (reader) => {
      read({
        data: (chunk) => { writes = 0; reader.data(chunk); writesPerChunk.push(writes); writes = -1 },
        end: (error) => { reader.end(error) }
      })
    }
    c.write = (chunks) => { if (writes >= 0) writes++; return write(chunks) }
  })
  const listener = await linkA.listen({ port: 0 })
  const a = new Messaging(linkA, { identity: 'alice' })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob' })
  linkB.connect({ port: listener.port })
  const server = new RpcServer(a)
  server.register('calc', { add (x: number, y: number): number { return x + y } })
  const client = new RpcClient(b)
  const calc = client.proxy<Calc>('alice', 'calc')
  try {
    assert.equal(await calc.add(0, 0), 0)
    writesPerChunk.length = 0
    // 64 calls made together go out in one write, and the server reads them as one chunk.
    const sums = await Promise.all(Array.from({ length: 64 }, (_, i) => calc.add(i, 1)))
    assert.deepEqual(sums, Array.from({ length: 64 }, (_, i) => i + 1))
    assert.ok(Math.max(...writesPerChunk) >= 2, `writes per chunk read: ${writesPerChunk.join(', ')}`)
  } finally {
    await client.close()
    await server.close()
    await b.close()
    await a.close()
  }
})

test('past maxQueued waiting calls the server stops taking requests, and takes them again as calls finish', async () => {
  const t = await setup({ concurrency: 1, maxQueued: 2 })
  const started = new EventEmitter()
  let mostWaiting = 0
  t.server.register('work', {
    async job (i: number): Promise<number> {
      mostWaiting = Math.max(mostWaiting, t.server.waiting)
      await new Promise<void>((resolve) => { started.emit('start', resolve) })
      return i + 100
    }
  })
  try {
    const work = t.client.proxy<{ job (i: number): Promise<number> }>('alice', 'work')
    const next = (): Promise<() => void> => waitFor<() => void>(started, 'start')
    let gate = next()
    const calls = Array.from({ length: 10 }, (_, i) => work.job(i))
    for (let i = 0; i < 10; i++) {
      const release = await gate
      // One call runs at a time; at most maxQueued wait for it, the rest stay in the Messaging.
      assert.equal(t.server.running, 1)
      assert.ok(t.server.waiting <= 2, `${t.server.waiting} calls waiting, maxQueued 2`)
      if (i < 9) gate = next()
      release()
    }
    assert.deepEqual(await Promise.all(calls), Array.from({ length: 10 }, (_, i) => i + 100))
    assert.ok(mostWaiting <= 2)
  } finally {
    await t.close()
  }
})

test('structured values round-trip through a call', async () => {
  const t = await setup()
  try {
    const values = [
      undefined, null, true, 0, -0, 1.5, NaN, -Infinity, 2 ** 53 + 2, 123n, -(2n ** 100n), '', 'žluťoučký kůň 🐍',
      new Uint8Array([0, 1, 255]), new Date(1_700_000_000_000), new Map<unknown, unknown>([[1, 'one'], ['k', { v: [1] }]]),
      new Set([1, 'a', null]), [1, [2, [3]]], { a: { b: { c: undefined } } },
      JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": 1}}') as unknown,
      Object.assign(new RangeError('as a value'), { code: 'E_VALUE' })
    ]
    const back = await t.calc.echo(...values)
    assert.deepStrictEqual(back, values)
    assert.equal(Object.getPrototypeOf(back[19]), Object.prototype)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    // A value the codec cannot carry fails the call locally, before anything is sent.
    await assert.rejects(t.client.call('alice', 'calc', 'echo', [() => 1]), RpcCodecError)
    await assert.rejects(t.client.call('alice', 'calc', 'echo', [new (class Point { x = 1 })()]), RpcCodecError)
  } finally {
    await t.close()
  }
})

test('calls over connections read through an incoming throttle resolve, one at a time and many at once', async () => {
  // A throttled connection is read through its `source`, not in the socket's data
  // events: a reply made while a chunk is read must be written at that chunk's end there too.
  const { a, b } = await pair({}, {}, undefined, { throttle: { incoming: 50_000_000 } })
  const server = new RpcServer(a)
  server.register('calc', { add (x: number, y: number): number { return x + y } })
  const client = new RpcClient(b, { timeout: 10_000 })
  const calc = client.proxy<Pick<Calc, 'add'>>('alice', 'calc')
  try {
    for (let i = 0; i < 50; i++) assert.equal(await calc.add(i, 1), i + 1)
    const sums = await Promise.all(Array.from({ length: 200 }, async (_, i) => await calc.add(i, i)))
    assert.deepEqual(sums, Array.from({ length: 200 }, (_, i) => 2 * i))
  } finally {
    await client.close()
    await server.close()
    await a.close()
    await b.close()
  }
})

test('closing the client, or the Messaging, rejects the calls still waiting with ClosedError', async () => {
  const t = await setup()
  try {
    const waiting = assert.rejects(t.calc.slow('forever'), ClosedError)
    await t.client.close()
    await waiting
    await assert.rejects(t.calc.add(1, 2), { name: 'ClosedError', message: 'the RpcClient is closed' })
    const other = new RpcClient(t.b)
    const waiting2 = assert.rejects(other.call('alice', 'calc', 'slow', ['forever 2']), ClosedError)
    await t.b.close()
    await waiting2
    // Calls and signals after the Messaging closed say so, not that the RpcClient was closed (it was not).
    await assert.rejects(other.call('alice', 'calc', 'add', [1, 2]), { name: 'ClosedError', message: /^the RpcClient's Messaging is closed/ })
    await assert.rejects(other.signal('alice', 'calc', 'ping', [1]), { name: 'ClosedError', message: /^the RpcClient's Messaging is closed/ })
    await other.close()
    await assert.rejects(other.call('alice', 'calc', 'add', [1, 2]), { name: 'ClosedError', message: /^the RpcClient's Messaging is closed/ })
  } finally {
    await t.close()
  }
})

test('a second RpcServer on one Messaging is refused; bad options are named', async () => {
  const t = await setup()
  try {
    assert.throws(() => new RpcServer(t.a), InvalidArgumentError)
    assert.throws(() => new RpcServer(t.b, { concurrency: 0 }), /concurrency/)
    assert.throws(() => new RpcClient(t.b, { timeout: -5 }), /timeout/)
    assert.throws(() => t.client.proxy('', 'calc'), InvalidArgumentError)
    assert.throws(() => { t.server.register('', {}) }, InvalidArgumentError)
  } finally {
    await t.close()
  }
})

test('the wire format is the one docs/RPC.md shows', async () => {
  const { a, b } = await pair()
  const client = new RpcClient(b)
  const taken = (async () => {
    for await (const m of a.messages({ prefix: RPC_MAGIC })) return Buffer.from(m.data)
    throw new Error('no request')
  })()
  try {
    const call = client.call('alice', 'calc', 'add', [1, 2])
    const request = await taken
    assert.equal(request.subarray(0, 8).toString('hex'), '736d717270630101', 'magic, version 1, CALL')
    assert.equal(request.subarray(16, 24).toString('hex'), '0000000000000001', 'the first call of this client')
    assert.equal(request.subarray(24).toString('hex'), '0463616c63' + '03616464' + '09028182', '"calc", "add", [1, 2]')
    // The reply: magic, version 1, RESULT, the same request id, 3.
    await a.send('bob', Buffer.concat([Buffer.from('736d717270630181', 'hex'), request.subarray(8, 24), Buffer.from([0x83])]))
    assert.equal(await call, 3)
  } finally {
    await client.close()
    await a.close()
    await b.close()
  }
})

test('a proxy has the types of the remote methods (checked by tsc)', () => {
  interface Api {
    add (a: number, b: number): number
    maybe? (x: string): Promise<string>
    sig: Signal<(n: number) => void>
    then (): void
    field: number
  }
  // Never run: only compiled.
  const typed = (client: RpcClient): void => {
    const p = client.proxy<Api>('bob', 'api')
    const sum: Promise<number> = p.add(1, 2)
    const withOptions: Promise<number> = p.add.with({ timeout: 5 })(1, 2)
    const optional: Promise<string> = p.maybe('x')
    const signal: Promise<void> = p.sig.signal({ ttl: 1 })(3)
    // @ts-expect-error wrong argument types
    void p.add('1', 2)
    // @ts-expect-error a signal cannot be called for a result
    void p.sig(3)
    // @ts-expect-error `then` is never forwarded: a proxy is not a thenable
    void p.then
    // @ts-expect-error properties that are not methods are left out
    void p.field
    const untyped: Promise<unknown> = client.proxy('bob', 'any').whatever!(1, 'x')
    void [sum, withOptions, optional, signal, untyped]
  }
  assert.equal(typeof typed, 'function')
})

test('a call to a peer whose Messaging has no RpcServer fails with RpcUnknownObjectError', async () => {
  const { a, b } = await pair()
  const aClient = new RpcClient(a)
  const bClient = new RpcClient(b)
  try {
    await assert.rejects(bClient.call('alice', 'calc', 'add', [1, 2]), RpcUnknownObjectError)
  } finally {
    await aClient.close()
    await bClient.close()
    await a.close()
    await b.close()
  }
})

test('a request sent with acknowledged delivery (an earlier version\'s client) gets its reply so; one sent without gets its reply without', async () => {
  const { a, b } = await pair()
  const server = new RpcServer(a)
  server.register('calc', { add: (x: number, y: number) => x + y })
  try {
    // bob has no RpcClient: the replies reach his application, flags and all.
    const request = (n: number): Buffer => rpcBytes(1, Kind.Call, Buffer.alloc(16, n), names('calc', 'add'), encodeValue([n, 1]))
    const replies = b.messages()
    // As an earlier version sends it: an ordinary message. Its reply is held until bob's application is done with it.
    await b.send('alice', request(1))
    const first = (await replies.next()).value as Message
    assert.equal(first.flags & FLAG_UNACKED, 0)
    assert.equal(a.queued('bob'), 1)
    const acknowledged = waitFor(a, 'delivered')
    // Asking for the next message is what acknowledges the first.
    const next = replies.next()
    await acknowledged
    assert.equal(a.queued('bob'), 0)
    // As RpcClient sends it now.
    b.post('alice', request(2), undefined, () => {}, null, true)
    const second = (await next).value as Message
    assert.equal(second.flags & FLAG_UNACKED, FLAG_UNACKED)
    assert.deepEqual([first.data[15], second.data[15]], [1, 2])
    await replies.return?.()
  } finally {
    await server.close()
    await a.close()
    await b.close()
  }
})

test('RPC replies reaching a Messaging without an RpcClient are dropped by its server, not left for the application', async () => {
  const t = await setup()
  try {
    // alice has a server and no client: a reply sent to her has no call to settle.
    await t.b.send('alice', rpcBytes(1, Kind.Result, ID, [0x83]))
    await t.b.send('alice', 'for the application')
    for await (const m of t.a.messages()) {
      assert.equal(Buffer.from(m.data).toString(), 'for the application')
      break
    }
    assert.equal(t.log.count('debug', /no RpcClient on this Messaging/), 1)
  } finally {
    await t.close()
  }
})

test('after its RpcServer is closed, a Messaging answers calls "unknown object" and drops replies, never handing RPC bytes to the application; a new server serves again', async () => {
  const t = await setup()
  try {
    assert.equal(await t.calc.add(1, 2), 3)
    await t.server.close()
    await assert.rejects(t.calc.add.with({ timeout: 5000 })(1, 2), RpcUnknownObjectError)
    await t.b.send('alice', rpcBytes(1, Kind.Result, ID, [0x83]))
    await t.b.send('alice', 'for the application')
    for await (const m of t.a.messages()) {
      assert.equal(Buffer.from(m.data).toString(), 'for the application')
      break
    }
    new RpcServer(t.a).register('calc', { add (x: number, y: number) { return x + y } })
    assert.equal(await t.calc.add(2, 3), 5)
  } finally {
    await t.close()
  }
})

test('the server\'s call limiter never runs more than its limit, however tasks arrive and end', async () => {
  for (const limit of [1, 3, 8]) {
    // One peer, allowed every slot: the global limit is what is checked here.
    const limiter = new CallLimiter(limit, limit)
    let running = 0
    let most = 0
    let finished = 0
    let started = 0
    const ticks = async (n: number): Promise<void> => { for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve)) }
    const task = (depth: number) => async (): Promise<void> => {
      running++
      most = Math.max(most, running)
      assert.ok(running <= limit, `${running} tasks running, limit ${limit}`)
      // The limiter frees a slot a microtask after its task ends: it may count more, never fewer.
      assert.ok(limiter.running >= running)
      await ticks(Math.floor(Math.random() * 4))
      // Some tasks add more while they run (as calls keep arriving while others run).
      if (depth < 2 && Math.random() < 0.3) { started++; limiter.run('p', task(depth + 1)) }
      running--
      finished++
    }
    for (let burst = 0; burst < 40; burst++) {
      const n = Math.floor(Math.random() * 3 * limit)
      for (let i = 0; i < n; i++) { started++; limiter.run('p', task(0)) }
      await ticks(Math.floor(Math.random() * 3))
    }
    await limiter.idle()
    assert.equal(finished, started)
    assert.equal(limiter.running + limiter.waiting, 0)
    assert.equal(most, limit)
  }
})

test('a call whose deadline passes while it waits for a slot is not run, and the server is told (its result-cache entry is finished, not left running)', async () => {
  const limiter = new CallLimiter(1, 1)
  let release!: () => void
  const first = new Promise<void>((resolve) => { release = resolve })
  limiter.run('p', async () => { await first })
  let ran = false
  let expired = 0
  // Its caller's deadline is already past: it waits behind the first, then is dropped.
  limiter.run('p', () => { ran = true }, Date.now() - 1, () => { expired++ })
  limiter.run('p', () => {}, Infinity, () => { expired += 100 })
  assert.equal(limiter.waiting, 2)
  release()
  await limiter.idle()
  assert.equal(ran, false)
  assert.equal(expired, 1)

  // Through a server with one slot and a cache of 10: one call holds the slot; 20
  // calls of a method with a 20 ms timeout wait behind it until their callers give up.
  const { a, b } = await pair()
  const server = new RpcServer(a, { concurrency: 1, perPeerConcurrency: 1, resultCacheSize: 10 })
  let quickRuns = 0
  let open!: () => void
  const gate = new Promise<void>((resolve) => { open = resolve })
  server.register('svc', {
    async block (): Promise<number> { await gate; return 1 },
    quick (): number { quickRuns++; return 2 }
  }, { timeout: { quick: 20 } })
  const client = new RpcClient(b)
  try {
    const blocked = client.call('alice', 'svc', 'block', [], { timeout: 10_000 })
    const outcomes = await Promise.all(Array.from({ length: 20 }, async () => await client.call('alice', 'svc', 'quick', [], { timeout: 1000 }).then(() => 'ok', (e: Error) => e.name)))
    assert.ok(outcomes.every((o) => o === 'RpcTimeoutError'), outcomes.join())
    open()
    assert.equal(await blocked, 1)
    await server.close()
    // None of them ran; before, each stayed in the cache as running, for good, whatever resultCacheSize.
    assert.equal(quickRuns, 0)
    assert.ok((server as unknown as { cache: { size: number } }).cache.size <= 10)
  } finally {
    open()
    await client.close()
    await a.close()
    await b.close()
  }
})
