// Nothing lost (issue 3), proved end to end: real LevelDB in temp dirs, peers in
// child processes killed with SIGKILL and started again on the same directory,
// a proxy that cuts the connection between a delivery and its acknowledgement,
// TTLs that run out while the process is down, the lock, a failing disk, and the
// recorded snakeMQ 1.6 sessions (a plain peer gets snakeMQ's behaviour).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { Link, Messaging, FrameType, StoreError, StoreInUseError, StoreLockedError, type Message } from '../src/index.ts'
import { LevelStore, MemoryStore, type QueueStore, type StoreBatch, type StoredMessage } from '../src/store/index.ts'
import { MAX_KEPT_DELETES, StoreDeletes } from '../src/messaging/store-deletes.ts'
import { uuidKey } from '../src/messaging/uuid.ts'
import { LogWatch, RawPeer, connected, nodeHello, packets, pair, payload, take, waitFor } from './helpers/util.ts'
import type { SenderEvent, SenderOptions } from './fixtures/persist-sender.ts'
import type { ReceiverEvent, ReceiverOptions } from './fixtures/persist-receiver.ts'

const REPO = fileURLToPath(new URL('..', import.meta.url))
const SENDER = fileURLToPath(new URL('./fixtures/persist-sender.ts', import.meta.url))
const RECEIVER = fileURLToPath(new URL('./fixtures/persist-receiver.ts', import.meta.url))

const tempDirs: string[] = []
after(async () => {
  await Promise.all(tempDirs.map(async (dir) => await rm(dir, { recursive: true, force: true })))
})

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-persist-'))
  tempDirs.push(dir)
  return dir
}

/** A fixture in a child process, and the JSON lines it printed so far. */
class ChildPeer<E extends { event: string }> {
  readonly lines: E[] = []
  private stderr = ''
  private partial = ''
  private readonly waiters = new Set<() => void>()
  private exit: { code: number | null, signal: NodeJS.Signals | null } | null = null
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>

  private constructor (readonly name: string, readonly proc: ChildProcess) {
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n')
      this.partial = parts.pop() ?? ''
      for (const line of parts) if (line.trim() !== '') this.lines.push(JSON.parse(line) as E)
      this.wake()
    })
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk })
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exit = { code, signal }
        this.wake()
        resolve(this.exit)
      })
    })
  }

  static start<E extends { event: string }> (fixture: string, options: object): ChildPeer<E> {
    const proc = spawn(process.execPath, ['--import', 'tsx', fixture, JSON.stringify(options)], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] })
    const peer = new ChildPeer<E>(fixture === SENDER ? 'sender' : 'receiver', proc)
    children.add(peer)
    return peer
  }

  private wake (): void {
    for (const w of this.waiters) w()
  }

  /** The first line so far (or to come) that passes `match`, searching from line `from`. */
  async line<T extends E> (match: (e: E) => e is T, from?: number, ms?: number): Promise<T>
  async line (match: (e: E) => boolean, from?: number, ms?: number): Promise<E>
  async line (match: (e: E) => boolean, from = 0, ms = 60_000): Promise<E> {
    const deadline = Date.now() + ms
    for (let i = from; ; ) {
      for (; i < this.lines.length; i++) if (match(this.lines[i]!)) return this.lines[i]!
      if (this.exit !== null) {
        throw new Error(`${this.name} exited (${this.exit.signal ?? this.exit.code}) without the line awaited; stdout: ${JSON.stringify(this.lines.slice(-5))} stderr: ${this.stderr}`)
      }
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for a line from ${this.name}; last lines: ${JSON.stringify(this.lines.slice(-5))} stderr: ${this.stderr}`)
      await new Promise<void>((resolve) => {
        const done = (): void => { clearTimeout(timer); this.waiters.delete(done); resolve() }
        const timer = setTimeout(done, left)
        this.waiters.add(done)
      })
    }
  }

  async event<K extends E['event']> (event: K, from?: number): Promise<Extract<E, { event: K }>> {
    return await this.line((e): e is Extract<E, { event: K }> => e.event === event, from)
  }

  /** SIGKILL: no shutdown code runs. */
  async kill (): Promise<void> {
    if (this.exit === null) this.proc.kill('SIGKILL')
    const { signal } = await this.exited
    assert.equal(signal, 'SIGKILL')
  }

  /** Asks the fixture to close its Messaging cleanly, and waits for the process to end. */
  async close (): Promise<Extract<E, { event: 'closed' }>> {
    this.proc.stdin!.write('close\n')
    const closed = await this.line((e): e is Extract<E, { event: 'closed' }> => e.event === 'closed')
    const { code } = await this.exited
    assert.equal(code, 0)
    return closed
  }
}

const children = new Set<ChildPeer<{ event: string }>>()
after(() => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL')
})

const startSender = (options: SenderOptions): ChildPeer<SenderEvent> => ChildPeer.start<SenderEvent>(SENDER, options)
const startReceiver = (options: ReceiverOptions): ChildPeer<ReceiverEvent> => ChildPeer.start<ReceiverEvent>(RECEIVER, options)

/** The index a test message carries in its first 4 bytes. */
const indexOf = (m: Message): number => Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).readUInt32BE(0)
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)
const quietLogger = { debug () {}, info () {}, warn () {}, error () {} }

/** What is left in a store directory, read once nothing has it open. */
async function storedIn (dir: string): Promise<number[]> {
  const store = await LevelStore.open(dir)
  try {
    return (await store.load()).messages.map((m) => Buffer.from(m.data).readUInt32BE(0))
  } finally {
    await store.close()
  }
}

/**
 * A listening Messaging whose application loop records every message it takes.
 * `hold(i)`, if given, runs in the loop body for message i: until it resolves the
 * message is not finished (so not acknowledged) and the loop takes nothing more.
 */
async function receiver (hold?: (i: number, count: number) => Promise<void>, options: { receiveBuffer?: number } = {}): Promise<{
  mq: Messaging, port: number, got: Message[], until: (done: (got: Message[]) => boolean) => Promise<void>, loop: Promise<void>
}> {
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'receiver', ...options })
  const got: Message[] = []
  const waiters = new Set<() => void>()
  let failure: unknown = null
  const loop = (async () => {
    for await (const m of mq.messages()) {
      got.push(m)
      for (const w of waiters) w()
      if (hold !== undefined) await hold(indexOf(m), got.length)
    }
  })().catch((err: unknown) => {
    failure = err
    for (const w of waiters) w()
  })
  const until = async (done: (got: Message[]) => boolean, ms = 60_000): Promise<void> => {
    const deadline = Date.now() + ms
    while (!done(got)) {
      if (failure !== null) throw failure
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out: the receiver has ${got.length} messages`)
      await new Promise<void>((resolve) => {
        const w = (): void => { clearTimeout(timer); waiters.delete(w); resolve() }
        const timer = setTimeout(w, left)
        waiters.add(w)
      })
    }
  }
  return { mq, port, got, until, loop }
}

// ---- process crashes ----------------------------------------------------------

test('a sender killed with SIGKILL right after send() resolved for 2,000 persistent messages delivers all of them after a restart, each once', async () => {
  const dir = await tempDir()
  const n = 2000
  const first = startSender({ dir, count: n })
  const sent = await first.event('sent')
  assert.equal(sent.count, n)
  await first.kill()

  const rx = await receiver()
  try {
    const second = startSender({ dir, connect: rx.port })
    assert.equal((await second.event('ready')).queued, n, 'every message whose send() resolved was in the store')
    await rx.until((got) => got.length >= n)
    await second.event('drained')
    assert.deepEqual(rx.got.map(indexOf), range(0, n), 'all delivered, in order, none twice')
    assert.equal((await second.close()).queued, 0)
    assert.deepEqual(await storedIn(dir), [], 'delivered messages are deleted from the store')
    assert.equal(rx.got.length, n)
  } finally {
    await rx.mq.close()
  }
})

test('a sender killed with SIGKILL mid-stream, while the receiver is consuming, delivers the rest after a restart: in order, none twice to the application', async () => {
  const dir = await tempDir()
  const n = 2000
  const killAt = 500
  let sender: ChildPeer<SenderEvent> | null = null
  let killed = false
  // The application holds message 500 (not finished, so not acknowledged) while the sender is killed.
  const rx = await receiver(async (_i, count) => {
    if (count !== killAt || sender === null) return
    await sender.event('sent')
    await sender.kill()
    killed = true
  }, { receiveBuffer: 64 })
  try {
    sender = startSender({ dir, count: n, connect: rx.port, maxUnacked: 128 })
    await rx.until((got) => got.length >= killAt && killed)
    assert.ok(rx.got.length < n, 'the sender was killed mid-stream')
    const restarted = startSender({ dir, connect: rx.port })
    const { queued } = await restarted.event('ready')
    // Everything from the message held by the application on was never acknowledged; acknowledged ones may not be deleted yet.
    assert.ok(queued >= n - killAt + 1, `${queued} messages left in the store`)
    await rx.until((got) => got.length >= n)
    await restarted.event('drained')
    assert.deepEqual(rx.got.map(indexOf), range(0, n))
    assert.equal((await restarted.close()).queued, 0)
    assert.deepEqual(await storedIn(dir), [])
    assert.equal(rx.got.length, n, 'redelivered duplicates were dropped')
  } finally {
    await rx.mq.close()
  }
})

test('a receiver killed with SIGKILL mid-stream gets everything after a restart (duplicates across its crash allowed), including the message it never finished', async () => {
  const dir = await tempDir()
  const n = 2000
  const pauseAfter = 700
  const store = await LevelStore.open(dir)
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  const tx = new Messaging(link, { identity: 'sender', store, maxUnacked: 256 })
  try {
    await Promise.all(range(0, n).map(async (i) => await tx.send('receiver', payload(i), { persistent: true })))
    const first = startReceiver({ connect: port, pauseAfter, receiveBuffer: 64 })
    await first.event('paused')
    assert.ok(tx.queued('receiver') > n - pauseAfter, 'the stream is in progress')
    await first.kill()
    const before = first.lines.flatMap((e) => e.event === 'message' ? [e.i] : [])
    assert.deepEqual(before, range(0, pauseAfter))

    const second = startReceiver({ connect: port })
    await second.line((e) => e.event === 'message' && e.i === n - 1)
    const afterRestart = second.lines.flatMap((e) => e.event === 'message' ? [e.i] : [])
    // Redelivery starts at the oldest unacknowledged message and keeps the original order.
    assert.deepEqual(afterRestart, range(afterRestart[0]!, n))
    assert.ok(afterRestart[0]! <= pauseAfter - 1, 'the message held when the receiver died is redelivered')
    assert.deepEqual([...new Set([...before, ...afterRestart])].sort((a, b) => a - b), range(0, n), 'nothing lost')
    if (tx.queued('receiver') > 0) await waitFor(tx, 'delivered', () => tx.queued('receiver') === 0)
    await second.close()
  } finally {
    await tx.close()
  }
  assert.deepEqual(await storedIn(dir), [])
})

// ---- a delivery whose acknowledgement is lost ------------------------------------

/**
 * A TCP proxy that records the frames going each way. Armed, it stops forwarding
 * towards the client at the first ACK frame: the client has delivered a message
 * and will never hear so on this connection. Later connections pass untouched.
 */
class AckCuttingProxy {
  readonly messagesUp: string[] = []
  private readonly server: net.Server
  private readonly sockets = new Set<net.Socket>()
  private armed = true
  private onHeld: (() => void) | null = null
  readonly held: Promise<void>

  private constructor (private readonly target: number) {
    this.held = new Promise((resolve) => { this.onHeld = resolve })
    this.server = net.createServer((client) => { this.relay(client) })
  }

  static async start (target: number): Promise<AckCuttingProxy> {
    const proxy = new AckCuttingProxy(target)
    proxy.server.listen(0, '127.0.0.1')
    await once(proxy.server, 'listening')
    return proxy
  }

  get port (): number { return (this.server.address() as net.AddressInfo).port }

  /** Closes every connection through the proxy. */
  cut (): void {
    for (const s of this.sockets) s.destroy()
  }

  async close (): Promise<void> {
    this.cut()
    await new Promise<void>((resolve) => this.server.close(() => { resolve() }))
  }

  private relay (client: net.Socket): void {
    const server = net.connect({ host: '127.0.0.1', port: this.target })
    for (const s of [client, server]) {
      this.sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => { this.sockets.delete(s); client.destroy(); server.destroy() })
    }
    let up = Buffer.alloc(0)
    client.on('data', (chunk: Buffer) => {
      server.write(chunk)
      up = Buffer.concat([up, chunk])
      const ps = packets(up)
      for (const p of ps) {
        if (p[0] === FrameType.Message) this.messagesUp.push(p.subarray(1, 17).toString('hex'))
        up = up.subarray(4 + p.length)
      }
    })
    let down = Buffer.alloc(0)
    let holding = false
    server.on('data', (chunk: Buffer) => {
      if (holding) return
      down = Buffer.concat([down, chunk])
      for (const p of packets(down)) {
        down = down.subarray(4 + p.length)
        if (this.armed && p[0] === FrameType.Ack) {
          this.armed = false
          holding = true
          this.onHeld?.()
          return
        }
        const header = Buffer.allocUnsafe(4)
        header.writeUInt32BE(p.length)
        client.write(Buffer.concat([header, p]))
      }
    })
  }
}

test('a connection dropped after delivery but before the ack arrives: the persistent message is resent, seen once, then deleted from the store', async () => {
  const dir = await tempDir()
  const rx = await receiver()
  const proxy = await AckCuttingProxy.start(rx.port)
  const link = new Link()
  const tx = new Messaging(link, { identity: 'sender', store: await LevelStore.open(dir) })
  try {
    link.connect({ port: proxy.port, reconnect: { minDelay: 20, maxDelay: 100 } })
    const { uuid } = await tx.send('receiver', payload(0), { persistent: true })
    await proxy.held
    assert.deepEqual(rx.got.map(indexOf), [0], 'delivered to the application')
    assert.equal(tx.queued('receiver'), 1, 'not acknowledged yet')
    const reconnected = waitFor(tx, 'connect')
    proxy.cut()
    await reconnected
    await waitFor(tx, 'delivered', (e: { uuid: string }) => e.uuid === uuid)
    assert.deepEqual(proxy.messagesUp, [uuid, uuid], 'sent again on the new connection')
    await tx.send('receiver', payload(1), { persistent: true, wait: 'delivered' })
    assert.deepEqual(rx.got.map(indexOf), [0, 1], 'the application saw the resent message once')
    assert.equal(tx.queued('receiver'), 0)
  } finally {
    await tx.close()
    await proxy.close()
    await rx.mq.close()
  }
  assert.deepEqual(await storedIn(dir), [])
})

test('a sender killed with SIGKILL after delivery but before the ack arrived resends the message from its store, and it is still seen once', async () => {
  const dir = await tempDir()
  const rx = await receiver()
  const proxy = await AckCuttingProxy.start(rx.port)
  try {
    const first = startSender({ dir, count: 1, connect: proxy.port })
    const [uuid] = (await first.event('sent')).uuids
    await proxy.held
    await first.kill()
    proxy.cut()
    assert.deepEqual(rx.got.map(indexOf), [0])

    const second = startSender({ dir, count: 1, start: 1, connect: proxy.port })
    assert.equal((await second.event('ready')).queued, 1)
    await second.event('drained')
    assert.equal(proxy.messagesUp.filter((u) => u === uuid).length, 2, 'resent by the restarted process')
    await rx.until((got) => got.length >= 2)
    assert.deepEqual(rx.got.map(indexOf), [0, 1], 'the duplicate was dropped')
    assert.equal(rx.got[0]!.uuid, uuid)
    await second.close()
    assert.deepEqual(await storedIn(dir), [])
  } finally {
    await proxy.close()
    await rx.mq.close()
  }
})

// ---- TTL while the process is down --------------------------------------------------

for (const stop of ['closed cleanly', 'killed with SIGKILL'] as const) {
  test(`a persistent message whose TTL runs out while the process is down (${stop}) is dropped as expired on restart, never sent`, async () => {
    const dir = await tempDir()
    const first = startSender({ dir, count: 2, ttls: [1, 600] })
    const [short, long] = (await first.event('sent')).uuids
    if (stop === 'closed cleanly') await first.close()
    else await first.kill()
    // The point of the test: more than the 1 s TTL passes with the process down.
    await delay(1300)

    const rx = await receiver()
    try {
      const second = startSender({ dir, connect: rx.port, marker: 'after restart' })
      const drop = await second.event('drop')
      assert.deepEqual(drop, { event: 'drop', uuid: short, reason: 'expired' })
      assert.equal((await second.event('ready')).queued, 1, 'dropped while loading, before anything could be sent')
      await rx.until((got) => got.length >= 2)
      assert.equal(rx.got[0]!.uuid, long)
      assert.equal(indexOf(rx.got[0]!), 1)
      assert.equal(Buffer.from(rx.got[1]!.data).toString(), 'after restart')
      assert.ok(!rx.got.some((m) => m.uuid === short))
      // The other message's TTL ran down while no receiver was connected (the 1.3 s down included), and only then.
      const ttl = rx.got[0]!.ttl!
      assert.ok(ttl >= 560 && ttl <= 598, `ttl on the wire ${ttl}`)
      await second.event('drained')
      await second.close()
      assert.deepEqual(await storedIn(dir), [])
    } finally {
      await rx.mq.close()
    }
  })
}

// ---- the lock, a failing store, what is not persisted ------------------------------

test('a second LevelStore on a directory in use, in this process or then in another, fails with StoreLockedError naming the directory', async () => {
  const dir = await tempDir()
  const store = await LevelStore.open(dir)
  const mq = new Messaging(new Link(), { identity: 'sender', store })
  try {
    await mq.ready()
    await assert.rejects(LevelStore.open(dir), (err: unknown) => err instanceof StoreLockedError && err.directory === dir && err.message === `the queue store ${dir} is already open in this process: close that LevelStore first`)
    // That refusal must not have released the lock (LevelDB's own refusal did: it closes a descriptor of its LOCK file).
    const other = startSender({ dir })
    const refused = await other.event('error')
    assert.deepEqual(refused, { event: 'error', name: 'StoreLockedError', message: `the queue store ${dir} is in use by another process`, directory: dir })
    assert.equal((await other.exited).code, 1)
  } finally {
    await mq.close()
  }
  // Released on close.
  await (await LevelStore.open(dir)).close()
})

test('a second Messaging on a LevelStore in use is refused with StoreInUseError; the first keeps working', async () => {
  const dir = await tempDir()
  const store = await LevelStore.open(dir)
  const { a, b, linkA, linkB } = await pair({ store })
  const otherLink = new Link()
  try {
    await a.ready()
    await a.send('bob', payload(0), { persistent: true })
    // Both would start bob's queue at seq 0, one message over the other.
    assert.throws(() => new Messaging(otherLink, { identity: 'alice', store }), (err: unknown) => {
      assert.ok(err instanceof StoreInUseError, String(err))
      assert.ok(err instanceof StoreError, 'a StoreError')
      assert.equal(err.code, 'ERR_STORE_IN_USE')
      return true
    })
    assert.equal(otherLink.listenerCount('connection'), 0, 'the refused Messaging took nothing from its link')
    const received = take(b, 20)
    await Promise.all(Array.from({ length: 19 }, async (_, i) => { await a.send('bob', payload(i + 1), { persistent: true, wait: 'delivered' }) }))
    assert.deepEqual((await received).map((m) => Buffer.from(m.data).readUInt32BE(0)), Array.from({ length: 20 }, (_, i) => i))
  } finally {
    await Promise.all([a.close(), b.close(), otherLink.close()])
    await Promise.all([linkA.close(), linkB.close()])
  }
  // Closing the first released the store: it opens clean, with nothing left queued.
  const again = await LevelStore.open(dir)
  try {
    assert.deepEqual((await again.load()).messages, [])
  } finally {
    await again.close()
  }
})

test('without the journal, a failing store write rejects send() with StoreError and nothing is counted as queued', async () => {
  const dir = await tempDir()
  const store = await LevelStore.open(dir, { journal: false })
  const mq = new Messaging(new Link(), { identity: 'sender', store, logger: quietLogger })
  try {
    await mq.send('receiver', payload(0), { persistent: true })
    assert.equal(mq.queued('receiver'), 1)
    // The database fails under the store, as a broken disk would.
    await (store as unknown as { db: { close: () => Promise<void> } }).db.close()
    const failing = [
      mq.send('receiver', payload(1), { persistent: true }),
      mq.send('receiver', payload(2), { persistent: true, wait: 'delivered' }),
      mq.send('receiver', payload(3), { persistent: true })
    ]
    await Promise.all(failing.map(async (p) => {
      await assert.rejects(p, (err: unknown) => err instanceof StoreError && /writing to the queue store/.test(err.message))
    }))
    assert.equal(mq.queued('receiver'), 1, 'the failed messages are not queued')
    // Messages that need no store still go.
    await mq.send('receiver', payload(4))
    assert.equal(mq.queued('receiver'), 2)
  } finally {
    await mq.close()
  }
})

/**
 * A durable store (a MemoryStore standing for the disk) that refuses deletions on
 * demand: 'refuse' writes nothing of the batch; 'written' writes it and refuses it
 * all the same, as a store whose fsync failed once the data was there may. Each
 * refused batch of deletions, and each written one, is an event with its size.
 */
class RefusingStore extends EventEmitter implements QueueStore {
  readonly durable = true
  deletions: 'take' | 'refuse' | 'written' = 'take'
  readonly inner = new MemoryStore()
  claim (owner: object): void { this.inner.claim(owner) }
  release (owner: object): void { this.inner.release(owner) }
  async load (): ReturnType<QueueStore['load']> { return await this.inner.load() }
  async summary (): ReturnType<QueueStore['summary']> { return await this.inner.summary() }
  async read (peer: string, fromSeq: number, limit: number): ReturnType<QueueStore['read']> { return await this.inner.read(peer, fromSeq, limit) }
  async write (batch: StoreBatch): Promise<void> {
    const del = batch.del?.length ?? 0
    if (del > 0 && this.deletions !== 'take') {
      if (this.deletions === 'written') await this.inner.write(batch)
      this.emit('refused', del)
      throw new StoreError('the disk is full')
    }
    await this.inner.write(batch)
    if (del > 0) this.emit('deleted', del)
  }

  async close (): Promise<void> { /* the inner store stands for the disk: it outlives the Messaging */ }
}

test('deletions the store refuses are kept and written once it writes again, before close() and at close(); one it had written after all is not written twice', async () => {
  const store = new RefusingStore()
  const log = new LogWatch()
  const { a, b } = await pair({ store, logger: log.logger })
  const consumer = (async () => { for await (const _ of b.messages()) { /* asking for the next finishes the last */ } })()
  const delivered = new Set<string>()
  a.on('delivered', ({ uuid }) => { delivered.add(uuid) })
  /** Sends `n` persistent messages, and resolves once all are delivered and `n` deletions were refused. */
  const deliverRefused = async (n: number): Promise<void> => {
    let refused = 0
    const allRefused = new Promise<void>((resolve) => {
      const on = (count: number): void => {
        if ((refused += count) < n) return
        store.off('refused', on)
        resolve()
      }
      store.on('refused', on)
    })
    await Promise.all(Array.from({ length: n }, async (_, i) => { await a.send('bob', payload(i), { persistent: true, wait: 'delivered' }) }))
    await allRefused
  }
  /** The delivered messages the store holds. */
  const left = async (): Promise<string[]> => (await store.inner.load()).messages.map((m) => Buffer.from(m.uuid).toString('hex')).filter((uuid) => delivered.has(uuid))
  try {
    store.deletions = 'refuse'
    await deliverRefused(20)
    assert.equal((await left()).length, 20)
    // Tried again (on a timer): written, and refused all the same.
    store.deletions = 'written'
    await waitFor(store, 'refused')
    assert.deepEqual(await left(), [])
    // A send that goes through brings the next try forward; it finds those messages gone and deletes nothing
    // (MemoryStore would refuse to delete a message it does not hold, and a LevelStore's count would go wrong).
    store.deletions = 'take'
    const from = log.lines.length
    const ownDeletion = once(store, 'deleted')
    await a.send('bob', payload(99), { persistent: true, wait: 'delivered' })
    await log.until((message) => message === 'deleted delivered messages the store had refused to delete', from)
    await ownDeletion
    // Refused again, and the store takes deletions once more when close() comes: its last write has them.
    store.deletions = 'refuse'
    await deliverRefused(3)
    assert.equal((await left()).length, 3)
    store.deletions = 'take'
  } finally {
    await a.close()
    await b.close()
    await consumer
  }
  assert.deepEqual(await left(), [])
  assert.deepEqual(log.messages('error'), [])
})

test('a kept deletion deletes only the message it was made for, not another one stored at its seq since', async () => {
  const store = new RefusingStore()
  const stored = (n: number): StoredMessage => ({ peer: 'bob', seq: 5, uuid: new Uint8Array(16).fill(n), expiry: Infinity, flags: 1, data: payload(n) })
  await store.inner.write({ put: [stored(1)] })
  store.deletions = 'refuse'
  const deletes = new StoreDeletes(store, quietLogger)
  const refused = once(store, 'refused')
  deletes.add({ peer: 'bob', seq: 5, size: 16, uuid: uuidKey(stored(1).uuid) })
  await refused
  // Meanwhile that message went, and another took its seq.
  await store.inner.write({ del: [{ peer: 'bob', seq: 5, size: 16 }] })
  await store.inner.write({ put: [stored(2)] })
  store.deletions = 'take'
  assert.deepEqual(await deletes.close(), [])
  assert.deepEqual((await store.inner.load()).messages.map((m) => m.uuid[0]), [2])
})

test('deletions kept for a store that refuses them are bounded: past MAX_KEPT_DELETES the oldest are given up, saying so', async () => {
  const store = new RefusingStore()
  store.deletions = 'refuse'
  const log = new LogWatch()
  const deletes = new StoreDeletes(store, log.logger)
  const refused = once(store, 'refused')
  for (let seq = 0; seq < MAX_KEPT_DELETES + 1000; seq++) deletes.add({ peer: 'bob', seq, size: 1, uuid: '' })
  await refused
  // The refusal is handled in the same turn.
  await new Promise((resolve) => { setImmediate(resolve) })
  assert.equal(deletes.waiting, MAX_KEPT_DELETES)
  assert.deepEqual(log.messages('error'), ['too many deletions wait for the store: the oldest are given up, and their messages are sent again after a restart'])
  // None of those messages is in the store: close() finds nothing left to delete.
  store.deletions = 'take'
  assert.deepEqual(await deletes.close(), [])
})

test('non-persistent messages stay in memory even when a store is configured', async () => {
  const dir = await tempDir()
  const store = await LevelStore.open(dir)
  const mq = new Messaging(new Link(), { identity: 'sender', store })
  try {
    await mq.send('receiver', payload(0), { persistent: true })
    await mq.send('receiver', payload(1))
    await mq.send('receiver', payload(2), { ttl: 600 })
    assert.equal(mq.queued('receiver'), 3)
    assert.deepEqual((await store.load()).messages.map((m) => Buffer.from(m.data).readUInt32BE(0)), [0])
  } finally {
    await mq.close()
  }
  const again = new Messaging(new Link(), { identity: 'sender', store: await LevelStore.open(dir) })
  try {
    await again.ready()
    assert.equal(again.queued('receiver'), 1, 'only the persistent one survives a restart')
  } finally {
    await again.close()
  }
})

// ---- plain snakeMQ peers ---------------------------------------------------------------

interface Vectors {
  sessions: Array<{ name: string, sent_to_snakemq_hex: string, received_from_snakemq_hex: string }>
}
const vectors = JSON.parse(readFileSync(fileURLToPath(new URL('./fixtures/snakemq-1.6.json', import.meta.url)), 'utf8')) as Vectors
const recorded = (prefix: string): Vectors['sessions'][number] => vectors.sessions.find((s) => s.name.startsWith(prefix))!

test('with a recorded snakeMQ 1.6 peer (no announcement): no ACK frames, delivered = written, and a persistent message leaves the store once written', async () => {
  const dir = await tempDir()
  const store = await LevelStore.open(dir)
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'alice', store })
  const peer = await RawPeer.connect(port)
  try {
    // As in the recording: bob is away while alice queues two messages, the second persistent.
    await mq.send('bob', 'first', { ttl: 600 })
    const { uuid } = await mq.send('bob', 'second', { persistent: true })
    assert.equal((await store.load()).messages.length, 1)
    const delivered = waitFor(mq, 'delivered', (e: { uuid: string }) => e.uuid === uuid)
    const session = recorded('connect, handshake')
    // bob's side of the recording: PROTOCOL_VERSION, then IDENTIFICATION, no EXTENSIONS in between.
    peer.write(session.sent_to_snakemq_hex)
    await delivered
    assert.equal(mq.queued('bob'), 0, 'both count as delivered once written')
    // bob sends alice the messages the recorded snakeMQ peer sent; alice's application takes them.
    const fromBob = Buffer.from(session.received_from_snakemq_hex, 'hex')
    peer.write(fromBob.subarray(9 + 10))
    const got: Message[] = []
    for await (const m of mq.messages()) {
      got.push(m)
      if (got.length === 2) break
    }
    assert.deepEqual(got.map((m) => Buffer.from(m.data).toString()), ['first', 'second'])
    // A PING is answered after anything queued before it: had an ACK been due, it would precede the PONG.
    peer.write('0000000104')
    const helloBytes = nodeHello(mq).length / 2
    const messageBytes = (data: string): number => 4 + 1 + 24 + data.length
    const mine = packets(await peer.bytes(helloBytes + messageBytes('first') + messageBytes('second') + 5)).map((p) => p[0])
    assert.deepEqual(mine, [FrameType.ProtocolVersion, FrameType.Extensions, FrameType.Identification, FrameType.Message, FrameType.Message, FrameType.Pong])
  } finally {
    peer.destroy()
    await mq.close()
  }
  assert.deepEqual(await storedIn(dir), [], 'deleted from the store once written')
})

test('a message to a plain snakeMQ peer is not resent after the connection drops: snakeMQ\'s at-most-once', async () => {
  const dir = await tempDir()
  const link = new Link()
  const { port } = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'alice', store: await LevelStore.open(dir) })
  try {
    const session = recorded('connect, handshake')
    const peer = await RawPeer.connect(port)
    peer.write(session.sent_to_snakemq_hex)
    await connected(mq, 'bob')
    await mq.send('bob', 'once', { persistent: true, wait: 'delivered' })
    const gone = waitFor(mq, 'disconnect')
    peer.destroy()
    await gone
    const again = await RawPeer.connect(port)
    again.write(session.sent_to_snakemq_hex)
    await connected(mq, 'bob')
    // Something sent now goes out alone: "once" is not in front of it.
    await mq.send('bob', 'next', { wait: 'delivered' })
    const frames = packets(await again.bytes(9 + 10 + 10 + 4 + 1 + 24 + 4)).filter((p) => p[0] === FrameType.Message)
    assert.deepEqual(frames.map((p) => p.subarray(25).toString()), ['next'])
    again.destroy()
  } finally {
    await mq.close()
  }
  assert.deepEqual(await storedIn(dir), [])
})
