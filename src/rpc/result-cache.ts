// The RPC server's memory of recent calls, so that a call its client resends
// (after a reconnect) is answered with its first outcome instead of being run a
// second time. Bounded by count (calls) and by bytes (the replies it holds).
import { CounterTable } from './counter-table.ts'
import { CLIENT_ID_BYTES, HEADER_BYTES, readCounter } from './wire.ts'

export const RUNNING = 0
export const DONE = 1
/** Done, but the reply was dropped to stay within the byte limit. */
export const LOST = 2

/** @internal One call the cache remembers. */
export interface CacheEntry {
  state: typeof RUNNING | typeof DONE | typeof LOST
  reply: Uint8Array | null
  /** The call counter of the request id. */
  readonly counter: number
  readonly client: CachedClient
}

/** The calls of one RpcClient instance (the first 8 bytes of request ids) of one peer. */
interface CachedClient {
  readonly key: string
  readonly from: string
  readonly id: Uint8Array
  readonly calls: CounterTable<CacheEntry>
}

/**
 * A first-in first-out queue on an array. (A Map is no queue: taking its first key
 * after many deletes at the front walks over every deleted slot, until V8 rehashes.)
 */
class Fifo<T> {
  private items: T[] = []
  private head = 0
  get length (): number { return this.items.length - this.head }
  /** The oldest item, left in place. */
  peek (): T | undefined { return this.head < this.items.length ? this.items[this.head] : undefined }
  push (item: T): void { this.items.push(item) }
  shift (): T | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head++]
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
}

/**
 * @internal Recent calls by request id and caller, bounded by count; the replies they hold
 * are bounded by bytes, oldest dropped first. Running calls are never forgotten,
 * so a resend can never start a second run. Calls are filed by client (peer and
 * client id), then by counter: numbers make cheaper keys than strings, and
 * consecutive requests from one client skip the outer lookup.
 */
export class ResultCache {
  private readonly clients = new Map<string, CachedClient>()
  private last: CachedClient | null = null
  private count = 0
  /** Entries, oldest first. */
  private readonly order = new Fifo<CacheEntry>()
  /** Entries that were given a reply, oldest first (some may have lost it since). */
  private readonly held = new Fifo<CacheEntry>()
  private bytes = 0

  constructor (private readonly maxEntries: number, private readonly maxBytes: number) {}

  get size (): number { return this.count }
  /** Entries on the list of replies held (some may have been dropped since): for tests. */
  get heldListed (): number { return this.held.length }

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

  get (data: Uint8Array, from: string): CacheEntry | undefined {
    return this.client(data, from, false)?.calls.get(readCounter(data))
  }

  start (data: Uint8Array, from: string): CacheEntry {
    const client = this.client(data, from, true)!
    const entry: CacheEntry = { state: RUNNING, reply: null, counter: readCounter(data), client }
    client.calls.set(entry.counter, entry)
    this.order.push(entry)
    this.count++
    for (let tries = this.order.length; this.count > this.maxEntries && tries > 0; tries--) {
      const old = this.order.shift()!
      if (old.state === RUNNING) {
        // Still running: it stays, and goes to the back of the line.
        this.order.push(old)
        continue
      }
      this.forget(old)
    }
    return entry
  }

  finish (entry: CacheEntry, reply: Uint8Array): void {
    if (reply.length > this.maxBytes || entry.client.calls.get(entry.counter) !== entry) {
      entry.state = LOST
      return
    }
    entry.state = DONE
    entry.reply = reply
    this.held.push(entry)
    this.bytes += reply.length
    while (this.bytes > this.maxBytes) {
      const old = this.held.shift()!
      if (old.reply === null) continue
      this.bytes -= old.reply.length
      old.reply = null
      old.state = LOST
    }
  }

  private forget (entry: CacheEntry): void {
    const client = entry.client
    client.calls.delete(entry.counter)
    this.count--
    if (entry.reply !== null) {
      this.bytes -= entry.reply.length
      entry.reply = null
    }
    // `held` is trimmed as entries leave (mostly from its front, as they came):
    // only going over the byte limit would take them off it otherwise, and under
    // the limit it would keep every call that ever had a reply.
    const held = this.held
    for (let e = held.peek(); e !== undefined && e.reply === null; e = held.peek()) held.shift()
    if (client.calls.size === 0) {
      this.clients.delete(client.key)
      if (this.last === client) this.last = null
    }
  }
}

function sameClientId (data: Uint8Array, id: Uint8Array): boolean {
  for (let i = 0; i < CLIENT_ID_BYTES; i++) if (data[HEADER_BYTES + i] !== id[i]) return false
  return true
}
