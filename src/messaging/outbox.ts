// The outbox of one peer: its outgoing messages in order (waiting to be sent,
// or sent and waiting for an acknowledgement), its counts for the limits, its
// TTL clock, and the session it is being sent on, which it wakes when there is
// something to send. The protocol (frames, acknowledgements on the wire) is the
// session's; what is queued, in flight, delivered or sent again is the outbox's.
//
// TTL follows snakeMQ: a message's TTL runs down only while its peer is
// disconnected. Each queue has an "offline clock" that advances only while the
// peer is disconnected; a message expires when that clock passes its `expiry`.
import type { PeerClock, StoredMessage } from '../store/types.ts'
import { fillUuid, sameUuid, uuidHex, uuidKey } from './uuid.ts'
import { allocUnsafe } from '../bytes.ts'
import { FLAG_UNACKED, frameMessageInPlace, MESSAGE_PACKET_HEAD, MESSAGE_UUID_OFFSET, messageDataAt, TTL_INFINITE } from '../transforms/frames.ts'
import { settleFields } from '../settle.ts'

/** Entry states. */
export const EntryState = {
  /** Waiting for the store to confirm a persistent write; not sent until then. */
  Storing: 0,
  /** Ready to send. */
  Queued: 1,
  /** Sent on the current connection, waiting for an acknowledgement. */
  Sent: 2,
  /** Delivered, dropped or failed; no longer in the queue. */
  Done: 3
} as const
export type EntryState = typeof EntryState[keyof typeof EntryState]

export interface DeliveryWaiter {
  resolve: () => void
  reject: (err: Error) => void
}

/** Data of at most this many bytes is copied into a slab next to its UUID; larger data is kept by reference. */
export const COPY_LIMIT = 1024
/** Bytes per slab. */
const SLAB_BYTES = 64 * 1024

/**
 * Where queued messages live: slabs filled in order, shared by every queue. Each
 * entry's message is there as the whole packet it goes out as (length header,
 * type, UUID, TTL, flags, and the data when it was copied), so a connection
 * writes a run of queued messages as one view of a slab, with nothing copied
 * but each TTL. An entry holds its slab and an offset instead of a Uint8Array of
 * its own, so a queued 16-byte message costs one small object and 45 slab
 * bytes, and the sender's buffer can be collected. A slab is freed once no entry
 * or pending write points into it; queues are FIFO, so slabs are freed roughly
 * in the order they were filled. A message sent again on a new connection gets
 * its TTL rewritten in place: should a write of it still be pending on the old
 * connection (one taken over while closing), that write carries the newer TTL,
 * which is all that changes.
 */
class Slabs {
  buf: Uint8Array = allocUnsafe(SLAB_BYTES)
  pos = 0
  /** Room for `n` bytes in `this.buf`; returns their offset. Entries are back to back, so one peer's run is one view. */
  reserve (n: number): number {
    if (this.pos + n > this.buf.length) {
      this.buf = allocUnsafe(Math.max(SLAB_BYTES, n))
      this.pos = 0
    }
    const at = this.pos
    this.pos = at + n
    return at
  }
}
const slabs = new Slabs()

/**
 * Reserves a slab packet for data of `size` bytes and returns the offset of its
 * UUID (in `slabs.buf`); data of at most COPY_LIMIT bytes has room after the header.
 */
function reservePacket (size: number): number {
  return slabs.reserve(size <= COPY_LIMIT ? MESSAGE_PACKET_HEAD + size : MESSAGE_PACKET_HEAD) + MESSAGE_UUID_OFFSET
}

/**
 * Frames the packet whose UUID is at `at`, and copies data of at most COPY_LIMIT
 * bytes into it; returns larger data, which is kept by reference, else null.
 */
function placeData (buf: Uint8Array, at: number, data: Uint8Array, flags: number): Uint8Array | null {
  const size = data.byteLength
  frameMessageInPlace(buf, at, size, flags)
  if (size > COPY_LIMIT) return data
  // set() even for a few bytes: V8's copy beats a loop of byte stores from 16 bytes up.
  buf.set(data, messageDataAt(at))
  return null
}

/** An expiry that never comes, as the Smi stored in QueueEntry.exp. */
const NEVER = -1

export class QueueEntry {
  state: EntryState = EntryState.Queued
  /** Resolved on delivery, rejected on drop, when someone asked to wait for it. */
  waiter: DeliveryWaiter | undefined = undefined
  /** The expiry, ms on the offline clock, or NEVER: a small integer, so no boxed double per entry. */
  private readonly exp: number

  constructor (
    /** Holds the whole packet (see Slabs): the UUID's 16 bytes at `at`, the data at messageDataAt(at) unless `big` holds it. */
    readonly buf: Uint8Array,
    readonly at: number,
    /** Bytes of message data. */
    readonly size: number,
    /** The data, when it was too big to copy into the slab; null otherwise. */
    private readonly big: Uint8Array | null,
    readonly seq: number,
    /** Offline-clock time (ms) at which it expires; Infinity if never. */
    expiry: number,
    readonly flags: number,
    /** True when the entry is mirrored in a durable store. */
    readonly stored: boolean
  ) {
    // Rounded up to whole ms: an entry never expires earlier than asked.
    this.exp = expiry === Infinity ? NEVER : Math.max(0, Math.ceil(expiry))
  }

  /**
   * A new entry for `data`. The UUID is `uuid`'s 16 bytes, or a new random one.
   * Data of at most COPY_LIMIT bytes is copied, so the caller's buffer is not held.
   */
  static create (data: Uint8Array, seq: number, expiry: number, flags: number, stored: boolean, uuid?: Uint8Array): QueueEntry {
    const at = reservePacket(data.byteLength)
    const buf = slabs.buf
    if (uuid === undefined) fillUuid(buf, at)
    else for (let i = 0; i < 16; i++) buf[at + i] = uuid[i]!
    return new QueueEntry(buf, at, data.byteLength, placeData(buf, at, data, flags), seq, expiry, flags, stored)
  }

  /** Offline-clock time (ms) at which it expires; Infinity if never. */
  get expiry (): number { return this.exp === NEVER ? Infinity : this.exp }

  /** True when the entry never expires. */
  get eternal (): boolean { return this.exp === NEVER }

  /** The message data (a view of the slab when it was copied there). */
  get data (): Uint8Array { return this.big ?? this.buf.subarray(messageDataAt(this.at), messageDataAt(this.at) + this.size) }

  /** The data when it is not in the slab, else null: then the whole packet is in `buf`, `packetStart` to `packetEnd`. */
  get external (): Uint8Array | null { return this.big }

  /** Where the packet starts in `buf`. */
  get packetStart (): number { return this.at - MESSAGE_UUID_OFFSET }

  /** Where the packet (or, for data not in the slab, its header) ends in `buf`. */
  get packetEnd (): number { return messageDataAt(this.at) + (this.big === null ? this.size : 0) }

  /** The UUID as 32 hex digits. */
  get uuid (): string { return uuidHex(this.buf, this.at) }

  /** The UUID's 16 bytes (a view of the slab). */
  get uuidBytes (): Uint8Array { return this.buf.subarray(this.at, this.at + 16) }
}

/**
 * Removes the first `n` items of `items` in place. The queues' arrays are
 * compacted this way rather than replaced: V8 takes a field that has only ever
 * held one value for a constant, and the first store of a new array into it
 * (thousands of messages into a run) threw away the optimized code of every
 * function that had read it, send() among them, to be compiled again.
 */
function dropFront<T> (items: T[], n: number): void {
  // A builtin, quick from the first call: a loop copying thousands of entries ran interpreted early in a run.
  items.splice(0, n)
}

// An entry's state changes for the first time when the first batch is written,
// and that first change discarded the optimized code that had taken the field for
// a constant (the queue's push() among it; see settle.ts). Entries are made per
// message, so one made as the module loads settles the class's fields instead.
settleFields(QueueEntry.create(allocUnsafe(0), -1, Infinity, 0, false), 'state', 'waiter')

/**
 * Entries sent on the current connection and not yet acknowledged, in the order
 * they were sent. Acknowledgements mostly come back in that order, so each is
 * first compared with the oldest entry, byte for byte; only when one does not
 * match is an index by UUID built, and then kept up until nothing is in flight.
 */
export class Unacked {
  private items: QueueEntry[] = []
  private head = 0
  private index: Map<string, QueueEntry> | null = null
  /** Entries in flight, and their data bytes. */
  size = 0
  bytes = 0

  add (e: QueueEntry): void {
    this.items.push(e)
    this.size++
    this.bytes += e.size
    this.index?.set(uuidKey(e.buf, e.at), e)
  }

  /** The entry in flight whose UUID is the 16 bytes at `at` of `bytes`, if any. */
  find (bytes: Uint8Array, at: number): QueueEntry | undefined {
    const items = this.items
    while (this.head < items.length && items[this.head]!.state !== EntryState.Sent) this.head++
    const first = items[this.head]
    if (first === undefined) return undefined
    if (sameUuid(first.buf, first.at, bytes, at)) return first
    if (this.index === null) {
      this.index = new Map()
      for (let i = this.head; i < items.length; i++) {
        const e = items[i]!
        if (e.state === EntryState.Sent) this.index.set(uuidKey(e.buf, e.at), e)
      }
    }
    return this.index.get(uuidKey(bytes, at))
  }

  /** `e` (in flight) is no longer: acknowledged, dropped, or sent back to the queue. */
  delete (e: QueueEntry): void {
    this.size--
    this.bytes -= e.size
    this.index?.delete(uuidKey(e.buf, e.at))
    if (this.size === 0) {
      this.clear()
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      dropFront(this.items, this.head)
      this.head = 0
    }
  }

  /** The entries in flight, oldest first. */
  * values (): Generator<QueueEntry> {
    for (let i = this.head; i < this.items.length; i++) {
      const e = this.items[i]!
      if (e.state === EntryState.Sent) yield e
    }
  }

  clear (): void {
    // Emptied in place: one request/reply at a time empties it on every call.
    this.items.length = 0
    this.head = 0
    this.index = null
    this.size = 0
    this.bytes = 0
  }
}

/** How soon what an outbox woke its reader for is to be written (OutboxReader.wake). */
export type Wake = typeof WAKE_TURN | typeof WAKE_PROMPT | typeof WAKE_NOW
/** At the end of the event loop's turn, with whatever else comes meanwhile: messages come in runs. */
export const WAKE_TURN = 0
/** An RPC call or reply, which someone waits for: on a microtask if the connection has nothing in flight. */
export const WAKE_PROMPT = 1
/** Enough to fill a write: at once. */
export const WAKE_NOW = 2

/** What an outbox wakes when it has something to send: the session of the connection its peer is on. */
export interface OutboxReader {
  /** There is something to send, to be written as `when` says. */
  wake (when: Wake): void
}

/** What an outbox asks of its owner. */
export interface OutboxHost {
  /** `entry` reached its peer (acknowledged, or written to a peer that does not acknowledge): finish it. */
  delivered (outbox: Outbox, entry: QueueEntry): void
  /** Up to `limit` of this peer's stored messages from `fromSeq` on, in seq order (paging a backlog in). */
  readStored (outbox: Outbox, fromSeq: number, limit: number): Promise<StoredMessage[]>
  /** Paging in found these entries expired: drop them (they are in the outbox, Queued). */
  expiredOnRead (outbox: Outbox, entries: readonly QueueEntry[]): void
  /** Reading the store failed: say so (the backlog stays where it is, to be read again). */
  readFailed (outbox: Outbox, error: unknown): void
  /** These entries (Queued) are larger than the connected peer accepts: drop them. */
  tooLarge (outbox: Outbox, entries: readonly QueueEntry[]): void
}

/**
 * How much of a persistent backlog stays in memory: past `messages` (or
 * `bytes` of data) queued entries not in flight, new persistent messages stay
 * only in the store, and are read back in batches of half the window once fewer
 * than a quarter of it wait in memory.
 */
export interface PagingWindow {
  messages: number
  bytes: number
}

/**
 * Stored messages of a peer that are not in memory: `count` of them (and
 * `bytes` of data), with seqs from `from` up to, not including, `end`
 * (Infinity while new persistent messages still join it).
 */
export interface PagedRange {
  from: number
  end: number
  count: number
  bytes: number
  /** None of them expires before this (ms on the offline clock); -Infinity: unknown. */
  minExpiry: number
}

/** Counts over every outbox of one Messaging. */
export class QueueTotals {
  constructor (readonly window: PagingWindow = { messages: 4096, bytes: 4 * 1024 * 1024 }) {}
  /** Messages queued (not yet delivered or dropped), and their data bytes. */
  count = 0
  bytes = 0
  /** Called when `count` comes down to 0 (Messaging.drain waits on it). */
  onEmpty: (() => void) | null = null
}

/** A peer's counters for Messaging.stats(). */
export interface PeerCounters {
  /** Messages written to the peer (resends count again). */
  sent: number
  /** Messages from the peer handed to the application. */
  received: number
  /** Bytes on the wire of its connections that ended (the live one's are read from it). */
  bytesOut: number
  bytesIn: number
  /** Times it connected. */
  connects: number
}

/** Unsent bytes past which a new message makes the session write at once. */
const FLUSH_NOW_BYTES = 64 * 1024

export class Outbox {
  /** The entries in memory before the paged range (all of them when there is none), in seq order; before `head` and Done ones are gone. */
  private items: QueueEntry[] = []
  private head = 0
  /** Index of the next entry to send. */
  private cursor = 0
  /** Entries after the paged range, in seq order, while there is one; from `afterHead` on. */
  private after: QueueEntry[] = []
  private afterHead = 0
  /** What of the backlog is only in the store. */
  range: PagedRange | null = null
  /** A read of the store (paging in, or looking for expired messages) is under way. */
  private reading: Promise<void> | null = null
  /** Messages moved into a range so far: a read that saw none join knows the store gave it all there was. */
  private absorbedTotal = 0
  /** pageIn() was asked for while another read was under way. */
  private pageInNext = false
  /** Sent, not yet acknowledged. */
  readonly unacked = new Unacked()
  /** Queued messages (in memory and paged out), and their data bytes. */
  count = 0
  bytes = 0
  /** Of those, the ones no store holds: what the queue limits bound. */
  volatileCount = 0
  volatileBytes = 0
  nextSeq = 0
  clock: PeerClock
  /** The minExpiry last written with this peer's clock (see PeerClock). */
  savedMinExpiry = Infinity
  /** Senders waiting for room. */
  readonly roomWaiters = new Set<() => void>()
  /** When (Date.now()) an acknowledgement last took messages out of flight on the current connection, or it came up. */
  lastAckAt = 0
  /** Senders waiting for the connection to catch up (see Messaging.send). */
  private paceWaiters: Array<() => void> = []
  /** The session this peer's messages go out on while it is connected. */
  private reader: OutboxReader | null = null
  /** What stats() reports. */
  readonly counters: PeerCounters = { sent: 0, received: 0, bytesOut: 0, bytesIn: 0, connects: 0 }

  constructor (readonly peer: string, now: number, private readonly host: OutboxHost, private readonly totals: QueueTotals) {
    this.clock = { offline: 0, since: now, connected: false }
    // The first compaction, thousands of messages in, threw away take() (see settle.ts).
    settleFields(this, 'head', 'cursor')
  }

  /** The offline clock's reading at wall time `now`. */
  offlineAt (now: number): number {
    return this.clock.connected ? this.clock.offline : this.clock.offline + (now - this.clock.since)
  }

  get connected (): boolean { return this.clock.connected }

  /** Live entries not in flight: waiting to be sent (or, to a plain snakeMQ peer, to be written). */
  get unsent (): number { return this.count - this.unacked.size }

  /** Data bytes of the unsent entries. */
  get unsentBytes (): number { return this.bytes - this.unacked.bytes }

  /** Messages sent on the current connection and waiting for their acknowledgement. */
  get inFlight (): number { return this.unacked.size }

  /** Starts sending on `reader`'s connection (the peer connected), from the oldest entry. */
  attach (reader: OutboxReader): void {
    this.reader = reader
    this.lastAckAt = Date.now()
    this.rewind()
    if (this.hasSendable) reader.wake(WAKE_TURN)
    else this.pageIn()
  }

  /** The connection `reader` sends on is gone: what was in flight is sent again on the next one, in order. */
  detach (reader: OutboxReader): void {
    if (this.reader !== reader) return
    this.reader = null
    this.rewind()
    this.wakePaced()
  }

  /** Resolves at the next wakePaced(), or after `within` ms if that comes first. */
  paced (within = Infinity): Promise<void> {
    return new Promise((resolve) => {
      if (within === Infinity) { this.paceWaiters.push(resolve); return }
      const timer = setTimeout(resolve, within)
      this.paceWaiters.push(() => { clearTimeout(timer); resolve() })
    })
  }

  /** Wakes the senders waiting in paced(): entries were taken to be sent, or the peer went away. */
  wakePaced (): void {
    if (this.paceWaiters.length === 0) return
    const ws = this.paceWaiters
    this.paceWaiters = []
    for (const w of ws) w()
  }

  /**
   * Queues a new message with a fresh UUID (not stored) and returns that UUID as
   * hex: the common send, with one object made for it. Data of at most COPY_LIMIT
   * bytes is copied, so the caller's buffer is not held.
   */
  add (data: Uint8Array, expiry: number, flags: number): string {
    const size = data.byteLength
    const at = reservePacket(size)
    const buf = slabs.buf
    const uuid = fillUuid(buf, at)
    this.push(new QueueEntry(buf, at, size, placeData(buf, at, data, flags), this.nextSeq++, expiry, flags, false))
    return uuid
  }

  /**
   * add() for RPC's requests and replies: no string is made for the UUID, and a
   * lone one is written promptly (WAKE_PROMPT), as its caller waits for it.
   * Returns the entry, for Messaging.withdraw().
   */
  post (data: Uint8Array, expiry: number, flags: number): QueueEntry {
    const size = data.byteLength
    const at = reservePacket(size)
    const buf = slabs.buf
    fillUuid(buf, at, false)
    const entry = new QueueEntry(buf, at, size, placeData(buf, at, data, flags), this.nextSeq++, expiry, flags, false)
    this.push(entry, WAKE_PROMPT)
    return entry
  }

  /**
   * Queues an entry (made with QueueEntry.create) after the others. A stored
   * one (state Storing) arriving while the in-memory window is full starts, or
   * joins, the paged range once its write is done (see ready()). `when`: how
   * soon it is to be written (WAKE_NOW anyway once a write's worth is queued).
   */
  push (entry: QueueEntry, when: Wake = WAKE_TURN): void {
    this.count++
    this.bytes += entry.size
    if (!entry.stored) { this.volatileCount++; this.volatileBytes += entry.size }
    this.totals.count++
    this.totals.bytes += entry.size
    if (this.range !== null) {
      this.after.push(entry)
      // Something that cannot be paged out ends the range before the first entry still in memory: what follows stays there.
      if (!entry.stored && this.range.end === Infinity) this.closeRange(this.after[this.afterHead]!.seq)
      return
    }
    if (entry.stored && this.windowFull()) {
      this.range = { from: entry.seq, end: Infinity, count: 0, bytes: 0, minExpiry: Infinity }
      this.after.push(entry)
      return
    }
    this.items.push(entry)
    const r = this.reader
    if (r !== null && entry.state === EntryState.Queued) r.wake(this.bytes - this.unacked.bytes >= FLUSH_NOW_BYTES ? WAKE_NOW : when)
  }

  /** More entries wait in memory, not in flight, than the window holds. */
  private windowFull (): boolean {
    const waiting = this.count - this.unacked.size
    const w = this.totals.window
    return waiting >= w.messages || this.bytes - this.unacked.bytes >= w.bytes
  }

  /** A stored entry's write is done: it may be sent, or (behind a paged range) it leaves memory for the range. */
  ready (entry: QueueEntry): void {
    if (entry.state !== EntryState.Storing) return
    entry.state = EntryState.Queued
    if (this.range !== null) {
      this.absorb()
      // Connected, with little left in memory: read the backlog in (the new message with it).
      if (this.reader !== null && this.range !== null && !this.hasSendable) this.pageIn()
      return
    }
    this.reader?.wake(WAKE_TURN)
  }

  /**
   * Moves the stored, written entries at the head of `after` into the range
   * (they live on in the store only), as long as the range is open.
   */
  private absorb (): void {
    const range = this.range!
    const after = this.after
    while (range.end === Infinity && this.afterHead < after.length) {
      const e = after[this.afterHead]!
      if (e.state === EntryState.Done) { this.afterHead++; continue }
      // Still being written, or someone waits for its delivery: it stays in memory, and so does what follows.
      if (e.state !== EntryState.Queued || !e.stored || e.waiter !== undefined) break
      after[this.afterHead++] = undefined as unknown as QueueEntry
      range.count++
      range.bytes += e.size
      this.absorbedTotal++
      if (e.expiry < range.minExpiry) range.minExpiry = e.expiry
    }
    if (this.afterHead === after.length) { this.after = []; this.afterHead = 0 }
    // One that will never join (someone waits for its delivery) ends the range; one still being written will join.
    const next = this.after[this.afterHead]
    if (range.end === Infinity && next !== undefined && (!next.stored || next.waiter !== undefined)) this.closeRange(next.seq)
  }

  /** Nothing more joins the range: it ends before `seq`. */
  private closeRange (seq: number): void {
    const range = this.range!
    range.end = seq
    if (range.count === 0) this.dissolveRange()
  }

  /** The range is read in completely: what waited behind it joins the window. */
  private dissolveRange (): void {
    this.range = null
    for (let i = this.afterHead; i < this.after.length; i++) {
      const e = this.after[i]!
      if (e.state !== EntryState.Done) this.items.push(e)
    }
    this.after = []
    this.afterHead = 0
    if (this.hasSendable) this.reader?.wake(WAKE_TURN)
  }

  /** Marks an entry Done and updates the counts; the slot is reclaimed lazily. */
  finish (entry: QueueEntry): void {
    if (entry.state === EntryState.Done) return
    if (entry.state === EntryState.Sent) this.unacked.delete(entry)
    entry.state = EntryState.Done
    this.count--
    this.bytes -= entry.size
    if (!entry.stored) { this.volatileCount--; this.volatileBytes -= entry.size }
    const totals = this.totals
    totals.count--
    totals.bytes -= entry.size
    if (totals.count === 0) totals.onEmpty?.()
    if (this.roomWaiters.size > 0) {
      for (const w of this.roomWaiters) w()
      this.roomWaiters.clear()
    }
    this.compact()
  }

  /** Paged-out messages leave the queue without coming back into memory (found expired while the range was read). */
  dropPaged (count: number, bytes: number): void {
    const range = this.range
    if (range === null) return
    range.count -= count
    range.bytes -= bytes
    this.dropPagedCounts(count, bytes)
    if (range.count <= 0 && range.end !== Infinity) this.dissolveRange()
  }

  private dropPagedCounts (count: number, bytes: number): void {
    this.count -= count
    this.bytes -= bytes
    const totals = this.totals
    totals.count -= count
    totals.bytes -= bytes
    if (totals.count === 0) totals.onEmpty?.()
    if (this.roomWaiters.size > 0) {
      for (const w of this.roomWaiters) w()
      this.roomWaiters.clear()
    }
  }

  /** Counts a backlog found in the store at start (see Messaging's load): all of it paged out, to be read in as needed. */
  restore (count: number, bytes: number, nextSeq: number, minExpiry: number): void {
    this.nextSeq = Math.max(this.nextSeq, nextSeq)
    if (count === 0) return
    this.range = { from: 0, end: Infinity, count, bytes, minExpiry }
    this.count += count
    this.bytes += bytes
    this.totals.count += count
    this.totals.bytes += bytes
  }

  /** Drops leading Done entries; shrinks the array now and then (in place: see dropFront). */
  private compact (): void {
    const items = this.items
    while (this.head < items.length && items[this.head]!.state === EntryState.Done) this.head++
    if (this.cursor < this.head) this.cursor = this.head
    if (this.head === items.length) {
      items.length = 0
      this.head = 0
      this.cursor = 0
    } else if (this.head > 1024 && this.head * 2 > items.length) {
      dropFront(items, this.head)
      this.cursor -= this.head
      this.head = 0
    }
  }

  /**
   * Takes entries ready to send, in order, up to the limits. Stops at an entry
   * still being stored, so persistent and transient messages keep their order,
   * and at the paged range, which is read back in (the reader is woken when it is).
   * The caller writes them, then reports them with sent().
   */
  take (maxCount: number, maxBytes: number, out: QueueEntry[], maxSize = Infinity): void {
    const items = this.items
    let bytes = 0
    let i = this.cursor
    let tooLarge: QueueEntry[] | null = null
    for (; i < items.length && out.length < maxCount && bytes < maxBytes; i++) {
      const e = items[i]!
      if (e.state === EntryState.Done || e.state === EntryState.Sent) continue
      if (e.state === EntryState.Storing) break
      if (e.size > maxSize) { (tooLarge ??= []).push(e); continue }
      out.push(e)
      bytes += e.size
    }
    this.cursor = i
    // Dropped after the loop: finishing an entry may compact the list being walked.
    if (tooLarge !== null) this.host.tooLarge(this, tooLarge)
    // Senders pacing themselves to this connection may go on (they run once these are on their way).
    if (out.length > 0) this.wakePaced()
    if (this.range !== null && items.length - i < this.pageLow) this.pageIn()
  }

  /** Reads the next batch of the paged range into memory, unless a read is under way. */
  pageIn (): void {
    const range = this.range
    if (range === null) return
    // Another read is under way: this one follows it.
    if (this.reading !== null) { this.pageInNext = true; return }
    if (range.count === 0) {
      // Nothing stored behind the window yet: the entries waiting to be written join it once they are.
      if (range.end !== Infinity) this.dissolveRange()
      return
    }
    const from = range.from
    const absorbed = this.absorbedTotal
    this.reading = this.host.readStored(this, from, this.pageRead).then((messages) => {
      this.reading = null
      if (this.range === range) this.placeRead(range, messages, absorbed === this.absorbedTotal)
      this.readDone()
    }, (err: unknown) => {
      this.reading = null
      this.host.readFailed(this, err)
    })
  }

  /**
   * What a read of the range gave: in memory now, the expired ones handed to the
   * host to drop. `complete`: nothing joined the range while it was read, so a
   * short read means the store holds no more of it.
   */
  private placeRead (range: PagedRange, messages: readonly StoredMessage[], complete: boolean): void {
    const expired: QueueEntry[] = []
    const offline = this.offlineAt(Date.now())
    let last = range.from - 1
    let reachedEnd = false
    for (const m of messages) {
      if (m.seq < range.from) continue
      if (m.seq >= range.end) { reachedEnd = true; break }
      last = m.seq
      const e = QueueEntry.create(m.data, m.seq, m.expiry, m.flags, true, m.uuid)
      range.count--
      range.bytes -= e.size
      this.items.push(e)
      if (e.expiry <= offline) expired.push(e)
    }
    // The store gave less than the range counted: the rest is not there (it was read as far as it goes).
    const exhausted = complete && (reachedEnd || messages.length < this.pageRead || last + 1 >= range.end)
    range.from = last + 1
    if (exhausted && range.count > 0) {
      this.host.readFailed(this, new Error(`the store holds ${range.count} fewer messages for ${JSON.stringify(this.peer)} than were counted`))
      const n = range.count
      range.count = 0
      this.dropPagedCounts(n, range.bytes)
      range.bytes = 0
    }
    if (range.count <= 0) {
      if (range.end !== Infinity) this.dissolveRange()
      else { range.count = 0; range.bytes = 0; range.minExpiry = Infinity; this.absorb() }
    }
    if (expired.length > 0) this.host.expiredOnRead(this, expired)
    if (this.hasSendable) this.reader?.wake(WAKE_TURN)
    // Nothing of it to send after all (expired, or it joined the range during the read): read on.
    else if (this.reader !== null && this.range !== null && this.range.count > 0) this.pageInNext = true
  }

  /**
   * The entries take() gave were written. `acknowledged`: the connection
   * acknowledges messages, so those that want it wait in flight; the others (a
   * plain snakeMQ peer's, FLAG_UNACKED ones) count as delivered now.
   */
  sent (entries: readonly QueueEntry[], acknowledged: boolean): void {
    this.counters.sent += entries.length
    for (const e of entries) {
      if (e.state !== EntryState.Queued) continue
      if (acknowledged && (e.flags & FLAG_UNACKED) === 0) {
        e.state = EntryState.Sent
        this.unacked.add(e)
      } else {
        this.host.delivered(this, e)
      }
    }
  }

  /** An ACK frame: the 16-byte UUIDs in `packet[at..end)`. Returns true when room opened in the window. */
  acked (packet: Uint8Array, at: number, end: number): boolean {
    const unacked = this.unacked
    const before = unacked.size
    for (let i = at; i < end; i += 16) {
      const e = unacked.find(packet, i)
      if (e !== undefined) this.host.delivered(this, e)
    }
    if (unacked.size >= before) return false
    this.lastAckAt = Date.now()
    return true
  }

  /** Messages read from the store at a time. */
  private get pageRead (): number { return Math.max(1, Math.floor(this.totals.window.messages / 2)) }
  /** Fewer than this waiting in memory, and the next batch is read. */
  private get pageLow (): number { return Math.max(1, Math.floor(this.totals.window.messages / 4)) }

  /** Whether take() would return anything. */
  get hasSendable (): boolean {
    const items = this.items
    for (let i = this.cursor; i < items.length; i++) {
      const s = items[i]!.state
      if (s === EntryState.Queued) return true
      if (s === EntryState.Storing) return false
    }
    return false
  }

  /** Everything sent but unacknowledged goes back to be sent again, in order. */
  rewind (): void {
    for (const e of this.unacked.values()) if (e.state === EntryState.Sent) e.state = EntryState.Queued
    this.unacked.clear()
    this.cursor = this.head
  }

  /** Live entries in memory, in order (not the paged range). */
  * entries (): Generator<QueueEntry> {
    for (let i = this.head; i < this.items.length; i++) {
      const e = this.items[i]!
      if (e.state !== EntryState.Done) yield e
    }
    for (let i = this.afterHead; i < this.after.length; i++) {
      const e = this.after[i]!
      if (e.state !== EntryState.Done) yield e
    }
  }

  /** Earliest expiry among live entries, the paged range included (Infinity if none expires; -Infinity if unknown). */
  earliestExpiry (): number {
    let min = this.range?.minExpiry ?? Infinity
    for (const e of this.entries()) if (e.expiry < min) min = e.expiry
    return min
  }

  /** Earliest expiry among stored messages: what is written with the clock (see PeerClock.minExpiry). */
  storedMinExpiry (): number {
    let min = this.range?.minExpiry ?? Infinity
    for (const e of this.entries()) if (e.stored && e.expiry < min) min = e.expiry
    return min
  }

  /** Live entries in memory whose expiry is at or before `offline`. */
  expired (offline: number): QueueEntry[] {
    const out: QueueEntry[] = []
    for (const e of this.entries()) if (e.expiry <= offline) out.push(e)
    return out
  }

  /**
   * Reads the whole paged range (in batches, so memory stays bounded) for
   * messages expired at `offline`, giving each batch's expired ones to `drop`
   * (which deletes them from the store before it resolves) and recording the
   * lowest expiry of the rest.
   * Stops when the peer connects (its messages are then read to be sent).
   */
  async scanRange (offline: number, drop: (messages: readonly StoredMessage[]) => Promise<void> | void): Promise<void> {
    while (this.reading !== null) await this.reading
    const range = this.range
    if (range === null || range.count === 0) return
    let done!: () => void
    this.reading = new Promise<void>((resolve) => { done = resolve })
    try {
      let from = range.from
      let min = Infinity
      for (;;) {
        if (this.connected || this.range !== range) return
        const batch = await this.host.readStored(this, from, this.pageRead)
        const gone: StoredMessage[] = []
        let bytes = 0
        // A message past the range's end (one stored after it): the range has been read to its end.
        let pastEnd = false
        for (const m of batch) {
          if (m.seq >= range.end) { pastEnd = true; break }
          from = m.seq + 1
          if (m.expiry <= offline) { gone.push(m); bytes += m.data.byteLength } else if (m.expiry < min) min = m.expiry
        }
        if (gone.length > 0) {
          // Deleted before the next read, which must not see them again.
          await drop(gone)
          this.dropPaged(gone.length, bytes)
          if (this.range !== range) return
        }
        if (pastEnd || batch.length < this.pageRead || from >= range.end) break
      }
      range.minExpiry = min
    } catch (err) {
      this.host.readFailed(this, err)
      // Looked for again in a minute rather than at once.
      if (range.minExpiry <= offline) range.minExpiry = offline + 60_000
    } finally {
      this.reading = null
      done()
      this.readDone()
    }
  }

  /** A read finished: one asked for meanwhile goes now. */
  private readDone (): void {
    if (!this.pageInNext) return
    this.pageInNext = false
    this.pageIn()
  }

  /** Whole seconds of TTL left for `e` now, as they go on the wire. */
  wireTtl (e: QueueEntry): number {
    if (e.eternal) return TTL_INFINITE
    // While connected the offline clock stands still: no need to read the time.
    const offline = this.clock.connected ? this.clock.offline : this.offlineAt(Date.now())
    const left = Math.floor((e.expiry - offline) / 1000)
    return left <= 0 ? 0 : Math.min(left, TTL_INFINITE - 1)
  }
}
