// The in-memory queue store: the default when no directory is given, and the
// reference the LevelDB store is tested against. Same contract as LevelStore
// (batches validated whole, then applied atomically in call order; what was
// written is a copy, not the caller's buffers), except that nothing survives the
// process, and that it checks what LevelStore cannot check without reading: that
// a put is a new message and a delete names a stored one.
import { ClosedError, InvalidArgumentError, StoreError, StoreInUseError } from '../errors.ts'
import type { PeerClock, QueueStore, QueueSummary, StoreBatch, StoreContents, StoredMessage, StoredRef, StoreSummary } from './types.ts'

/** Bytes in a message UUID. */
export const UUID_LENGTH = 16

/**
 * Throws InvalidArgumentError naming the first thing in `batch` that no store could
 * persist faithfully. Both stores check a whole batch before applying any of it,
 * so a bad batch changes nothing.
 */
export function checkBatch (batch: StoreBatch): void {
  if (typeof batch !== 'object' || batch === null) throw new InvalidArgumentError('a store batch must be an object')
  for (const m of batch.put ?? []) {
    checkRef(m.peer, m.seq)
    if (!(m.uuid instanceof Uint8Array) || m.uuid.byteLength !== UUID_LENGTH) {
      throw new InvalidArgumentError(`message ${m.seq} to ${JSON.stringify(m.peer)}: uuid must be ${UUID_LENGTH} bytes`)
    }
    if (typeof m.expiry !== 'number' || Number.isNaN(m.expiry)) {
      throw new InvalidArgumentError(`message ${m.seq} to ${JSON.stringify(m.peer)}: expiry must be a number or Infinity`)
    }
    if (!Number.isInteger(m.flags) || m.flags < 0 || m.flags > 0xffffffff) {
      throw new InvalidArgumentError(`message ${m.seq} to ${JSON.stringify(m.peer)}: flags must be a 32-bit unsigned integer`)
    }
    if (!(m.data instanceof Uint8Array)) {
      throw new InvalidArgumentError(`message ${m.seq} to ${JSON.stringify(m.peer)}: data must be a Uint8Array`)
    }
  }
  for (const r of batch.del ?? []) {
    checkRef(r.peer, r.seq)
    if (!Number.isSafeInteger(r.size) || r.size < 0) {
      throw new InvalidArgumentError(`deleting message ${r.seq} to ${JSON.stringify(r.peer)}: size must be its data's byte length, an integer >= 0`)
    }
  }
  for (const [peer, clock] of batch.clocks ?? []) {
    if (typeof peer !== 'string') throw new InvalidArgumentError('a clock\'s peer must be a string')
    if (typeof clock !== 'object' || clock === null ||
        typeof clock.offline !== 'number' || Number.isNaN(clock.offline) ||
        typeof clock.since !== 'number' || Number.isNaN(clock.since) ||
        typeof clock.connected !== 'boolean' ||
        (clock.minExpiry !== undefined && (typeof clock.minExpiry !== 'number' || Number.isNaN(clock.minExpiry)))) {
      throw new InvalidArgumentError(`the clock of ${JSON.stringify(peer)} must have numeric offline and since and a boolean connected`)
    }
  }
}

function checkRef (peer: unknown, seq: unknown): void {
  if (typeof peer !== 'string') throw new InvalidArgumentError('a stored message\'s peer must be a string')
  if (!Number.isSafeInteger(seq) || (seq as number) < 0) {
    throw new InvalidArgumentError(`seq ${String(seq)} for ${JSON.stringify(peer)} is not a safe integer >= 0`)
  }
}

/** Throws InvalidArgumentError unless read()'s arguments make sense. */
export function checkRead (peer: unknown, fromSeq: unknown, limit: unknown): void {
  checkRef(peer, fromSeq)
  if (!Number.isSafeInteger(limit) || (limit as number) < 0) throw new InvalidArgumentError(`read limit ${String(limit)} is not an integer >= 0`)
}

/** The error a store rejects with once closed: a StoreError, caused by a ClosedError. */
export function storeClosedError (): StoreError {
  return new StoreError('the queue store is closed', { cause: new ClosedError('the queue store is closed') })
}

/** One peer's queue in a MemoryStore. */
interface MemoryQueue {
  /** seq -> message (the store's own copies). */
  readonly messages: Map<number, StoredMessage>
  /**
   * The seqs in order, for read(): may still hold deleted ones (skipped, and
   * dropped once they are half of it), so that deleting from the head is cheap.
   */
  seqs: number[]
  bytes: number
}

/** A queue store kept in Maps; `durable` is false. */
export class MemoryStore implements QueueStore {
  readonly durable = false
  private readonly queues = new Map<string, MemoryQueue>()
  private readonly clocks = new Map<string, PeerClock>()
  private closed = false
  private owner: object | null = null

  claim (owner: object): void {
    if (this.owner !== null && this.owner !== owner) throw new StoreInUseError('the queue store is already used by another Messaging')
    this.owner = owner
  }

  release (owner: object): void {
    if (this.owner === owner) this.owner = null
  }

  async load (): Promise<StoreContents> {
    if (this.closed) throw storeClosedError()
    const messages: StoredMessage[] = []
    // Same order as LevelStore's keys: peers by UTF-16 code units (JS's own
    // string order), then seq.
    for (const peer of [...this.queues.keys()].sort(compareStrings)) {
      const queue = this.queues.get(peer)
      if (queue !== undefined) for (const m of ordered(queue, 0, Infinity)) messages.push(copyMessage(m))
    }
    return { messages, clocks: this.copyClocks() }
  }

  async summary (): Promise<StoreSummary> {
    if (this.closed) throw storeClosedError()
    const queues: QueueSummary[] = []
    for (const peer of [...this.queues.keys()].sort(compareStrings)) {
      const queue = this.queues.get(peer)
      if (queue === undefined) continue
      // The last seq still stored; deleted ones at the tail are few (they are dropped at half).
      let i = queue.seqs.length - 1
      while (i > 0 && !queue.messages.has(queue.seqs[i]!)) i--
      queues.push({ peer, count: queue.messages.size, bytes: queue.bytes, nextSeq: (queue.seqs[i] ?? -1) + 1 })
    }
    return { queues, clocks: this.copyClocks() }
  }

  async read (peer: string, fromSeq: number, limit: number): Promise<StoredMessage[]> {
    if (this.closed) throw storeClosedError()
    checkRead(peer, fromSeq, limit)
    const queue = this.queues.get(peer)
    return queue === undefined ? [] : ordered(queue, fromSeq, limit).map(copyMessage)
  }

  async write (batch: StoreBatch): Promise<void> {
    if (this.closed) throw storeClosedError()
    checkBatch(batch)
    this.checkContract(batch)
    // Applied synchronously, so batches land in call order and a load() issued
    // after write() sees it.
    for (const m of batch.put ?? []) {
      let queue = this.queues.get(m.peer)
      if (queue === undefined) this.queues.set(m.peer, queue = { messages: new Map(), seqs: [], bytes: 0 })
      queue.messages.set(m.seq, copyMessage(m))
      queue.bytes += m.data.byteLength
      const seqs = queue.seqs
      if (seqs.length === 0 || m.seq > seqs[seqs.length - 1]!) {
        seqs.push(m.seq)
      } else {
        const at = lowerBound(seqs, m.seq)
        if (seqs[at] !== m.seq) seqs.splice(at, 0, m.seq)
      }
    }
    for (const r of batch.del ?? []) {
      const queue = this.queues.get(r.peer)
      const m = queue?.messages.get(r.seq)
      if (queue === undefined || m === undefined) continue
      queue.messages.delete(r.seq)
      queue.bytes -= m.data.byteLength
      if (queue.messages.size === 0) this.queues.delete(r.peer)
      else if (queue.seqs.length > 2 * queue.messages.size + 16) queue.seqs = queue.seqs.filter((seq) => queue.messages.has(seq))
    }
    for (const [peer, c] of batch.clocks ?? []) {
      this.clocks.set(peer, { offline: c.offline, since: c.since, connected: c.connected, ...(c.minExpiry !== undefined ? { minExpiry: c.minExpiry } : {}) })
    }
  }

  async close (): Promise<void> {
    this.closed = true
    this.owner = null
  }

  async [Symbol.asyncDispose] (): Promise<void> {
    await this.close()
  }

  /**
   * Throws InvalidArgumentError if `batch` puts a message that is stored or
   * deletes one that is not (or with another size), in call order: LevelStore's
   * counts depend on that, and here it costs nothing to check.
   */
  private checkContract (batch: StoreBatch): void {
    const puts = batch.put ?? []
    const dels = batch.del ?? []
    if (puts.length + dels.length === 1) {
      // The common case, one message: nothing earlier in the batch to account for.
      const m = puts[0]
      if (m !== undefined) {
        if (this.storedSize(m.peer, m.seq) >= 0) throw alreadyStored(m.peer, m.seq)
      } else {
        const r = dels[0]!
        checkDeleted(r, this.storedSize(r.peer, r.seq))
      }
      return
    }
    /** peer -> seq -> data size (-1: deleted) as the batch changes them. */
    const changed = new Map<string, Map<number, number>>()
    const sizeOf = (peer: string, seq: number): number => changed.get(peer)?.get(seq) ?? this.storedSize(peer, seq)
    const set = (peer: string, seq: number, size: number): void => {
      let seqs = changed.get(peer)
      if (seqs === undefined) changed.set(peer, seqs = new Map<number, number>())
      seqs.set(seq, size)
    }
    for (const m of puts) {
      if (sizeOf(m.peer, m.seq) >= 0) throw alreadyStored(m.peer, m.seq)
      set(m.peer, m.seq, m.data.byteLength)
    }
    for (const r of dels) {
      checkDeleted(r, sizeOf(r.peer, r.seq))
      set(r.peer, r.seq, -1)
    }
  }

  /** The data size of a stored message, -1 if there is none. */
  private storedSize (peer: string, seq: number): number {
    const m = this.queues.get(peer)?.messages.get(seq)
    return m === undefined ? -1 : m.data.byteLength
  }

  private copyClocks (): Map<string, PeerClock> {
    const clocks = new Map<string, PeerClock>()
    for (const [peer, c] of this.clocks) clocks.set(peer, { ...c })
    return clocks
  }
}

function alreadyStored (peer: string, seq: number): InvalidArgumentError {
  return new InvalidArgumentError(`message ${seq} to ${JSON.stringify(peer)} is already stored`)
}

/** Throws InvalidArgumentError unless `r` names a stored message (`size` its data size, -1 for none) with the right size. */
function checkDeleted (r: StoredRef, size: number): void {
  if (size < 0) throw new InvalidArgumentError(`message ${r.seq} to ${JSON.stringify(r.peer)} is not stored`)
  if (size !== r.size) throw new InvalidArgumentError(`message ${r.seq} to ${JSON.stringify(r.peer)} has ${size} bytes of data, not ${r.size}`)
}

/** Up to `limit` messages of `queue` from `fromSeq` on, in seq order (the store's own objects). */
function ordered (queue: MemoryQueue, fromSeq: number, limit: number): StoredMessage[] {
  const out: StoredMessage[] = []
  const seqs = queue.seqs
  for (let i = lowerBound(seqs, fromSeq); i < seqs.length && out.length < limit; i++) {
    const m = queue.messages.get(seqs[i]!)
    if (m !== undefined) out.push(m)
  }
  return out
}

/** The first index of `sorted` whose value is >= `value`. */
function lowerBound (sorted: readonly number[], value: number): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (sorted[mid]! < value) lo = mid + 1
    else hi = mid
  }
  return lo
}

function compareStrings (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** A copy that shares no memory with `m`: one allocation holds uuid and data. */
function copyMessage (m: StoredMessage): StoredMessage {
  const bytes = new Uint8Array(UUID_LENGTH + m.data.byteLength)
  bytes.set(m.uuid, 0)
  bytes.set(m.data, UUID_LENGTH)
  return {
    peer: m.peer,
    seq: m.seq,
    uuid: bytes.subarray(0, UUID_LENGTH),
    expiry: m.expiry,
    flags: m.flags,
    data: bytes.subarray(UUID_LENGTH)
  }
}
