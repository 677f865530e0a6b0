// The outgoing queue of one peer: FIFO of messages waiting to be sent or to be
// acknowledged, its limits, and its TTL clock.
//
// TTL follows snakeMQ: a message's TTL runs down only while its peer is
// disconnected. Each queue has an "offline clock" that advances only while the
// peer is disconnected; a message expires when that clock passes its `expiry`.
import type { PeerClock } from '../store/types.ts'

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

export class QueueEntry {
  state: EntryState = EntryState.Queued
  /** Resolved on delivery, rejected on drop, when someone asked to wait for it. */
  waiter: DeliveryWaiter | undefined = undefined
  constructor (
    readonly uuid: string,
    readonly seq: number,
    readonly data: Uint8Array,
    /** Offline-clock time (ms) at which it expires; Infinity if never. */
    readonly expiry: number,
    readonly flags: number,
    /** True when the entry is mirrored in a durable store. */
    readonly stored: boolean
  ) {}
}

export class PeerQueue {
  /** Entries in send order; entries before `head` and Done entries are gone. */
  private items: QueueEntry[] = []
  private head = 0
  /** Index of the next entry to send. */
  private cursor = 0
  /** Sent, not yet acknowledged, by UUID. */
  readonly unacked = new Map<string, QueueEntry>()
  /** Live (not Done) entries and their data bytes. */
  count = 0
  bytes = 0
  nextSeq = 0
  clock: PeerClock
  /** Senders waiting for room. */
  readonly roomWaiters = new Set<() => void>()

  constructor (readonly peer: string, now: number) {
    this.clock = { offline: 0, since: now, connected: false }
  }

  /** The offline clock's reading at wall time `now`. */
  offlineAt (now: number): number {
    return this.clock.connected ? this.clock.offline : this.clock.offline + (now - this.clock.since)
  }

  get connected (): boolean { return this.clock.connected }

  push (entry: QueueEntry): void {
    this.items.push(entry)
    this.count++
    this.bytes += entry.data.byteLength
  }

  /** Marks an entry Done and updates the counts; the slot is reclaimed lazily. */
  finish (entry: QueueEntry): void {
    if (entry.state === EntryState.Done) return
    if (entry.state === EntryState.Sent) this.unacked.delete(entry.uuid)
    entry.state = EntryState.Done
    this.count--
    this.bytes -= entry.data.byteLength
    if (this.roomWaiters.size > 0) {
      for (const w of this.roomWaiters) w()
      this.roomWaiters.clear()
    }
    this.compact()
  }

  /** Drops leading Done entries; shrinks the array now and then. */
  private compact (): void {
    const items = this.items
    while (this.head < items.length && items[this.head]!.state === EntryState.Done) this.head++
    if (this.cursor < this.head) this.cursor = this.head
    if (this.head === items.length) {
      this.items = []
      this.head = 0
      this.cursor = 0
    } else if (this.head > 1024 && this.head * 2 > items.length) {
      this.items = items.slice(this.head)
      this.cursor -= this.head
      this.head = 0
    }
  }

  /**
   * Takes entries ready to send, in order, up to the limits. Stops at an entry
   * still being stored, so persistent and transient messages keep their order.
   */
  take (maxCount: number, maxBytes: number, out: QueueEntry[]): void {
    const items = this.items
    let bytes = 0
    let i = this.cursor
    for (; i < items.length && out.length < maxCount && bytes < maxBytes; i++) {
      const e = items[i]!
      if (e.state === EntryState.Done || e.state === EntryState.Sent) continue
      if (e.state === EntryState.Storing) break
      out.push(e)
      bytes += e.data.byteLength
    }
    this.cursor = i
  }

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

  /** The connection ended: everything sent but unacknowledged goes back to be sent again, in order. */
  rewind (): void {
    for (const e of this.unacked.values()) if (e.state === EntryState.Sent) e.state = EntryState.Queued
    this.unacked.clear()
    this.cursor = this.head
  }

  /** Live entries, in order. */
  * entries (): Generator<QueueEntry> {
    for (let i = this.head; i < this.items.length; i++) {
      const e = this.items[i]!
      if (e.state !== EntryState.Done) yield e
    }
  }

  /** Earliest expiry among live entries (Infinity if none expires). */
  earliestExpiry (): number {
    let min = Infinity
    for (const e of this.entries()) if (e.expiry < min) min = e.expiry
    return min
  }

  /** Live entries whose expiry is at or before `offline`. */
  expired (offline: number): QueueEntry[] {
    const out: QueueEntry[] = []
    for (const e of this.entries()) if (e.expiry <= offline) out.push(e)
    return out
  }
}
