// The in-memory queue store: the default when no directory is given, and the
// reference the LevelDB store is tested against. Same contract as LevelStore
// (batches validated whole, then applied atomically in call order; what was
// written is a copy, not the caller's buffers), except that nothing survives the
// process.
import { ClosedError, InvalidArgumentError, StoreError } from '../errors.ts'
import type { PeerClock, QueueStore, StoreBatch, StoreContents, StoredMessage } from './types.ts'

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
  for (const r of batch.del ?? []) checkRef(r.peer, r.seq)
  for (const [peer, clock] of batch.clocks ?? []) {
    if (typeof peer !== 'string') throw new InvalidArgumentError('a clock\'s peer must be a string')
    if (typeof clock !== 'object' || clock === null ||
        typeof clock.offline !== 'number' || Number.isNaN(clock.offline) ||
        typeof clock.since !== 'number' || Number.isNaN(clock.since) ||
        typeof clock.connected !== 'boolean') {
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

/** The error a store rejects with once closed: a StoreError, caused by a ClosedError. */
export function storeClosedError (): StoreError {
  return new StoreError('the queue store is closed', { cause: new ClosedError('the queue store is closed') })
}

/** A queue store kept in Maps; `durable` is false. */
export class MemoryStore implements QueueStore {
  readonly durable = false
  /** peer -> seq -> message (the store's own copies). */
  private readonly messages = new Map<string, Map<number, StoredMessage>>()
  private readonly clocks = new Map<string, PeerClock>()
  private closed = false

  async load (): Promise<StoreContents> {
    if (this.closed) throw storeClosedError()
    const messages: StoredMessage[] = []
    // Same order as LevelStore's keys: peers by UTF-16 code units (JS's own
    // string order), then seq.
    for (const peer of [...this.messages.keys()].sort(compareStrings)) {
      const queue = this.messages.get(peer)
      if (queue === undefined) continue
      for (const seq of [...queue.keys()].sort((a, b) => a - b)) {
        const m = queue.get(seq)
        if (m !== undefined) messages.push(copyMessage(m))
      }
    }
    const clocks = new Map<string, PeerClock>()
    for (const [peer, c] of this.clocks) clocks.set(peer, { ...c })
    return { messages, clocks }
  }

  async write (batch: StoreBatch): Promise<void> {
    if (this.closed) throw storeClosedError()
    checkBatch(batch)
    // Applied synchronously, so batches land in call order and a load() issued
    // after write() sees it.
    for (const m of batch.put ?? []) {
      let queue = this.messages.get(m.peer)
      if (queue === undefined) this.messages.set(m.peer, queue = new Map<number, StoredMessage>())
      queue.set(m.seq, copyMessage(m))
    }
    for (const r of batch.del ?? []) {
      const queue = this.messages.get(r.peer)
      if (queue === undefined) continue
      queue.delete(r.seq)
      if (queue.size === 0) this.messages.delete(r.peer)
    }
    for (const [peer, c] of batch.clocks ?? []) {
      this.clocks.set(peer, { offline: c.offline, since: c.since, connected: c.connected })
    }
  }

  async close (): Promise<void> {
    this.closed = true
  }

  async [Symbol.asyncDispose] (): Promise<void> {
    await this.close()
  }
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
