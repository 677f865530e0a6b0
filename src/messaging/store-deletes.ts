// The deletions of a Messaging's stored messages once they are finished
// (delivered, or dropped): written to the store together at the end of each
// turn. A deletion the store refuses (a full disk; a LevelStore stalled, or
// waiting to reopen its database after a failed write) is kept and tried again
// once the store writes again, so that a message delivered meanwhile is not
// sent a second time after a clean restart.
import { ClosedError, StoreCorruptError, StoreError } from '../errors.ts'
import { setImmediate } from '../immediate.ts'
import type { Logger } from '../logging.ts'
import type { QueueStore, StoredRef } from '../store/types.ts'
import { uuidKey } from './uuid.ts'

/** First wait before refused deletions are tried again, ms; doubled after each refusal up to the max. */
const RETRY_MIN = 50
const RETRY_MAX = 2000
/**
 * Most refused deletions kept, over all peers (about 40 bytes each); past it the
 * oldest are given up. As many as a receiver's duplicate filter remembers by
 * default: a sender whose store held more delivered messages than that would
 * have them seen again by a restarted receiver anyway.
 */
export const MAX_KEPT_DELETES = 65_536
/** Reads in flight while checking which refused deletions the store still holds. */
const CHECK_CONCURRENCY = 16

/** A stored message to delete, with its UUID (as uuidKey gives it), so that trying again deletes that message and no other. */
export interface StoredDelete extends StoredRef {
  uuid: string
}

/** Whether a write refused with `err` may go through later: not if the store is closed, corrupt, or refused the batch itself. */
function worthRetrying (err: unknown): boolean {
  return err instanceof StoreError && !(err instanceof StoreCorruptError) && !(err.cause instanceof ClosedError)
}

export class StoreDeletes {
  /** Deletions of this turn, written at its end. */
  private pending: StoredDelete[] = []
  private scheduled = false
  /** Deletions the store refused, oldest first, to be tried again. */
  private kept: StoredDelete[] = []
  private timer: ReturnType<typeof setTimeout> | null = null
  private delay = RETRY_MIN
  private retrying = false
  /**
   * A write the store took has brought a try forward since the last one the timer
   * made: one such try per wait at most, so that a store that takes other writes
   * and keeps refusing these is not read through at every write.
   */
  private hinted = false
  /** Writes of deletions under way; each settles, and none rejects. */
  private readonly writes = new Set<Promise<void>>()
  private closed = false

  constructor (private readonly store: QueueStore, private readonly log: Logger) {}

  /** Deletions refused by the store and waiting to be tried again. */
  get waiting (): number { return this.kept.length }

  /** Deletes `ref` from the store, with the others of this turn. */
  add (ref: StoredDelete): void {
    this.pending.push(ref)
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      if (!this.closed) this.writePending()
    })
  }

  /** The store took a write: the deletions it refused before are tried again now, not when the wait is over. */
  storeWrote (): void {
    if (this.kept.length === 0 || this.retrying || this.closed || this.hinted) return
    this.hinted = true
    this.arm(0)
  }

  /**
   * Stops trying again, waits for the writes under way, and hands over what is
   * still to be deleted, for the owner's last batch: the deletions of this turn,
   * and those refused before that the store still holds (none of those if it
   * cannot be read now: their messages are sent again after a restart).
   */
  async close (): Promise<StoredDelete[]> {
    this.closed = true
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
    }
    while (this.writes.size > 0) await Promise.all(this.writes)
    const del = this.pending
    const kept = this.kept
    this.pending = []
    this.kept = []
    if (kept.length === 0) return del
    try {
      const left = await this.stillStored(kept)
      for (const r of left) del.push(r)
    } catch (err) {
      this.log.error('deleting delivered messages from the store failed, and at close the store cannot be read: they are sent again after a restart', { error: err as Error, count: kept.length })
    }
    return del
  }

  private writePending (): void {
    const del = this.pending
    this.pending = []
    if (del.length === 0) return
    this.track(this.store.write({ del }).then(() => { this.storeWrote() }, (err: unknown) => { this.keep(del, err, false) }))
  }

  private track (write: Promise<void>): void {
    this.writes.add(write)
    void write.finally(() => { this.writes.delete(write) })
  }

  /** `del` was refused with `err`: kept to be tried again, within MAX_KEPT_DELETES, if that can help. */
  private keep (del: readonly StoredDelete[], err: unknown, again: boolean): void {
    if (!worthRetrying(err)) {
      this.log.error('deleting delivered messages from the store failed: they are sent again after a restart', { error: err as Error, count: del.length })
      return
    }
    for (const r of del) this.kept.push(r)
    const over = this.kept.length - MAX_KEPT_DELETES
    if (over > 0) {
      this.kept.splice(0, over)
      this.log.error('too many deletions wait for the store: the oldest are given up, and their messages are sent again after a restart', { count: over })
    }
    const fields = { error: err as Error, count: del.length, waiting: this.kept.length, retryIn: this.delay }
    if (again) this.log.debug('deleting delivered messages from the store failed again; kept', fields)
    else this.log.warn('deleting delivered messages from the store failed; kept, and tried again when the store writes again', fields)
    if (!this.retrying) this.arm(this.delay)
  }

  /** Tries the kept deletions again in `ms`, unless a try is due sooner. */
  private arm (ms: number): void {
    if (this.closed || (this.timer !== null && ms > 0)) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = null
      if (ms > 0) this.hinted = false
      this.track(this.retry())
    }, ms)
    // Node's timers have unref(), a browser's are numbers: this alone must not keep a process alive.
    ;(this.timer as unknown as { unref?: () => void }).unref?.()
  }

  private async retry (): Promise<void> {
    if (this.closed || this.retrying || this.kept.length === 0) return
    this.retrying = true
    const del = this.kept
    this.kept = []
    let refused: unknown = null
    try {
      const left = await this.stillStored(del)
      if (left.length > 0) await this.store.write({ del: left })
      this.delay = RETRY_MIN
      this.hinted = false
      this.log.info('deleted delivered messages the store had refused to delete', { count: left.length })
    } catch (err) {
      refused = err
      this.delay = Math.min(this.delay * 2, RETRY_MAX)
    } finally {
      this.retrying = false
    }
    if (refused !== null) this.keep(del, refused, true)
    else if (this.kept.length > 0) this.arm(this.delay)
  }

  /**
   * Those of `refs` the store still holds, as they were stored. A write the
   * store refused may have been written after all (a LevelStore whose fsync
   * failed once LevelDB had the batch replays it when it reopens the database),
   * and a deletion written twice would take a message too many off its peer's
   * count. The UUID must match too: a message stored at that seq since (a seq
   * used again) is not the one to delete.
   */
  private async stillStored (refs: readonly StoredDelete[]): Promise<StoredDelete[]> {
    const held = new Array<boolean>(refs.length).fill(false)
    let next = 0
    const check = async (): Promise<void> => {
      while (next < refs.length) {
        const i = next++
        const r = refs[i]!
        const [m] = await this.store.read(r.peer, r.seq, 1)
        held[i] = m?.seq === r.seq && uuidKey(m.uuid) === r.uuid
      }
    }
    await Promise.all(Array.from({ length: Math.min(CHECK_CONCURRENCY, refs.length) }, check))
    return refs.filter((_, i) => held[i])
  }
}
