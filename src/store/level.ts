// The durable queue store, on LevelDB (`level`, classic-level underneath).
//
// Layout (format version 1), keys are ASCII strings:
//   'v'                        -> format version, one byte (1)
//   'c' + P                    -> the peer's TTL clock: offline f64 BE, since f64 BE, connected u8
//   'm' + P + '.' + SSSSSSSSSSSSSS -> one queued message: uuid(16), expiry f64 BE (Infinity
//                                 allowed), flags u32 BE, then the data
// where P is the peer name as 4 lowercase hex digits per UTF-16 code unit (so any
// JS string, lone surrogates included, maps to a distinct safe key) and S is the
// seq as 14 zero-padded hex digits (2^56 > Number.MAX_SAFE_INTEGER). '.' sorts
// below every hex digit, so key order is peer order (JS string order), then seq
// order: a peer's queue is one contiguous FIFO run of keys.
//
// Writes are group-committed: every write() made while the previous LevelDB batch
// is in flight, or in the same tick, joins one db.batch, so a burst of persistent
// sends costs one LevelDB write rather than one each.
import { resolve as resolvePath } from 'node:path'
import { Level } from 'level'
import { StoreError, StoreLockedError } from '../errors.ts'
import { debugLogger, type Logger } from '../logging.ts'
import { checkBatch, storeClosedError, UUID_LENGTH } from './memory.ts'
import type { PeerClock, QueueStore, StoreBatch, StoreContents, StoredMessage } from './types.ts'

/** The on-disk layout this code reads and writes. */
export const LEVEL_STORE_FORMAT = 1

export interface LevelStoreOptions {
  /**
   * Make every LevelDB batch an fsync'd write. Default false.
   *
   * Without it a write() resolves once LevelDB has handed the batch to the
   * operating system: it survives the process crashing or being killed
   * (SIGKILL included), but not a power loss or kernel crash, which can lose the
   * last writes. With it, a write() resolves only once the data is on disk and
   * survives a power loss too. Group commit keeps the cost to one fsync per
   * batch, not per message, so with many writes in flight it stays cheap.
   */
  sync?: boolean
  /** Where log lines go; default the `debug` namespace `snakemq:store`. */
  logger?: Logger
}

type Db = Level<string, Uint8Array>
type ChainedBatch = ReturnType<Db['batch']>

/** Writes that will go to LevelDB together as one batch. */
interface Group {
  /** Created with the group's first operation. */
  batch: ChainedBatch | null
  /** Bytes of message values in `batch`. */
  bytes: number
  /** Set if adding an operation to `batch` threw: the group is then not written. */
  failure: unknown
  promise: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

const VERSION_KEY = 'v'
const MESSAGE_PREFIX = 'm'
const CLOCK_PREFIX = 'c'
const SEQ_SEPARATOR = '.'
const SEQ_DIGITS = 14
/** uuid + expiry + flags. */
const HEADER_LENGTH = UUID_LENGTH + 8 + 4
const CLOCK_LENGTH = 8 + 8 + 1
/**
 * A group stops taking writes past this many bytes of values, so a burst of
 * large messages is written as several batches rather than one huge one.
 */
const MAX_GROUP_BYTES = 8 * 1024 * 1024
/** Entries read from LevelDB per iterator step in load(). */
const LOAD_STEP = 1000

/**
 * Directories this process has open, or is opening. LevelDB refuses a second
 * open of a directory in the same process, but while refusing it closes a
 * descriptor of the LOCK file, and closing any descriptor of a file releases the
 * fcntl lock the process holds on it: the first store would stop keeping other
 * processes out. So a second open here is refused before LevelDB sees it.
 */
const openInThisProcess = new Set<string>()

/** A queue store in a LevelDB directory; `durable` is true. Open it with {@link LevelStore.open}. */
export class LevelStore implements QueueStore {
  readonly durable = true
  /** The store's directory, as an absolute path. */
  readonly directory: string
  /** How many LevelDB batches have been written so far (one per group of merged write() calls). */
  batchesWritten = 0

  private readonly db: Db
  private readonly batchOptions: { sync: boolean }
  private readonly log: Logger
  /** Groups waiting to be written; the last one still takes writes. */
  private readonly groups: Group[] = []
  private writing = false
  private flushScheduled = false
  private closing: Promise<void> | null = null
  private onIdle: (() => void) | null = null
  /** Last peer encoded, and its key fragment: queues are usually written a peer at a time. */
  private lastPeer = ''
  private lastPeerHex = ''

  private constructor (db: Db, directory: string, options: LevelStoreOptions) {
    this.db = db
    this.directory = directory
    this.batchOptions = { sync: options.sync === true }
    this.log = options.logger ?? debugLogger('store')
  }

  /**
   * Opens (creating if needed) the store in `directory`. Rejects with
   * StoreLockedError if another LevelStore, in this process or another, has it
   * open, and with StoreError if it cannot be opened or is not a queue store.
   */
  static async open (directory: string, options: LevelStoreOptions = {}): Promise<LevelStore> {
    const location = resolvePath(directory)
    if (openInThisProcess.has(location)) throw new StoreLockedError(location)
    openInThisProcess.add(location)
    const db: Db = new Level<string, Uint8Array>(location, { valueEncoding: 'view' })
    try {
      await db.open()
    } catch (err) {
      openInThisProcess.delete(location)
      if (isLockedError(err)) throw new StoreLockedError(location, { cause: err })
      throw new StoreError(`cannot open the queue store ${location}: ${errorMessage(err)}`, { cause: err })
    }
    try {
      await checkFormat(db, location)
    } catch (err) {
      await db.close().catch(() => {})
      openInThisProcess.delete(location)
      throw err
    }
    const store = new LevelStore(db, location, options)
    store.log.info('queue store opened', { directory: location, sync: options.sync === true })
    return store
  }

  /**
   * Reads every message (ordered by peer, then seq) and every clock, in one pass
   * over a snapshot of the database; writes still in flight may or may not be in it.
   */
  async load (): Promise<StoreContents> {
    if (this.closing !== null) throw storeClosedError()
    const messages: StoredMessage[] = []
    const clocks = new Map<string, PeerClock>()
    let lastHex = ''
    let lastPeer = ''
    const iterator = this.db.iterator()
    try {
      for (;;) {
        let entries: Array<[string, Uint8Array]>
        try {
          entries = await iterator.nextv(LOAD_STEP)
        } catch (err) {
          throw new StoreError(`reading the queue store ${this.directory} failed: ${errorMessage(err)}`, { cause: err })
        }
        if (entries.length === 0) break
        for (const [key, value] of entries) {
          const kind = key.charAt(0)
          if (kind === MESSAGE_PREFIX) {
            const sep = key.length - SEQ_DIGITS - 1
            if (sep < 1 || key.charAt(sep) !== SEQ_SEPARATOR) throw this.corrupt(key, 'malformed message key')
            const hex = key.slice(1, sep)
            if (hex !== lastHex) {
              lastPeer = decodePeer(hex) ?? this.fail(key, 'malformed peer in key')
              lastHex = hex
            }
            messages.push(this.decodeMessage(key, lastPeer, key.slice(sep + 1), value))
          } else if (kind === CLOCK_PREFIX) {
            const peer = decodePeer(key.slice(1)) ?? this.fail(key, 'malformed peer in key')
            clocks.set(peer, this.decodeClock(key, value))
          } else if (key !== VERSION_KEY) {
            throw this.corrupt(key, 'unknown key')
          }
        }
      }
    } finally {
      await iterator.close().catch(() => {})
    }
    this.log.debug('queue store loaded', { directory: this.directory, messages: messages.length, clocks: clocks.size })
    return { messages, clocks }
  }

  /**
   * Applies `batch` atomically: puts, then deletes, then clocks. Calls made in
   * the same tick, or while an earlier batch is being written, are merged into
   * one LevelDB batch (in call order); the promise resolves once the LevelDB
   * batch holding this one is written, and rejects with StoreError (its `cause`
   * the LevelDB error) if that fails, in which case none of it was written.
   * Rejects with InvalidArgumentError, writing nothing, if the batch holds
   * something that cannot be stored (a seq that is not a safe integer >= 0, a
   * uuid that is not 16 bytes, ...).
   */
  write (batch: StoreBatch): Promise<void> {
    if (this.closing !== null) return Promise.reject(storeClosedError())
    try {
      checkBatch(batch)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    let group = this.groups.at(-1)
    if (group === undefined || group.bytes >= MAX_GROUP_BYTES) {
      group = newGroup()
      this.groups.push(group)
    }
    // Straight into the group's LevelDB batch: checkBatch() made sure nothing
    // below can throw half way through this call's operations. Should the
    // database fail anyway (closed behind our back), the whole group fails.
    if (group.failure === undefined) {
      try {
        const puts = batch.put ?? []
        const dels = batch.del ?? []
        const clocks = batch.clocks ?? []
        if (puts.length + dels.length + clocks.length > 0) {
          const ops = group.batch ??= this.db.batch()
          for (const m of puts) {
            const value = encodeMessage(m)
            group.bytes += value.byteLength
            ops.put(this.messageKey(m.peer, m.seq), value)
          }
          for (const r of dels) ops.del(this.messageKey(r.peer, r.seq))
          for (const [peer, clock] of clocks) ops.put(CLOCK_PREFIX + encodePeer(peer), encodeClock(clock))
        }
      } catch (err) {
        group.failure = err
      }
    }
    if (!this.writing && !this.flushScheduled) {
      // Wait for the rest of this tick's writes before starting the batch.
      this.flushScheduled = true
      process.nextTick(() => { this.flushScheduled = false; this.flush() })
    }
    return group.promise
  }

  /** Waits for every write() already made, then closes the database. Idempotent. */
  close (): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  async [Symbol.asyncDispose] (): Promise<void> {
    await this.close()
  }

  private async shutdown (): Promise<void> {
    if (this.writing || this.groups.length > 0) {
      await new Promise<void>((resolve) => { this.onIdle = resolve })
    }
    try {
      await this.db.close()
    } catch (err) {
      throw new StoreError(`closing the queue store ${this.directory} failed: ${errorMessage(err)}`, { cause: err })
    } finally {
      openInThisProcess.delete(this.directory)
    }
    this.log.debug('queue store closed', { directory: this.directory })
  }

  /** Writes the oldest group, then (when done) the next, one LevelDB batch at a time. */
  private flush (): void {
    if (this.writing) return
    const group = this.groups.shift()
    if (group === undefined) {
      const onIdle = this.onIdle
      this.onIdle = null
      onIdle?.()
      return
    }
    const ops = group.batch
    if (group.failure !== undefined) {
      this.failed(group, group.failure)
      if (ops !== null) ops.close().catch(() => {})
      this.flush()
      return
    }
    if (ops === null) {
      group.resolve()
      this.flush()
      return
    }
    this.writing = true
    ops.write(this.batchOptions).then(() => {
      this.batchesWritten++
      group.resolve()
    }, (err: unknown) => {
      this.failed(group, err)
    }).finally(() => {
      this.writing = false
      this.flush()
    })
  }

  private failed (group: Group, err: unknown): void {
    this.log.error('queue store write failed', { directory: this.directory, operations: group.batch?.length ?? 0, error: err })
    group.reject(new StoreError(`writing to the queue store ${this.directory} failed: ${errorMessage(err)}`, { cause: err }))
  }

  private messageKey (peer: string, seq: number): string {
    if (peer !== this.lastPeer || this.lastPeerHex === '') {
      this.lastPeerHex = MESSAGE_PREFIX + encodePeer(peer) + SEQ_SEPARATOR
      this.lastPeer = peer
    }
    const s = seq.toString(16)
    return this.lastPeerHex + '0'.repeat(SEQ_DIGITS - s.length) + s
  }

  private decodeMessage (key: string, peer: string, seqHex: string, value: Uint8Array): StoredMessage {
    if (!HEX_SEQ.test(seqHex)) this.fail(key, 'malformed seq in key')
    const seq = parseInt(seqHex, 16)
    if (!Number.isSafeInteger(seq)) this.fail(key, 'seq out of range')
    if (value.byteLength < HEADER_LENGTH) this.fail(key, `message value of ${value.byteLength} bytes is shorter than its ${HEADER_LENGTH}-byte header`)
    const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
    const expiry = view.getFloat64(UUID_LENGTH, false)
    if (Number.isNaN(expiry)) this.fail(key, 'expiry is NaN')
    return {
      peer,
      seq,
      uuid: value.subarray(0, UUID_LENGTH),
      expiry,
      flags: view.getUint32(UUID_LENGTH + 8, false),
      data: value.subarray(HEADER_LENGTH)
    }
  }

  private decodeClock (key: string, value: Uint8Array): PeerClock {
    if (value.byteLength !== CLOCK_LENGTH) this.fail(key, `clock value of ${value.byteLength} bytes, not ${CLOCK_LENGTH}`)
    const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
    const offline = view.getFloat64(0, false)
    const since = view.getFloat64(8, false)
    const connected = view.getUint8(16)
    if (Number.isNaN(offline) || Number.isNaN(since) || connected > 1) this.fail(key, 'malformed clock')
    return { offline, since, connected: connected === 1 }
  }

  private corrupt (key: string, what: string): StoreError {
    return new StoreError(`the queue store ${this.directory} is corrupt: ${what} (key ${JSON.stringify(key)})`)
  }

  private fail (key: string, what: string): never {
    throw this.corrupt(key, what)
  }
}

const HEX_SEQ = /^[0-9a-f]{14}$/
const HEX_PEER = /^(?:[0-9a-f]{4})*$/

function newGroup (): Group {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
  return { batch: null, bytes: 0, failure: undefined, promise, resolve, reject }
}

/** 4 hex digits per UTF-16 code unit: lossless for any string, and order-preserving. */
function encodePeer (peer: string): string {
  let hex = ''
  for (let i = 0; i < peer.length; i++) {
    const unit = peer.charCodeAt(i).toString(16)
    hex += '000'.slice(unit.length - 1) + unit
  }
  return hex
}

function decodePeer (hex: string): string | undefined {
  if (!HEX_PEER.test(hex)) return undefined
  const units: number[] = []
  for (let i = 0; i < hex.length; i += 4) units.push(parseInt(hex.slice(i, i + 4), 16))
  // In slices, so a long name cannot exceed the engine's argument limit.
  let peer = ''
  for (let i = 0; i < units.length; i += 4096) peer += String.fromCharCode(...units.slice(i, i + 4096))
  return peer
}

function encodeMessage (m: StoredMessage): Uint8Array {
  const value = Buffer.allocUnsafe(HEADER_LENGTH + m.data.byteLength)
  value.set(m.uuid, 0)
  value.writeDoubleBE(m.expiry, UUID_LENGTH)
  value.writeUInt32BE(m.flags, UUID_LENGTH + 8)
  value.set(m.data, HEADER_LENGTH)
  return value
}

function encodeClock (clock: PeerClock): Uint8Array {
  const value = Buffer.allocUnsafe(CLOCK_LENGTH)
  value.writeDoubleBE(clock.offline, 0)
  value.writeDoubleBE(clock.since, 8)
  value.writeUInt8(clock.connected ? 1 : 0, 16)
  return value
}

/** Stamps a new, empty database with the format version; refuses anything else. */
async function checkFormat (db: Db, location: string): Promise<void> {
  let version: Uint8Array | undefined
  try {
    version = await db.get(VERSION_KEY)
    if (version === undefined) {
      const [anyKey] = await db.keys({ limit: 1 }).all()
      if (anyKey !== undefined) throw new StoreError(`${location} is a LevelDB database but not a snakemq queue store (it has no format version)`)
      await db.put(VERSION_KEY, Uint8Array.of(LEVEL_STORE_FORMAT), { sync: true })
      return
    }
  } catch (err) {
    if (err instanceof StoreError) throw err
    throw new StoreError(`reading the queue store ${location} failed: ${errorMessage(err)}`, { cause: err })
  }
  if (version.byteLength !== 1 || version[0] !== LEVEL_STORE_FORMAT) {
    throw new StoreError(`the queue store ${location} has format version ${version.byteLength === 1 ? String(version[0]) : 'unknown'}; this version of snakemq reads format ${LEVEL_STORE_FORMAT}`)
  }
}

function isLockedError (err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === 'LEVEL_LOCKED') return true
  }
  return false
}

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
