// The RPC server's memory of recent calls, so that a call its client resends
// (after a reconnect) is answered with its first outcome instead of being run a
// second time. Bounded by count (calls) and by bytes (the replies it holds).
//
// Calls are kept in arrival order in a ring of columns (counter, client, state,
// reply, reply length), not as an object each: forgetting the oldest call, which
// every new call does once the cache is full, then reads the ring's next slot
// instead of an object made 10,000 calls ago, long gone from the CPU's caches
// (0.3 µs a call, measured, against 0.1 without any forgetting).
//
// Calls from Python snakeMQ clients have random 16-byte request ids, which fit
// no counter: KeyedResultCache keeps those by caller and id, with the same rules.
import { CounterTable } from './counter-table.ts'
import { CLIENT_ID_BYTES, HEADER_BYTES, readCounter } from './wire.ts'
import { settleFields } from '../settle.ts'

export const RUNNING = 0
export const DONE = 1
/** Done, but the reply was dropped to stay within the byte limit. */
export const LOST = 2

/** @internal What the cache knows of a call seen before. */
export interface CacheHit {
  readonly state: typeof RUNNING | typeof DONE | typeof LOST
  /** The reply, when the call is done and its reply still held. */
  readonly reply: Uint8Array | null
}

/** @internal A call started with `start()`, to `finish()` once it has its reply. */
export interface RunningCall {
  /** Where it is in the ring now (a running call moves to the back when the cache is full). */
  pos: number
}

/** The calls of one RpcClient instance (the first 8 bytes of request ids) of one peer: counter -> position in the ring. */
interface CachedClient {
  readonly key: string
  readonly from: string
  readonly id: Uint8Array
  readonly calls: CounterTable<number>
}

/** A first-in first-out queue of numbers on an array. */
class NumberFifo {
  private readonly items: number[] = []
  private head = 0
  constructor () { settleFields(this, 'head') }
  get length (): number { return this.items.length - this.head }
  /** The oldest item, left in place (-1 when empty). */
  peek (): number { return this.head < this.items.length ? this.items[this.head]! : -1 }
  push (item: number): void { this.items.push(item) }
  shift (): number {
    if (this.head === this.items.length) return -1
    const item = this.items[this.head++]!
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      // In place, not a new array (see settle.ts).
      this.items.splice(0, this.head)
      this.head = 0
    }
    return item
  }
}

const FIRST_SLOTS = 64

/**
 * @internal Recent calls by request id and caller: the finished ones bounded by
 * count, oldest forgotten first, and the replies they hold by bytes, oldest
 * dropped first. Calls still running (or waiting for a slot) are remembered
 * besides and never forgotten, so a resend can never start a second run, and
 * however many there are they do not push finished calls out: those are the
 * ones whose replies may have been lost on the way (the server's own limits,
 * concurrency and maxQueued, bound the running ones). Calls are filed by client
 * (peer and client id), then by counter: numbers make cheaper keys than strings,
 * and consecutive requests from one client skip the outer lookup.
 */
export class ResultCache {
  private readonly clients = new Map<string, CachedClient>()
  private last: CachedClient | null = null
  /** Finished calls remembered (done or lost). */
  private count = 0
  /** Running calls remembered. */
  private runningCount = 0
  private bytes = 0
  // The ring: positions head..tail-1 (ever increasing), each at slot `pos & mask`.
  private head = 0
  private tail = 0
  private mask = FIRST_SLOTS - 1
  private counters = new Float64Array(FIRST_SLOTS)
  private owners: Array<CachedClient | undefined> = new Array<CachedClient | undefined>(FIRST_SLOTS).fill(undefined)
  private states = new Uint8Array(FIRST_SLOTS)
  private replies: Array<Uint8Array | null> = new Array<Uint8Array | null>(FIRST_SLOTS).fill(null)
  private lengths = new Int32Array(FIRST_SLOTS)
  private runs: Array<RunningCall | undefined> = new Array<RunningCall | undefined>(FIRST_SLOTS).fill(undefined)
  /** Positions of the calls given a reply, in that order (some forgotten or dropped since). */
  private readonly held = new NumberFifo()

  constructor (private readonly maxEntries: number, private readonly maxBytes: number) {
    // The first call forgotten, maxEntries calls in, threw away the optimized start() and append() (see settle.ts).
    settleFields(this, 'head')
  }

  /** Calls remembered, running or finished. */
  get size (): number { return this.count + this.runningCount }
  /** Entries on the list of replies held (some may have been dropped since): for tests. */
  get heldListed (): number { return this.held.length }
  /** Slots in the ring: for tests. */
  get capacity (): number { return this.mask + 1 }

  /** The calls of the client that sent the request `data` from `from`. */
  private client (data: Uint8Array, from: string, create: boolean): CachedClient | undefined {
    const last = this.last
    if (last !== null && last.from === from && sameClientId(data, last.id)) return last
    let key = ''
    for (let i = HEADER_BYTES; i < HEADER_BYTES + CLIENT_ID_BYTES; i++) key += String.fromCharCode(data[i]!)
    key += from
    let client = this.clients.get(key)
    if (client === undefined) {
      if (!create) return undefined
      client = { key, from, id: data.slice(HEADER_BYTES, HEADER_BYTES + CLIENT_ID_BYTES), calls: new CounterTable() }
      this.clients.set(key, client)
    }
    this.last = client
    return client
  }

  /** The call of the request `data` from `from`, if it was seen before. */
  get (data: Uint8Array, from: string): CacheHit | undefined {
    const pos = this.client(data, from, false)?.calls.get(readCounter(data))
    if (pos === undefined) return undefined
    const i = pos & this.mask
    return { state: this.states[i] as CacheHit['state'], reply: this.replies[i] ?? null }
  }

  /** Remembers the request `data` from `from` (one get() did not know) as running. */
  start (data: Uint8Array, from: string): RunningCall {
    const client = this.client(data, from, true)!
    const counter = readCounter(data)
    const run: RunningCall = { pos: this.append(client, counter) }
    this.runs[run.pos & this.mask] = run
    client.calls.set(counter, run.pos)
    this.runningCount++
    return run
  }

  /** A started call has its reply: held for a resend, within the byte limit. */
  finish (run: RunningCall, reply: Uint8Array): void {
    const i = run.pos & this.mask
    if (this.runs[i] !== run) return
    this.runs[i] = undefined
    this.runningCount--
    this.count++
    if (reply.length > this.maxBytes) this.states[i] = LOST
    else this.hold(i, run.pos, reply)
    if (this.count > this.maxEntries) this.forgetOldest()
  }

  /** Keeps the reply of the call at slot `i` (position `pos`), dropping the oldest replies past the byte limit. */
  private hold (i: number, pos: number, reply: Uint8Array): void {
    this.states[i] = DONE
    this.replies[i] = reply
    this.lengths[i] = reply.length
    this.held.push(pos)
    this.bytes += reply.length
    while (this.bytes > this.maxBytes) {
      const oldest = this.held.shift()
      // Forgotten already (its bytes with it)?
      if (oldest < this.head) continue
      const j = oldest & this.mask
      if (this.replies[j] === null) continue
      this.bytes -= this.lengths[j]!
      this.replies[j] = null
      this.states[j] = LOST
    }
  }

  /** A new slot at the back of the ring for a running call; returns its position. */
  private append (client: CachedClient, counter: number): number {
    if (this.tail - this.head > this.mask) this.grow()
    const pos = this.tail++
    const i = pos & this.mask
    this.counters[i] = counter
    this.owners[i] = client
    this.states[i] = RUNNING
    this.replies[i] = null
    return pos
  }

  /**
   * Forgets finished calls from the front of the ring until their count is
   * within the limit: a running call there is moved to the back instead.
   */
  private forgetOldest (): void {
    for (let tries = this.tail - this.head; this.count > this.maxEntries && tries > 0; tries--) {
      const pos = this.head++
      const i = pos & this.mask
      const owner = this.owners[i]!
      this.owners[i] = undefined
      if (this.states[i] === RUNNING) {
        // The slot is left behind (the head is past it); the call goes on at the back.
        const run = this.runs[i]!
        this.runs[i] = undefined
        const counter = this.counters[i]!
        run.pos = this.append(owner, counter)
        this.runs[run.pos & this.mask] = run
        owner.calls.set(counter, run.pos)
        continue
      }
      owner.calls.delete(this.counters[i]!)
      this.count--
      if (this.replies[i] !== null) {
        this.bytes -= this.lengths[i]!
        this.replies[i] = null
      }
      if (owner.calls.size === 0) {
        this.clients.delete(owner.key)
        if (this.last === owner) this.last = null
      }
    }
    // Replies listed for the byte limit whose calls are forgotten now.
    while (this.held.length > 0 && this.held.peek() < this.head) this.held.shift()
  }

  /** Doubles the ring (it is full), keeping every position's slot. */
  private grow (): void {
    const n = (this.mask + 1) * 2
    const mask = n - 1
    const counters = new Float64Array(n)
    const owners = new Array<CachedClient | undefined>(n).fill(undefined)
    const states = new Uint8Array(n)
    const replies = new Array<Uint8Array | null>(n).fill(null)
    const lengths = new Int32Array(n)
    const runs = new Array<RunningCall | undefined>(n).fill(undefined)
    for (let pos = this.head; pos < this.tail; pos++) {
      const i = pos & this.mask
      const j = pos & mask
      counters[j] = this.counters[i]!
      owners[j] = this.owners[i]
      states[j] = this.states[i]!
      replies[j] = this.replies[i]!
      lengths[j] = this.lengths[i]!
      runs[j] = this.runs[i]
    }
    this.counters = counters
    this.owners = owners
    this.states = states
    this.replies = replies
    this.lengths = lengths
    this.runs = runs
    this.mask = mask
  }
}

function sameClientId (data: Uint8Array, id: Uint8Array): boolean {
  for (let i = 0; i < CLIENT_ID_BYTES; i++) if (data[HEADER_BYTES + i] !== id[i]) return false
  return true
}

interface KeyedEntry {
  state: typeof RUNNING | typeof DONE | typeof LOST
  reply: Uint8Array | null
}

/**
 * @internal Recent calls by a string key (caller and request id), with
 * ResultCache's rules: the oldest finished calls forgotten past `maxEntries`,
 * the oldest replies dropped past `maxBytes`, running calls remembered besides
 * and never forgotten. For the snakeMQ-format calls, which are few
 * next to RpcClient's and not on its fast path: a Map in arrival order.
 */
export class KeyedResultCache {
  private readonly entries = new Map<string, KeyedEntry>()
  private bytes = 0
  /** Entries of finished calls. */
  private finished = 0

  constructor (private readonly maxEntries: number, private readonly maxBytes: number) {}

  get size (): number { return this.entries.size }

  get (key: string): CacheHit | undefined {
    const e = this.entries.get(key)
    return e === undefined ? undefined : { state: e.state, reply: e.reply }
  }

  /** Remembers `key` (one get() did not know) as running. */
  start (key: string): void {
    this.entries.set(key, { state: RUNNING, reply: null })
  }

  /** A started call has its reply: held for a resend, within the byte limit. */
  finish (key: string, reply: Uint8Array): void {
    const entry = this.entries.get(key)
    if (entry === undefined || entry.state !== RUNNING) return
    this.finished++
    if (reply.length > this.maxBytes) {
      entry.state = LOST
    } else {
      entry.state = DONE
      entry.reply = reply
      this.bytes += reply.length
      for (const e of this.entries.values()) {
        if (this.bytes <= this.maxBytes) break
        if (e.reply === null || e === entry) continue
        this.bytes -= e.reply.length
        e.reply = null
        e.state = LOST
      }
    }
    if (this.finished <= this.maxEntries) return
    // The oldest finished calls go; a running one met on the way moves to the
    // back (so the next pass does not walk past it again), and stays.
    let tries = this.entries.size
    for (const [k, e] of this.entries) {
      if (this.finished <= this.maxEntries || tries-- === 0) break
      this.entries.delete(k)
      if (e.state === RUNNING) { this.entries.set(k, e); continue }
      this.finished--
      if (e.reply !== null) this.bytes -= e.reply.length
    }
  }
}
