// Fault injection: two Messaging peers exchange thousands of numbered messages
// through a loopback proxy that resets connections in the middle of frames,
// slices the byte stream at random points, delays and stalls it, and leaves
// connections half-open. Whatever it does, each application must receive every
// message exactly once, in order and intact, with bounded memory.
import { test, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import {
  Link, Messaging, SnakeMQError, KeepaliveTimeoutError, type KeepaliveOptions, type Message
} from '../src/index.ts'
import { FaultyProxy } from './helpers/faulty-proxy.ts'
import { connected } from './helpers/util.ts'
import { settledHeap } from './helpers/gc.ts'

const N = 5000

// Nothing may escape as an uncaught exception or an unhandled rejection.
const escaped: unknown[] = []
process.on('uncaughtException', (err) => { escaped.push(err) })
process.on('unhandledRejection', (err) => { escaped.push(err) })
afterEach(() => { assert.deepEqual(escaped.splice(0), [], 'an error escaped as uncaught') })

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Message i: its number, then a length and filling that depend on it, so corruption shows. */
function numbered (i: number): Buffer {
  const b = Buffer.alloc(4 + (i * 37) % 300, i & 0xff)
  b.writeUInt32BE(i, 0)
  return b
}

function checkIntact (data: Uint8Array): number {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const i = b.readUInt32BE(0)
  assert.equal(b.length, 4 + (i * 37) % 300, `message ${i} has the wrong length`)
  for (let k = 4; k < b.length; k++) if (b[k] !== (i & 0xff)) assert.fail(`message ${i} is corrupted at byte ${k}`)
  return i
}

/** Everything one application receives from one peer, in arrival order. */
class Received {
  readonly indexes: number[] = []
  private readonly ac = new AbortController()
  private want = Infinity
  private reached: (() => void) | null = null
  readonly done: Promise<void>

  constructor (mq: Messaging, from: string) {
    this.done = (async () => {
      for await (const m of mq.messages({ signal: this.ac.signal, filter: (msg: Message) => msg.from === from })) {
        this.indexes.push(checkIntact(m.data))
        if (this.indexes.length >= this.want) this.reached?.()
      }
    })()
  }

  async count (n: number, ms: number): Promise<void> {
    if (this.indexes.length >= n) return
    this.want = n
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        new Promise<void>((resolve) => { this.reached = resolve }),
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`received ${this.indexes.length} of ${n} messages in ${ms} ms`)) }, ms) })
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  async stop (): Promise<void> {
    this.ac.abort()
    await this.done
  }
}

async function until (what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await sleep(20)
  }
}

interface Setup {
  a: Messaging
  b: Messaging
  proxy: FaultyProxy
  errors: Error[]
  close: () => Promise<void>
}

/** alice listens; bob connects to her through the proxy. */
async function setup (t: { diagnostic: (s: string) => void }, keepalive?: KeepaliveOptions): Promise<Setup> {
  const linkA = new Link()
  const listener = await linkA.listen({ port: 0 })
  // FAULT_SEED=<n> repeats a run's faults (timing aside).
  const proxy = await FaultyProxy.start(listener.port, process.env.FAULT_SEED !== undefined ? Number(process.env.FAULT_SEED) : undefined)
  t.diagnostic(`proxy seed ${proxy.seed} (FAULT_SEED=${proxy.seed} repeats it)`)
  const common = { queueLimits: { messages: 1000 }, maxUnacked: 256, ...(keepalive !== undefined ? { keepalive } : {}) }
  const a = new Messaging(linkA, { identity: 'alice', ...common })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob', ...common })
  const errors: Error[] = []
  a.on('error', ({ error }) => errors.push(error))
  b.on('error', ({ error }) => errors.push(error))
  linkB.connect({ port: proxy.port, reconnect: { minDelay: 20, maxDelay: 250 } })
  await Promise.all([connected(a, 'bob', 30_000), connected(b, 'alice', 30_000)])
  return {
    a,
    b,
    proxy,
    errors,
    close: async () => {
      await b.close()
      await a.close()
      await proxy.close()
    }
  }
}

/** What a chaos function is given: whether the exchange still runs, and how far it got (messages received by the slower side). */
interface Progress { running: () => boolean, received: () => number }

/** Calls `fault` each time the exchange has moved on by `every` messages, until it ends. */
async function everyMessages (p: Progress, every: number, fault: () => Promise<void> | void): Promise<void> {
  let next = every
  while (p.running()) {
    if (p.received() >= next) {
      next += every
      await fault()
    } else {
      await sleep(5)
    }
  }
}

/**
 * Each side sends N numbered messages to the other while `chaos` runs; then,
 * once the network is quiet again, a last message each way flushes out anything
 * still in flight. Checks that each side received exactly 0..N, in order.
 */
async function exchange (s: Setup, chaos: (p: Progress) => Promise<void>, ms = 90_000, checkpoint?: (sent: number) => Promise<void> | undefined): Promise<{ maxQueued: number }> {
  const { a, b, proxy } = s
  const atA = new Received(a, 'bob')
  const atB = new Received(b, 'alice')
  let running = true
  let maxQueued = 0
  const sampler = setInterval(() => { maxQueued = Math.max(maxQueued, a.queued('bob'), b.queued('alice')) }, 10)
  const faults = chaos({ running: () => running, received: () => Math.min(atA.indexes.length, atB.indexes.length) })
  try {
    const sendAll = async (from: Messaging, to: string): Promise<void> => {
      for (let i = 0; i < N; i++) {
        // A checkpoint holds alice's sending until its fault is in place, however fast the exchange runs.
        if (checkpoint !== undefined && from === a) await checkpoint(i)
        await from.send(to, numbered(i))
      }
    }
    await Promise.all([sendAll(a, 'bob'), sendAll(b, 'alice'), atA.count(N, ms), atB.count(N, ms)])
    running = false
    await faults
    proxy.settings = { slice: false, maxDelay: 0 }
    // Every message acknowledged, then one more each way: whatever was still in flight arrives before it.
    await until('every message is acknowledged', () => a.queued('bob') === 0 && b.queued('alice') === 0, 30_000)
    await Promise.all([a.send('bob', numbered(N), { wait: 'delivered' }), b.send('alice', numbered(N), { wait: 'delivered' })])
    await Promise.all([atA.count(N + 1, 30_000), atB.count(N + 1, 30_000)])
  } finally {
    running = false
    clearInterval(sampler)
    await faults.catch(() => {})
    await atA.stop()
    await atB.stop()
  }
  const expected = Array.from({ length: N + 1 }, (_, i) => i)
  assert.deepEqual(atA.indexes, expected, 'alice received something lost, repeated or out of order')
  assert.deepEqual(atB.indexes, expected, 'bob received something lost, repeated or out of order')
  return { maxQueued }
}

/** Connection errors are typed library errors or the socket's own (ECONNRESET, EPIPE): nothing else. */
function checkErrors (errors: readonly Error[]): void {
  for (const e of errors) {
    const systemError = typeof (e as NodeJS.ErrnoException).code === 'string' && (e as NodeJS.ErrnoException).syscall !== undefined
    assert.ok(e instanceof SnakeMQError || systemError, `unexpected connection error: ${e.name}: ${e.message}`)
  }
}

test('connections reset in the middle of frames: 5,000 messages each way arrive once, in order', async (t) => {
  const s = await setup(t)
  try {
    await exchange(s, async ({ running }) => {
      while (running()) {
        // Mostly tens of kilobytes between resets, sometimes a few bytes (inside the handshake).
        const bytes = s.proxy.random() < 0.2 ? 1 + Math.floor(s.proxy.random() * 200) : 20_000 + Math.floor(s.proxy.random() * 60_000)
        s.proxy.resetAfter(bytes)
        await sleep(10)
      }
    })
    t.diagnostic(`${s.proxy.resets} resets, ${s.proxy.accepted} connections`)
    assert.ok(s.proxy.resets >= 5, `only ${s.proxy.resets} resets happened`)
    checkErrors(s.errors)
  } finally {
    await s.close()
  }
})

test('a byte stream sliced at random points and delayed: nothing lost, nothing repeated', async (t) => {
  const s = await setup(t)
  try {
    s.proxy.settings = { slice: true, maxDelay: 3 }
    await exchange(s, async () => {})
    t.diagnostic(`${s.proxy.slices} slices`)
    assert.ok(s.proxy.slices > 100, `only ${s.proxy.slices} slices`)
    assert.deepEqual(s.errors, [])
  } finally {
    await s.close()
  }
})

test('stalls hold traffic back without losing or repeating it', async (t) => {
  const s = await setup(t)
  let stalls = 0
  try {
    await exchange(s, async (p) => {
      await everyMessages(p, 250, async () => {
        const ms = 50 + Math.floor(s.proxy.random() * 400)
        s.proxy.stall(ms)
        stalls++
        await sleep(ms)
      })
    })
    t.diagnostic(`${stalls} stalls`)
    assert.ok(stalls >= 10, `only ${stalls} stalls`)
    assert.deepEqual(s.errors, [])
  } finally {
    await s.close()
  }
})

test('half-open connections are detected by keepalive on both sides, and traffic resumes', async (t) => {
  const s = await setup(t, { interval: 150, wait: 300 })
  let halfOpened = 0
  try {
    await exchange(s, async () => {}, 90_000, (sent) => {
      if (sent === 0 || sent % 1200 !== 0) return undefined
      return (async () => {
        const before = s.proxy.accepted
        halfOpened += s.proxy.halfOpen()
        // Until the ends notice, nothing moves: wait for the new connection.
        await until('a new connection replaces the half-open one', () => s.proxy.accepted > before, 20_000)
      })()
    })
    t.diagnostic(`${halfOpened} connections made half-open, ${s.proxy.accepted} connections`)
    assert.ok(halfOpened >= 3, `only ${halfOpened} half-open connections`)
    const timeouts = s.errors.filter((e) => e instanceof KeepaliveTimeoutError).length
    // Each half-open connection is given up by both of its ends.
    assert.ok(timeouts >= 2 * halfOpened, `${timeouts} keepalive timeouts for ${halfOpened} half-open connections`)
    checkErrors(s.errors)
    // The dead connections are gone on both sides: only the live one is left in the proxy.
    await until('the half-open connections are closed', () => s.proxy.open === 1, 10_000)
  } finally {
    await s.close()
  }
})

test('everything at once (resets, slicing, delays, stalls, half-open): nothing lost or repeated, memory bounded', async (t) => {
  const s = await setup(t, { interval: 200, wait: 400 })
  const faults = { resets: 0, stalls: 0, halfOpen: 0 }
  try {
    const before = await settledHeap()
    s.proxy.settings = { slice: true, maxDelay: 2 }
    const { maxQueued } = await exchange(s, async (p) => {
      await everyMessages(p, 200, async () => {
        const r = s.proxy.random()
        if (r < 0.5) { s.proxy.resetAfter(1 + Math.floor(s.proxy.random() * 20_000)); faults.resets++ } else if (r < 0.85) { s.proxy.stall(Math.floor(s.proxy.random() * 300)); faults.stalls++ } else { s.proxy.halfOpen(); faults.halfOpen++ }
      })
    })
    const after = await settledHeap()
    t.diagnostic(`faults ${JSON.stringify(faults)}, ${s.proxy.resets} resets done, ${s.proxy.accepted} connections, max queued ${maxQueued}, heap ${(before / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB`)
    assert.ok(s.proxy.accepted >= 5, `only ${s.proxy.accepted} connections: too few faults to mean anything`)
    assert.ok(maxQueued <= 1000, `a queue held ${maxQueued} messages, over its limit of 1,000`)
    assert.ok(after - before < 32 * 2 ** 20, `the heap grew by ${((after - before) / 2 ** 20).toFixed(1)} MiB`)
    checkErrors(s.errors)
  } finally {
    await s.close()
  }
})
