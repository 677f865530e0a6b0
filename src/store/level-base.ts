// The durable queue store, on `level`: LevelDB through classic-level in Node,
// IndexedDB through browser-level in a browser. This module is the part both
// share; level-node.ts and level-browser.ts add what differs (how a location is
// named, the checks of LevelDB's files that only Node can read), each as the
// LevelStore of its entry point.
//
// Layout (format version 3), keys are ASCII strings:
//   'v'                        -> format version, one byte (3)
//   'c' + P                    -> the peer's TTL clock: offline f64 BE, since f64 BE, connected u8
//   'm' + P + '.' + SSSSSSSSSSSSSS -> one queued message: uuid(16), expiry f64 BE (Infinity
//                                 allowed), flags u32 BE, then the data
//   'n' + P                    -> the peer's count: messages f64 BE, bytes of data f64 BE;
//                                 absent when it has no messages
//   'x'                        -> present only once the store was found corrupt: why, UTF-8
//   'j'                        -> how far the journal is in LevelDB: epoch f64 BE, offset f64 BE
// where P is the peer name as 4 lowercase hex digits per UTF-16 code unit (so any
// JS string, lone surrogates included, maps to a distinct safe key) and S is the
// seq as 14 zero-padded hex digits (2^56 > Number.MAX_SAFE_INTEGER). '.' sorts
// below every hex digit, so key order is peer order (JS string order), then seq
// order: a peer's queue is one contiguous FIFO run of keys. Format 1 had no
// count keys, format 2 no journal; both are upgraded on open.
//
// Writes are group-committed: every write() made while the previous LevelDB batch
// is in flight, or in the same tick, joins one db.batch, so a burst of persistent
// sends costs one LevelDB write rather than one each. Each batch carries the new
// counts of the peers it touches, so counts and messages never disagree after a
// crash.
//
// In Node a write() first goes to a journal file (journal.ts) with one
// synchronous append, and resolves then: the bytes are in the operating
// system's hands, as LevelDB's own log would have them without `sync`, at a
// microsecond instead of a round trip to LevelDB's worker thread. The groups
// behind it are written as above, each with the 'j' key saying how far into the
// journal LevelDB now has everything; open replays the records past it, in
// one batch that moves 'j' to their end, and then starts the journal over. A
// journaled group that LevelDB fails to write stays queued and is written once
// the database is reopened (it is not lost: the journal has it). Reads wait
// for the journaled groups that came before them. Batches over
// JOURNAL_MAX_BATCH_BYTES, every write with `sync`, and writes while the
// database is being reopened skip the journal and resolve once LevelDB has them.
//
// After a failed batch (a full disk) LevelDB's log may end in a torn record, and
// LevelDB would go on appending after it; its recovery then drops everything
// past the tear. So after a failure nothing more is written to that log: the
// database is closed and opened again, which replays the log up to the tear (a
// torn tail is not corruption to LevelDB) and starts a new log. Until that
// succeeds, writes reject; it is tried again on later writes, no more often than
// a backoff allows. LevelDB's lock on its directory goes with the database
// while it is closed, so a runtime that has other processes to keep out (Node)
// holds a lock of its own for the store's whole life (LevelPlatform.lock): a
// process that opened the store in that gap would replay and start over the
// journal this one still appends to, and the counts of both would be written.
//
// LevelDB does not fail an open when it drops records from a damaged log: it
// notes it in its LOG file and opens a shorter database. open() reads that note,
// checks that CURRENT and the MANIFEST it names are there (without CURRENT,
// LevelDB would make a new, empty database and delete the old tables), and
// refuses a damaged store with StoreCorruptError unless asked to salvage it.
import type * as LevelModule from 'level'
import { allocUnsafe } from '../bytes.ts'
import { InvalidArgumentError, StoreCorruptError, StoreError, StoreInUseError, StoreLockedError } from '../errors.ts'
import { debugLogger, type Logger } from '../logging.ts'
import { checkBatch, checkRead, storeClosedError, UUID_LENGTH } from './memory.ts'
import type { PeerClock, QueueStore, QueueSummary, StoreBatch, StoreContents, StoredMessage, StoreSummary } from './types.ts'

/** The on-disk layout this code writes (it reads, and upgrades, format 1 too). */
export const LEVEL_STORE_FORMAT = 3

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
   * With `sync` the journal is not used (see `journal`).
   */
  sync?: boolean
  /**
   * In Node, write each batch first to a journal file in the directory with one
   * synchronous append, and resolve write() then; LevelDB is written behind it,
   * and open replays what it had not got. Default true (false with `sync`). The
   * durability is the same as without it (the data is in the operating system's
   * hands, so it survives the process being killed, not a power loss); an
   * awaited persistent send costs a few microseconds instead of LevelDB's round
   * trip (50-60 us on the machine it was measured on). A journal left by an
   * earlier open is replayed whatever this option says. Ignored in a browser.
   */
  journal?: boolean
  /** Where log lines go; default the `debug` namespace `snakemq:store`. */
  logger?: Logger
  /**
   * Open the store even if it is found damaged (records dropped by LevelDB's
   * recovery, a missing CURRENT or MANIFEST file, counts that disagree with the
   * messages), keep what is left, and report what was lost in
   * {@link LevelStore.salvaged} and in a log line. Default false: such a store
   * is refused with StoreCorruptError. Salvaging reads the whole store at
   * open, so leave it off once the store is back in order.
   */
  salvage?: boolean
}

/** One peer whose count disagreed with what a salvage found. */
export interface SalvagedQueue {
  peer: string
  /** Messages the store's count said it had. */
  expected: number
  /** Messages there were. */
  found: number
  /** Bytes of data the count said. */
  expectedBytes: number
  /** Bytes of data there were. */
  foundBytes: number
}

/** What opening with `salvage: true` found; see {@link LevelStore.salvaged}. */
export interface SalvageReport {
  directory: string
  /** What was wrong, one line each; empty if nothing was. */
  problems: string[]
  /** Bytes of log LevelDB reported dropping while it recovered (or repaired) the store. */
  droppedBytes: number
  /** Entries that could not be decoded, removed. */
  malformed: number
  /**
   * The peers whose count disagreed with their messages; the counts are then
   * set to what was found. Records dropped from a log can take the count
   * updates that came after them too, so `expected` is what the surviving
   * counts say: a lower bound of what was there.
   */
  queues: SalvagedQueue[]
  /** Sum of `expected - found` over `queues`, where positive. */
  lostMessages: number
}

type Db = LevelModule.Level<string, Uint8Array>

/** What a runtime adds to the shared store: naming locations, and reading what LevelDB leaves in its files. */
export interface LevelPlatform {
  /** The location as the store reports and locks it (Node: an absolute path; a browser: the IndexedDB name). */
  locate (location: string): string
  /**
   * What is missing from the database's files that LevelDB would not report
   * (without CURRENT it starts a new, empty database); null if nothing is, or
   * the runtime cannot tell.
   */
  missingFiles (location: string): Promise<string | null>
  /**
   * Why `location` is not a place for a store: it holds files, none of them a
   * store's or LevelDB's (opening it would scatter LevelDB's files among
   * someone else's); null if it is empty, missing, or a store's.
   */
  foreign?: (location: string) => Promise<string | null>
  /** What LevelDB's LOG says it dropped while recovering; null if nothing, or the runtime cannot tell. */
  recoveryDrops (location: string): Promise<{ bytes: number, text: string } | null>
  /** Opens and reads the journal of the store at `location`; absent where the runtime has none (a browser). */
  openJournal?: (location: string, known: JournalMark | null) => JournalContents
  /**
   * Takes the store's lock, held until the store is closed (and let go by the
   * system if the process dies), whatever becomes of the database meanwhile;
   * rejects with StoreLockedError if another process holds it (in a browser:
   * another tab or worker of the origin, which IndexedDB lets open the same
   * database). Absent where nothing outside this process can open the store.
   */
  lock?: (location: string, log: Logger) => Promise<StoreLock>
}

/** A store's lock, as {@link LevelPlatform.lock} takes it. */
export interface StoreLock {
  release (): Promise<void>
}

/** The journal file, as the runtime keeps it (see journal.ts). */
export interface JournalFile {
  /** Bytes in the file. */
  readonly size: number
  /** The epoch in its header: one life of the file, from one start-over to the next. */
  readonly epoch: number
  /** Bytes the record's head takes in front of its payload. */
  readonly headRoom: number
  /**
   * Appends `record[0, end)` as one record, its payload from `headRoom` on (the
   * head in front of it is filled in here); returns the file's size after it.
   * Throws if that fails, the file then as it was.
   */
  append (record: Uint8Array, end: number): number
  /** Empties the file and starts it over under `epoch`. */
  reset (epoch: number): void
  close (): void
}

/** How far into the journal of one epoch LevelDB has every record (an offset at a record's end). */
export interface JournalMark { epoch: number, offset: number }

/** What opening a journal found. */
export interface JournalContents {
  file: JournalFile
  path: string
  /** The records that are whole, in order, each with the file offset where it ends. */
  records: Array<{ end: number, payload: Uint8Array }>
  /** A damaged record, or a header that is not a journal's: what, where. */
  problem: string | null
  /** Bytes of an append cut short at the end (a write that never resolved), dropped. */
  tornBytes: number
}

interface Count { count: number, bytes: number }

/** Writes that will go to LevelDB together as one batch. */
interface Group {
  /** Keys in call order; `values[i]` undefined means delete `keys[i]`. */
  keys: string[]
  values: Array<Uint8Array | undefined>
  /** Per peer, how the group changes its count. */
  deltas: Map<string, Count>
  /** Bytes of message values in the group. */
  bytes: number
  promise: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
  /** Its writes are in the journal and have resolved: if LevelDB fails to write it, it is written again later. */
  journaled: boolean
  /** The journal's epoch, and the offset its records reach, written with the group as 'j'; 0: no record in it. */
  epoch: number
  journalEnd: number
  /** Written to LevelDB. */
  done: boolean
  /** Settles (never rejects) after the next attempt to write it, which reads wait on. */
  attempt: Promise<void>
  attempted: () => void
}

/** Why the database is closed after a failed write, and when to try opening it again. */
interface Breakdown {
  error: unknown
  /** Date.now() before which no reopen is tried. */
  retryAt: number
  /** The wait after the next failed reopen, ms. */
  delay: number
}

/** What opening a database found, handed to the store made on it. */
export interface Opened {
  db: Db
  counts: Map<string, Count>
  salvaged: SalvageReport | null
}

const VERSION_KEY = 'v'
const MARKER_KEY = 'x'
const JOURNAL_KEY = 'j'
const MESSAGE_PREFIX = 'm'
const CLOCK_PREFIX = 'c'
const COUNT_PREFIX = 'n'
const SEQ_SEPARATOR = '.'
/** Sorts right after SEQ_SEPARATOR and before every hex digit: the end of one peer's messages. */
const PEER_END = '/'
const SEQ_DIGITS = 14
/** uuid + expiry + flags. */
const HEADER_LENGTH = UUID_LENGTH + 8 + 4
const CLOCK_LENGTH = 8 + 8 + 1
/** A clock with its minExpiry (f64 BE) after the rest. */
const CLOCK_WITH_EXPIRY_LENGTH = CLOCK_LENGTH + 8
const COUNT_LENGTH = 8 + 8
/**
 * A group stops taking writes past this many bytes of values, so a burst of
 * large messages is written as several batches rather than one huge one.
 */
const MAX_GROUP_BYTES = 8 * 1024 * 1024
/** Entries read from LevelDB per iterator step in load() and full scans. */
const LOAD_STEP = 1000
/** First wait before reopening again after a reopen failed, ms; doubled each time up to the max. */
const REOPEN_DELAY_MIN = 50
const REOPEN_DELAY_MAX = 2000
/** A batch with more bytes of data than this skips the journal (a synchronous append of it would hold up the event loop). */
const JOURNAL_MAX_BATCH_BYTES = 256 * 1024
/** The journal is started over once LevelDB has everything in it and it has grown past this. */
const JOURNAL_RESET_BYTES = 256 * 1024
/** Past this, writes skip the journal until LevelDB has caught up with it, so that it can be started over. */
const JOURNAL_PAUSE_BYTES = 2 * 1024 * 1024
/** A journaled group this big is handed to LevelDB at once, without waiting for the writer to yield. */
const JOURNAL_START_BYTES = 32 * 1024
/** Past this many bytes of journaled writes LevelDB does not have yet, write() resolves once LevelDB has taken some of them. */
const JOURNAL_MAX_BEHIND_BYTES = 256 * 1024
const JOURNAL_PUT = 1
const JOURNAL_DEL = 2
const JOURNAL_CLOCK = 3

/**
 * Directories this process has open, or is opening. LevelDB refuses a second
 * open of a directory in the same process, but while refusing it closes a
 * descriptor of the LOCK file, and closing any descriptor of a file releases the
 * fcntl lock the process holds on it: the first store would stop keeping other
 * processes out (and so would the lock that level-node.ts takes the same way).
 * So a second open here is refused before LevelDB sees it.
 */
const openInThisProcess = new Set<string>()

/**
 * A queue store in a `level` database (LevelDB in Node, IndexedDB in a
 * browser); `durable` is true. What both runtimes' LevelStore share: open one
 * with `LevelStore.open`.
 */
export class LevelStoreBase implements QueueStore {
  readonly durable = true
  /** The store's location: in Node its directory, as an absolute path; in a browser the IndexedDB database's name. */
  readonly directory: string
  /** How many LevelDB batches have been written so far (one per group of merged write() calls). */
  batchesWritten = 0
  /** With `salvage: true`, what the open found and repaired (nothing lost if `problems` is empty); null without. */
  readonly salvaged: SalvageReport | null

  private db: Db
  /** False while the database is closed after a failed write, and after close(). */
  private dbOpen = true
  private readonly batchOptions: { sync: boolean }
  private readonly log: Logger
  /** Each peer's count as last written (the peers with messages). */
  private counts: Map<string, Count>
  /** Groups waiting to be written; the last one still takes writes. */
  private readonly groups: Group[] = []
  private writing = false
  private flushScheduled = false
  private closing: Promise<void> | null = null
  private onIdle: (() => void) | null = null
  private broken: Breakdown | null = null
  private recovering: Promise<void> | null = null
  /** Set once the store turned out corrupt while running: every operation fails with it. */
  private fatal: StoreCorruptError | null = null
  private marked = false
  private reads = 0
  private readonly readsDone = new Set<() => void>()
  private owner: object | null = null
  /** Last peer encoded, and its key fragment: queues are usually written a peer at a time. */
  private lastPeer = ''
  private lastPeerHex = ''
  /** The journal writes go to first (Node, without `sync`); null when not used. */
  private journal: JournalFile | null = null
  private journalPath = ''
  /** Writes skip the journal until LevelDB has all of it, so that it can start over. */
  private journalPaused = false
  /** Journaled groups not yet written to LevelDB, and the newest of them (what a read waits for). */
  private journaledPending = 0
  /** Bytes of the values in those groups. */
  private journaledBytes = 0
  /** The group being written to LevelDB. */
  private inFlight: Group | null = null
  private newestJournaled: Group | null = null
  /** When a journaled group that failed is tried again. */
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  /** A journaled group was given up on (the store closing, or found corrupt): the journal holds writes LevelDB never got. */
  private journalKept = false
  /** Why a journaled group is waiting to be written again: until it is, write() fails at once. */
  private stalled: { error: unknown } | null = null
  /** Where journal records are encoded (reused: the append is synchronous). */
  private scratch: Uint8Array = allocUnsafe(0)
  /** The platform's lock on the store, from open to close; null where the platform has none. */
  private lock: StoreLock | null = null

  protected constructor (opened: Opened, directory: string, options: LevelStoreOptions, log: Logger, private readonly platform: LevelPlatform) {
    this.db = opened.db
    this.counts = opened.counts
    this.salvaged = opened.salvaged
    this.directory = directory
    this.batchOptions = { sync: options.sync === true }
    this.log = log
  }

  /**
   * Opens the store at `location` on `platform` and makes it with `make`: the
   * shared part of each runtime's `LevelStore.open`. Refuses a location this
   * process already has open with StoreLockedError.
   */
  protected static async openWith<S extends LevelStoreBase> (
    platform: LevelPlatform, location: string, options: LevelStoreOptions,
    make: (opened: Opened, location: string, log: Logger) => S
  ): Promise<S> {
    if (typeof location !== 'string' || location.length === 0) {
      throw new InvalidArgumentError(`LevelStore.open(location) takes the store's directory (a browser: its database name), got ${typeof location === 'string' ? '""' : String(location)}`)
    }
    const located = platform.locate(location)
    if (openInThisProcess.has(located)) throw new StoreLockedError(located, { inThisProcess: true })
    openInThisProcess.add(located)
    const log = options.logger ?? debugLogger('store')
    let lock: StoreLock | null = null
    let opened: Opened
    try {
      // Before anything is written there.
      const foreign = await platform.foreign?.(located) ?? null
      if (foreign !== null) throw new StoreError(`${located} is not a snakemq queue store: ${foreign}; open a store in an empty or new directory`)
      // Before the database, and for as long as the store is open: LevelDB's own lock goes whenever the database is reopened.
      lock = await platform.lock?.(located, log) ?? null
      opened = await openDatabase(platform, located, options.salvage === true, log)
    } catch (err) {
      await lock?.release().catch(() => {})
      openInThisProcess.delete(located)
      throw err
    }
    const store = make(opened, located, log)
    store.lock = lock
    try {
      await store.startJournal(options, opened)
    } catch (err) {
      await store.close().catch(() => {})
      throw err
    }
    log.info('queue store opened', { directory: located, sync: options.sync === true, journal: store.journal !== null, peers: opened.counts.size })
    return store
  }

  /**
   * Replays what the journal holds past what LevelDB has, then starts the
   * journal over and, unless `sync` or `journal: false`, writes go to it from now.
   */
  private async startJournal (options: LevelStoreOptions, opened: Opened): Promise<void> {
    const open = this.platform.openJournal
    if (open === undefined) return
    let value: Uint8Array | undefined
    try {
      value = await this.db.get(JOURNAL_KEY)
    } catch (err) {
      throw new StoreError(`reading the queue store's journal mark in ${this.directory} failed: ${errorMessage(err)}`, { cause: err })
    }
    const mark = decodeJournalMark(value)
    if (mark === undefined) throw new StoreCorruptError(this.directory, ['malformed journal mark (key "j")'])
    let contents: JournalContents
    try {
      // Read from the mark on: LevelDB has the records before it, so damage there loses nothing and is not looked for.
      contents = open(this.directory, mark)
    } catch (err) {
      throw new StoreError(`cannot open the queue store's journal in ${this.directory}: ${errorMessage(err)}`, { cause: err })
    }
    const { file } = contents
    try {
      const past = mark !== null && mark.epoch === file.epoch ? mark.offset : 0
      const records = contents.records.filter((r) => r.end > past)
      const problems: string[] = contents.problem === null ? [] : [contents.problem]
      // The records go back into one group as the keys and values they were made of.
      const group = newGroup(false)
      const peers = new Map<string, string>()
      let replayed = 0
      for (const r of records) {
        // Each record on its own first: one that cannot be read adds none of its operations.
        const one: Replayed = { keys: [], values: [], deltas: new Map(), bytes: 0 }
        const wrong = replayRecord(r.payload, one, peers)
        if (wrong !== null) {
          problems.push(`its journal ${contents.path} has a record it cannot read, ending at byte ${r.end}: ${wrong}`)
          break
        }
        for (let i = 0; i < one.keys.length; i++) {
          group.keys.push(one.keys[i]!)
          group.values.push(one.values[i])
        }
        group.bytes += one.bytes
        for (const [peer, d] of one.deltas) addDelta(group, peer, d.count, d.bytes)
        replayed++
      }
      if (problems.length > 0) {
        if (opened.salvaged === null) throw new StoreCorruptError(this.directory, problems)
        opened.salvaged.problems.push(...problems.map((p) => `${p} (what follows it is dropped)`))
        this.log.error('queue store salvaged', { directory: this.directory, problems: problems.join('; ') })
      }
      if (contents.tornBytes > 0) this.log.info('queue store journal ended in a write cut short, dropped', { directory: this.directory, bytes: contents.tornBytes })
      if (replayed > 0) {
        group.epoch = file.epoch
        group.journalEnd = records[replayed - 1]!.end
        this.groups.push(group)
        this.flush()
        await group.promise
        this.log.info('queue store journal replayed', { directory: this.directory, batches: replayed })
      }
      file.reset(Math.max(file.epoch, mark?.epoch ?? 0) + 1)
    } catch (err) {
      file.close()
      if (err instanceof StoreError) throw err
      throw new StoreError(`replaying the queue store's journal ${contents.path} failed: ${errorMessage(err)}`, { cause: err })
    }
    this.journalPath = contents.path
    if (options.sync === true || options.journal === false) file.close()
    else this.journal = file
  }

  claim (owner: object): void {
    if (this.owner !== null && this.owner !== owner) throw new StoreInUseError(`the queue store ${this.directory} is already used by another Messaging`)
    this.owner = owner
  }

  release (owner: object): void {
    if (this.owner === owner) this.owner = null
  }

  /**
   * Reads every message (ordered by peer, then seq) and every clock, in one pass
   * over a snapshot of the database; writes still in flight may or may not be in
   * it. Checks each peer's count against its messages: rejects with
   * StoreCorruptError if they differ, or if an entry cannot be decoded.
   */
  async load (): Promise<StoreContents> {
    const db = await this.startRead()
    const messages: StoredMessage[] = []
    const clocks = new Map<string, PeerClock>()
    const found = new Map<string, Count>()
    const counted = new Map<string, Count>()
    try {
      let lastHex: string | null = null
      let lastPeer = ''
      let lastCount: Count = { count: 0, bytes: 0 }
      const iterator = db.iterator()
      try {
        for (;;) {
          const entries = await this.step(iterator)
          if (entries.length === 0) break
          for (const [key, value] of entries) {
            const kind = key.charAt(0)
            if (kind === MESSAGE_PREFIX) {
              const sep = key.length - SEQ_DIGITS - 1
              if (sep < 1 || key.charAt(sep) !== SEQ_SEPARATOR) throw this.corrupt(`malformed message key ${JSON.stringify(key)}`)
              const hex = key.slice(1, sep)
              if (hex !== lastHex) {
                lastPeer = decodePeer(hex) ?? this.fail(`malformed peer in key ${JSON.stringify(key)}`)
                lastHex = hex
                found.set(lastPeer, lastCount = { count: 0, bytes: 0 })
              }
              const m = decodeMessage(lastPeer, key.slice(sep + 1), value)
              if (typeof m === 'string') throw this.corrupt(`${m} (key ${JSON.stringify(key)})`)
              messages.push(m)
              lastCount.count++
              lastCount.bytes += m.data.byteLength
            } else if (kind === CLOCK_PREFIX) {
              const peer = decodePeer(key.slice(1)) ?? this.fail(`malformed peer in key ${JSON.stringify(key)}`)
              const clock = decodeClock(value)
              if (typeof clock === 'string') throw this.corrupt(`${clock} (key ${JSON.stringify(key)})`)
              clocks.set(peer, clock)
            } else if (kind === COUNT_PREFIX) {
              const peer = decodePeer(key.slice(1)) ?? this.fail(`malformed peer in key ${JSON.stringify(key)}`)
              counted.set(peer, decodeCount(value) ?? this.fail(`malformed count (key ${JSON.stringify(key)})`))
            } else if (key !== VERSION_KEY && key !== JOURNAL_KEY) {
              throw this.corrupt(`unknown key ${JSON.stringify(key)}`)
            }
          }
        }
      } finally {
        await iterator.close().catch(() => {})
      }
    } finally {
      this.endRead()
    }
    const problems = compareCounts(counted, found).map(describeMismatch)
    if (problems.length > 0) throw this.corrupt(...problems)
    this.log.debug('queue store loaded', { directory: this.directory, messages: messages.length, clocks: clocks.size })
    return { messages, clocks }
  }

  /**
   * The count keys, the clocks and each peer's first and last seq, from one
   * snapshot: two seeks per peer, whatever the depth of its queue. Rejects with
   * StoreCorruptError if a count cannot be right (messages without a count, a
   * count without messages, more messages than seqs between the first and the
   * last).
   */
  async summary (): Promise<StoreSummary> {
    const db = await this.startRead()
    // IndexedDB has no explicit snapshots; this runs before anything is written to the store.
    const snapshot = db.supports.explicitSnapshots ? db.snapshot() : undefined
    const clocks = new Map<string, PeerClock>()
    const counted = new Map<string, Count>()
    const ranges = new Map<string, { first: number, last: number }>()
    const problems: string[] = []
    try {
      for (const [key, value] of await this.all(db.iterator({ gte: CLOCK_PREFIX, lt: nextPrefix(CLOCK_PREFIX), snapshot }))) {
        const peer = decodePeer(key.slice(1)) ?? this.fail(`malformed peer in key ${JSON.stringify(key)}`)
        const clock = decodeClock(value)
        if (typeof clock === 'string') throw this.corrupt(`${clock} (key ${JSON.stringify(key)})`)
        clocks.set(peer, clock)
      }
      for (const [key, value] of await this.all(db.iterator({ gte: COUNT_PREFIX, lt: nextPrefix(COUNT_PREFIX), snapshot }))) {
        const peer = decodePeer(key.slice(1)) ?? this.fail(`malformed peer in key ${JSON.stringify(key)}`)
        counted.set(peer, decodeCount(value) ?? this.fail(`malformed count (key ${JSON.stringify(key)})`))
      }
      // A skip scan: the first message of each peer, then a seek past its queue;
      // a reverse seek to the end of that queue gives its last message.
      const range = { gte: MESSAGE_PREFIX, lt: nextPrefix(MESSAGE_PREFIX), snapshot, values: false }
      const forward = db.iterator(range)
      const backward = db.iterator({ ...range, reverse: true })
      try {
        for (let entry = await this.next(forward); entry !== undefined; entry = await this.next(forward)) {
          const first = splitMessageKey(entry[0]) ?? this.fail(`malformed message key ${JSON.stringify(entry[0])}`)
          const end = MESSAGE_PREFIX + first.hex + PEER_END
          backward.seek(end)
          const lastKey = (await this.next(backward))?.[0]
          const last = lastKey === undefined ? undefined : splitMessageKey(lastKey)
          if (last === undefined || last.hex !== first.hex) throw this.corrupt(`the message keys of one peer moved while read (key ${JSON.stringify(entry[0])})`)
          ranges.set(first.peer, { first: first.seq, last: last.seq })
          forward.seek(end)
        }
      } finally {
        await Promise.all([forward.close().catch(() => {}), backward.close().catch(() => {})])
      }
    } finally {
      await snapshot?.close().catch(() => {})
      this.endRead()
    }
    const queues: QueueSummary[] = []
    for (const [peer, { first, last }] of ranges) {
      const c = counted.get(peer)
      if (c === undefined) problems.push(`${JSON.stringify(peer)} has messages but no count`)
      else if (c.count > last - first + 1) problems.push(`the count of ${JSON.stringify(peer)} says ${c.count} messages, but its seqs run from ${first} to ${last} only`)
      else queues.push({ peer, count: c.count, bytes: c.bytes, nextSeq: last + 1 })
    }
    for (const [peer, c] of counted) {
      if (!ranges.has(peer)) problems.push(`the count of ${JSON.stringify(peer)} says ${c.count} messages, and there are none`)
    }
    if (problems.length > 0) throw this.corrupt(...problems)
    return { queues, clocks }
  }

  /** Up to `limit` messages of `peer` from seq `fromSeq` on, in seq order: one range read. */
  async read (peer: string, fromSeq: number, limit: number): Promise<StoredMessage[]> {
    checkRead(peer, fromSeq, limit)
    if (limit === 0) return []
    const db = await this.startRead()
    let entries: Array<[string, Uint8Array]>
    try {
      const hex = encodePeer(peer)
      entries = await this.all(db.iterator({ gte: messageKey(hex, fromSeq), lt: MESSAGE_PREFIX + hex + PEER_END, limit }))
    } finally {
      this.endRead()
    }
    return entries.map(([key, value]) => {
      const m = decodeMessage(peer, key.slice(key.length - SEQ_DIGITS), value)
      if (typeof m === 'string') throw this.corrupt(`${m} (key ${JSON.stringify(key)})`)
      return m
    })
  }

  /**
   * Applies `batch` atomically: puts, then deletes, then clocks, and the counts
   * of the peers it touches. Calls made in the same tick, or while an earlier
   * batch is being written, are merged into one LevelDB batch (in call order);
   * the promise resolves once the LevelDB batch holding this one is written (in
   * the operating system's hands, or on disk with `sync`), and rejects with
   * StoreError (its `cause` the LevelDB error) if that fails, in which case none
   * of it was written. After a failure the store reopens the database before
   * writing again; writes made until that succeeds reject with StoreError.
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
    if (this.stalled !== null) return Promise.reject(this.stalledError(this.stalled.error))
    const journaled = this.journalTakes(batch)
    const group = this.openGroup(journaled)
    const start = group.keys.length
    this.addOps(group, batch)
    if (journaled) {
      try {
        group.journalEnd = this.append(group, start, batch)
        group.epoch = this.journal!.epoch
      } catch (err) {
        group.keys.length = start
        group.values.length = start
        return Promise.reject(new StoreError(`writing to the queue store ${this.directory} failed: ${errorMessage(err)}`, { cause: err }))
      }
    }
    const bytes = group.bytes
    this.addDeltas(group, batch)
    this.scheduleFlush()
    if (!journaled) return group.promise
    this.journaledBytes += group.bytes - bytes
    // A loop of awaited writes runs on microtasks, and the flush scheduled above would wait for it to
    // end: once a group is worth a batch, hand it to LevelDB now, whose worker writes it while the loop goes on.
    if (!this.writing && group.bytes >= JOURNAL_START_BYTES && this.groups[0] === group) this.flush()
    // What LevelDB does not have yet is held in memory: past a bound, the write resolves once the
    // group being written is done (a loop of awaited writes never yields to LevelDB otherwise).
    if (this.journaledBytes > JOURNAL_MAX_BEHIND_BYTES) return (this.inFlight ?? this.groups[0]!).attempt
    return RESOLVED
  }

  /** Why a write fails while journaled writes wait to be written again. */
  private stalledError (error: unknown): StoreError {
    const cause = error instanceof StoreError && error.cause !== undefined ? error.cause : error
    return new StoreError(
      `writing to the queue store ${this.directory} failed: ${errorMessage(cause)}; the writes before it are kept in its journal, and written to LevelDB once it can be`, { cause })
  }

  /** The batch goes to the journal, and write() resolves once it is there. */
  private journalTakes (batch: StoreBatch): boolean {
    const journal = this.journal
    if (journal === null || this.journalPaused || this.broken !== null || this.recovering !== null || this.fatal !== null) return false
    if (journal.size > JOURNAL_PAUSE_BYTES) {
      this.journalPaused = true
      return false
    }
    let bytes = 0
    for (const m of batch.put ?? []) bytes += m.data.byteLength
    return bytes <= JOURNAL_MAX_BATCH_BYTES
  }

  private addOps (group: Group, batch: StoreBatch): void {
    const { keys, values } = group
    for (const m of batch.put ?? []) {
      keys.push(this.messageKey(m.peer, m.seq))
      values.push(encodeMessage(m))
    }
    for (const r of batch.del ?? []) {
      keys.push(this.messageKey(r.peer, r.seq))
      values.push(undefined)
    }
    for (const [peer, clock] of batch.clocks ?? []) {
      keys.push(CLOCK_PREFIX + encodePeer(peer))
      values.push(encodeClock(clock))
    }
  }

  private addDeltas (group: Group, batch: StoreBatch): void {
    for (const m of batch.put ?? []) {
      group.bytes += HEADER_LENGTH + m.data.byteLength
      addDelta(group, m.peer, 1, m.data.byteLength)
    }
    for (const r of batch.del ?? []) addDelta(group, r.peer, -1, -r.size)
  }

  /**
   * Appends the operations `group` got from `start` on (those of `batch`) to the
   * journal as one record; returns the journal's size after it. Throws if the
   * append fails; a journal that cannot be cut back after that is given up.
   */
  private append (group: Group, start: number, batch: StoreBatch): number {
    const { keys, values } = group
    const dels = batch.del ?? []
    const firstDel = start + (batch.put?.length ?? 0)
    const journal = this.journal!
    let need = journal.headRoom
    for (let i = start; i < keys.length; i++) need += 1 + 4 + keys[i]!.length + 8 + (values[i]?.byteLength ?? 0)
    if (this.scratch.byteLength < need) this.scratch = allocUnsafe(Math.max(need, 64 * 1024))
    const buf = this.scratch
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
    let at = journal.headRoom
    for (let i = start; i < keys.length; i++) {
      const key = keys[i]!
      const value = values[i]
      buf[at] = value === undefined ? JOURNAL_DEL : i < firstDel ? JOURNAL_PUT : JOURNAL_CLOCK
      view.setUint32(at + 1, key.length, false)
      at += 5
      for (let k = 0; k < key.length; k++) buf[at + k] = key.charCodeAt(k)
      at += key.length
      if (value === undefined) {
        view.setFloat64(at, dels[i - firstDel]!.size, false)
        at += 8
      } else {
        view.setUint32(at, value.byteLength, false)
        buf.set(value, at + 4)
        at += 4 + value.byteLength
      }
    }
    try {
      return journal.append(buf, at)
    } catch (err) {
      if ((err as { name?: string }).name === 'JournalBrokenError') {
        this.log.error('queue store journal given up: it could not be cut back after a failed write', { directory: this.directory, error: err })
        this.journal = null
      }
      throw err
    }
  }

  /** Waits for every write() already made, then closes the database (ending any claim). Idempotent. */
  close (): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  async [Symbol.asyncDispose] (): Promise<void> {
    await this.close()
  }

  private async shutdown (): Promise<void> {
    if (this.writing || this.groups.length > 0) {
      const idle = new Promise<void>((resolve) => { this.onIdle = resolve })
      // A journaled group waiting to be tried again is tried now, once: closing does not wait for a disk to come back.
      if (this.retryTimer !== null) {
        clearTimeout(this.retryTimer)
        this.retryTimer = null
        this.flush()
      }
      await idle
    }
    if (this.recovering !== null) await this.recovering
    await this.readsFinished()
    this.owner = null
    try {
      if (this.dbOpen) {
        this.dbOpen = false
        await this.db.close()
      }
    } catch (err) {
      throw new StoreError(`closing the queue store ${this.directory} failed: ${errorMessage(err)}`, { cause: err })
    } finally {
      this.journal?.close()
      this.journal = null
      // After the database: until it is closed, no other process may open it.
      const lock = this.lock
      this.lock = null
      await lock?.release().catch((err: unknown) => { this.log.warn('releasing the queue store\'s lock failed', { directory: this.directory, error: err }) })
      openInThisProcess.delete(this.directory)
    }
    this.log.debug('queue store closed', { directory: this.directory })
  }

  /** The group that takes the next write: journaled writes and the others are never in one group. */
  private openGroup (journaled: boolean): Group {
    let group = this.groups.at(-1)
    if (group === undefined || group.bytes >= MAX_GROUP_BYTES || group.journaled !== journaled) {
      group = newGroup(journaled)
      this.groups.push(group)
      if (journaled) this.journaledPending++
    }
    if (journaled) this.newestJournaled = group
    return group
  }

  private scheduleFlush (): void {
    if (!this.writing && !this.flushScheduled) {
      // Wait for the rest of this tick's writes before starting the batch.
      this.flushScheduled = true
      nextTick(() => { this.flushScheduled = false; this.flush() })
    }
  }

  /** Writes the oldest group, then (when done) the next, one LevelDB batch at a time. */
  private flush (): void {
    if (this.writing || this.retryTimer !== null) return
    const group = this.groups.shift()
    if (group === undefined) {
      const onIdle = this.onIdle
      this.onIdle = null
      onIdle?.()
      return
    }
    this.writing = true
    this.inFlight = group
    const attempted = group.attempted
    this.writeGroup(group).then(() => {
      group.done = true
      if (group.journaled) {
        this.stalled = null
        this.journalCaughtUp(group)
      }
      group.resolve()
    }, (err: unknown) => {
      // A store found corrupt while reopening is not written again: what the journal has stays there, for an open with salvage.
      if (group.journaled && this.closing === null && this.fatal === null) {
        // Its writes resolved: they are in the journal, and go to LevelDB once it can be written again.
        // Until then writes fail (StoreError), and so do those waiting for LevelDB behind it: nothing is written out of order.
        this.stalled = { error: err }
        for (const g of this.groups) if (!g.journaled) g.reject(this.stalledError(err))
        const kept = this.groups.filter((g) => g.journaled)
        this.groups.length = 0
        this.groups.push(group, ...kept)
        group.attempt = new Promise((resolve) => { group.attempted = resolve })
        // Not unref'd: the process stays up until LevelDB has these writes, or close() leaves them to the journal.
        this.retryTimer = setTimeout(() => { this.retryTimer = null; this.flush() }, Math.max(REOPEN_DELAY_MIN, (this.broken?.retryAt ?? 0) - Date.now()))
      } else {
        // Closing (or corrupt): a journaled group is left to the journal, which the next open replays.
        if (group.journaled) {
          if (this.fatal !== null) this.stalled = { error: this.fatal }
          // Its records are only in the journal now: it is never started over while this store is open.
          this.journalKept = true
          this.journalCaughtUp(group)
        }
        group.reject(err)
      }
    }).finally(() => {
      this.writing = false
      this.inFlight = null
      attempted()
      this.flush()
    })
  }

  /** A journaled group is written (or left to the journal): start the journal over once LevelDB has all of it. */
  private journalCaughtUp (group: Group): void {
    this.journaledPending--
    this.journaledBytes -= group.bytes
    if (this.newestJournaled === group) this.newestJournaled = null
    const journal = this.journal
    if (journal === null || this.journaledPending > 0 || this.closing !== null || this.journalKept) return
    if (journal.size > JOURNAL_RESET_BYTES) {
      try {
        journal.reset(journal.epoch + 1)
        this.journalPaused = false
      } catch (err) {
        // Not started over, and maybe without a header now: given up, so nothing is appended to it.
        this.log.warn('queue store journal could not be started over; writes go to LevelDB only', { directory: this.directory, journal: this.journalPath, error: err })
        journal.close()
        this.journal = null
      }
    }
  }

  private async writeGroup (group: Group): Promise<void> {
    if (group.keys.length === 0 && group.journalEnd === 0) return
    await this.usable()
    let ops: ReturnType<Db['batch']> | undefined
    const after: Array<[string, Count]> = []
    try {
      ops = this.db.batch()
      const { keys, values } = group
      for (let i = 0; i < keys.length; i++) {
        const value = values[i]
        if (value === undefined) ops.del(keys[i]!)
        else ops.put(keys[i]!, value)
      }
      for (const [peer, delta] of group.deltas) {
        if (delta.count === 0 && delta.bytes === 0) continue
        const before = this.counts.get(peer)
        const count = { count: (before?.count ?? 0) + delta.count, bytes: (before?.bytes ?? 0) + delta.bytes }
        after.push([peer, count])
        const key = COUNT_PREFIX + encodePeer(peer)
        if (count.count > 0) ops.put(key, encodeCount(count))
        else ops.del(key)
      }
      if (group.journalEnd > 0) ops.put(JOURNAL_KEY, encodeJournalMark(group.epoch, group.journalEnd))
      await ops.write(this.batchOptions)
    } catch (err) {
      await ops?.close().catch(() => {})
      this.log.error('queue store write failed', { directory: this.directory, operations: group.keys.length, error: err })
      this.breakDown(err)
      throw new StoreError(`writing to the queue store ${this.directory} failed: ${errorMessage(err)}`, { cause: err })
    }
    this.batchesWritten++
    for (const [peer, count] of after) {
      if (count.count > 0) this.counts.set(peer, count)
      else this.counts.delete(peer)
    }
  }

  /** A write failed: stop using this log at once, and start reopening the database. */
  private breakDown (error: unknown): void {
    if (this.broken !== null) return
    this.broken = { error, retryAt: 0, delay: REOPEN_DELAY_MIN }
    this.recovering = this.recover()
  }

  /** Resolves once the database can be used; throws StoreError if it cannot be yet. */
  private async usable (): Promise<void> {
    for (;;) {
      if (this.fatal !== null) throw this.fatal
      if (this.recovering !== null) {
        await this.recovering
        continue
      }
      const broken = this.broken
      if (broken === null) return
      if (Date.now() < broken.retryAt) {
        throw new StoreError(
          `the queue store ${this.directory} is closed since a write failed, and reopening it failed (${errorMessage(broken.error)}); ` +
          `the next attempt is in ${broken.retryAt - Date.now()} ms`, { cause: broken.error })
      }
      this.recovering = this.recover()
    }
  }

  /**
   * Closes the database (ending its log where it failed) and opens it again;
   * never rejects. The platform's lock stays held throughout, so no other
   * process opens the store while the database is closed.
   */
  private async recover (): Promise<void> {
    const broken = this.broken
    if (broken === null) return
    try {
      await this.readsFinished()
      if (this.dbOpen) {
        this.dbOpen = false
        await this.db.close().catch((err: unknown) => { this.log.warn('closing the queue store after a failed write failed', { directory: this.directory, error: err }) })
      }
      const opened = await openDatabase(this.platform, this.directory, false, this.log)
      this.db = opened.db
      this.counts = opened.counts
      this.dbOpen = true
      this.broken = null
      this.log.info('queue store reopened after a failed write', { directory: this.directory })
    } catch (err) {
      if (err instanceof StoreCorruptError) {
        this.fatal = err
        this.log.error('queue store found corrupt while reopening it after a failed write', { directory: this.directory, error: err })
      } else {
        broken.error = err
        broken.retryAt = Date.now() + broken.delay
        this.log.warn('reopening the queue store after a failed write failed', { directory: this.directory, retryIn: broken.delay, error: err })
        broken.delay = Math.min(broken.delay * 2, REOPEN_DELAY_MAX)
      }
    } finally {
      this.recovering = null
    }
  }

  /** Waits until the database can be read, and counts a read in progress (recovery waits for it). */
  private async startRead (): Promise<Db> {
    // Journaled writes resolve before LevelDB has them: a read waits for those made before it.
    const behind = this.newestJournaled
    if (behind !== null) {
      while (!behind.done) {
        if (this.closing !== null) throw storeClosedError()
        await this.usable()
        await behind.attempt
      }
    }
    for (;;) {
      if (this.closing !== null) throw storeClosedError()
      // Counted in the same turn as the check, so a reopen cannot start in between.
      if (this.fatal === null && this.broken === null && this.recovering === null) {
        this.reads++
        return this.db
      }
      await this.usable()
    }
  }

  private endRead (): void {
    if (--this.reads > 0) return
    for (const done of this.readsDone) done()
    this.readsDone.clear()
  }

  private async readsFinished (): Promise<void> {
    if (this.reads > 0) await new Promise<void>((resolve) => { this.readsDone.add(resolve) })
  }

  private async step (iterator: { nextv: (size: number) => Promise<Array<[string, Uint8Array]>> }): Promise<Array<[string, Uint8Array]>> {
    try {
      return await iterator.nextv(LOAD_STEP)
    } catch (err) {
      throw this.readError(err)
    }
  }

  private async next<V> (iterator: { next: () => Promise<[string, V] | undefined> }): Promise<[string, V] | undefined> {
    try {
      return await iterator.next()
    } catch (err) {
      throw this.readError(err)
    }
  }

  private async all<V> (iterator: { all: () => Promise<Array<[string, V]>> }): Promise<Array<[string, V]>> {
    try {
      return await iterator.all()
    } catch (err) {
      throw this.readError(err)
    }
  }

  private readError (err: unknown): StoreError {
    if (hasCode(err, 'LEVEL_CORRUPTION')) return this.corrupt(`LevelDB: ${errorMessage(err)}`)
    return new StoreError(`reading the queue store ${this.directory} failed: ${errorMessage(err)}`, { cause: err })
  }

  /** A StoreCorruptError for this store; the store is marked so that later opens refuse it too. */
  private corrupt (...problems: string[]): StoreCorruptError {
    this.mark(problems)
    return new StoreCorruptError(this.directory, problems)
  }

  private fail (problem: string): never {
    throw this.corrupt(problem)
  }

  private mark (problems: readonly string[]): void {
    if (this.marked || this.closing !== null) return
    this.marked = true
    const group = this.openGroup(false)
    group.keys.push(MARKER_KEY)
    group.values.push(encodeMarker(problems, 0))
    this.scheduleFlush()
    group.promise.catch((err: unknown) => { this.log.warn('marking the queue store corrupt failed', { directory: this.directory, error: err }) })
  }

  private messageKey (peer: string, seq: number): string {
    if (peer !== this.lastPeer || this.lastPeerHex === '') {
      this.lastPeerHex = MESSAGE_PREFIX + encodePeer(peer) + SEQ_SEPARATOR
      this.lastPeer = peer
    }
    const s = seq.toString(16)
    return this.lastPeerHex + ZEROS[SEQ_DIGITS - s.length]! + s
  }
}

/** Node's process.nextTick where there is one (it runs before promise callbacks), else a microtask. */
const nextTick: (callback: () => void) => void = (globalThis as { process?: { nextTick?: (callback: () => void) => void } }).process?.nextTick ?? queueMicrotask

const HEX_SEQ = /^[0-9a-f]{14}$/
/** '0'.repeat(n) for n up to SEQ_DIGITS, made once. */
const ZEROS = Array.from({ length: SEQ_DIGITS + 1 }, (_, n) => '0'.repeat(n))
const HEX_PEER = /^(?:[0-9a-f]{4})*$/

const RESOLVED = Promise.resolve()

function newGroup (journaled: boolean): Group {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
  // A journaled group's writes have resolved already: nobody awaits its promise.
  if (journaled) promise.catch(() => {})
  let attempted!: () => void
  const attempt = new Promise<void>((res) => { attempted = res })
  return { keys: [], values: [], deltas: new Map(), bytes: 0, promise, resolve, reject, journaled, epoch: 0, journalEnd: 0, done: false, attempt, attempted }
}

/** The journal mark's value: the journal's epoch, and how far into it LevelDB has everything. */
function encodeJournalMark (epoch: number, offset: number): Uint8Array {
  const value = allocUnsafe(16)
  const view = new DataView(value.buffer, value.byteOffset, 16)
  view.setFloat64(0, epoch, false)
  view.setFloat64(8, offset, false)
  return value
}

/** The mark; null when there is none; undefined when it is malformed. */
function decodeJournalMark (value: Uint8Array | undefined): JournalMark | null | undefined {
  if (value === undefined) return null
  if (value.byteLength !== 16) return undefined
  const view = new DataView(value.buffer, value.byteOffset, 16)
  const epoch = view.getFloat64(0, false)
  const offset = view.getFloat64(8, false)
  return Number.isSafeInteger(epoch) && Number.isSafeInteger(offset) && offset >= 0 ? { epoch, offset } : undefined
}

const latin1 = new TextDecoder('latin1')

/** What a journal record adds to a group. */
type Replayed = Pick<Group, 'keys' | 'values' | 'deltas' | 'bytes'>

/**
 * Adds a journal record's operations to `group`, as the keys and values they
 * were written from, with their count changes; returns what is wrong with it,
 * or null. `peers` caches the peer of each key's hex.
 */
function replayRecord (payload: Uint8Array, group: Replayed, peers: Map<string, string>): string | null {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  const peerOf = (hex: string): string | undefined => {
    let peer = peers.get(hex)
    if (peer === undefined && (peer = decodePeer(hex)) !== undefined) peers.set(hex, peer)
    return peer
  }
  let at = 0
  while (at < payload.byteLength) {
    if (payload.byteLength - at < 5) return 'an operation cut short'
    const kind = payload[at]!
    const keyLength = view.getUint32(at + 1, false)
    at += 5
    if (payload.byteLength - at < keyLength) return 'a key cut short'
    const key = latin1.decode(payload.subarray(at, at + keyLength))
    at += keyLength
    if (kind === JOURNAL_DEL || kind === JOURNAL_PUT) {
      const sep = key.length - SEQ_DIGITS - 1
      const peer = sep >= 1 && key.charAt(0) === MESSAGE_PREFIX && key.charAt(sep) === SEQ_SEPARATOR && HEX_SEQ.test(key.slice(sep + 1)) ? peerOf(key.slice(1, sep)) : undefined
      if (peer === undefined) return `a malformed message key ${JSON.stringify(key)}`
      if (kind === JOURNAL_DEL) {
        if (payload.byteLength - at < 8) return 'a delete cut short'
        const size = view.getFloat64(at, false)
        at += 8
        if (!Number.isSafeInteger(size) || size < 0) return `a delete of ${JSON.stringify(key)} with a size of ${size}`
        group.keys.push(key)
        group.values.push(undefined)
        addDelta(group, peer, -1, -size)
        continue
      }
      const value = takeValue()
      if (typeof value === 'string') return value
      if (value.byteLength < HEADER_LENGTH) return `a message ${JSON.stringify(key)} shorter than its header`
      group.keys.push(key)
      group.values.push(value)
      group.bytes += value.byteLength
      addDelta(group, peer, 1, value.byteLength - HEADER_LENGTH)
    } else if (kind === JOURNAL_CLOCK) {
      const value = takeValue()
      if (typeof value === 'string') return value
      if (key.charAt(0) !== CLOCK_PREFIX || decodePeer(key.slice(1)) === undefined || typeof decodeClock(value) === 'string') return `a malformed clock ${JSON.stringify(key)}`
      group.keys.push(key)
      group.values.push(value)
    } else {
      return `an operation of unknown kind ${kind}`
    }
  }
  return null

  function takeValue (): Uint8Array | string {
    if (payload.byteLength - at < 4) return 'a value cut short'
    const length = view.getUint32(at, false)
    at += 4
    if (payload.byteLength - at < length) return 'a value cut short'
    const value = payload.subarray(at, at + length)
    at += length
    return value
  }
}

function addDelta (group: Pick<Group, 'deltas'>, peer: string, count: number, bytes: number): void {
  const delta = group.deltas.get(peer)
  if (delta === undefined) group.deltas.set(peer, { count, bytes })
  else {
    delta.count += count
    delta.bytes += bytes
  }
}

/** The smallest string above every string starting with `prefix` (one character). */
function nextPrefix (prefix: string): string {
  return String.fromCharCode(prefix.charCodeAt(0) + 1)
}

function messageKey (hex: string, seq: number): string {
  const s = seq.toString(16)
  return MESSAGE_PREFIX + hex + SEQ_SEPARATOR + ZEROS[SEQ_DIGITS - s.length]! + s
}

/** The peer (as hex and decoded) and seq of a message key; undefined if malformed. */
function splitMessageKey (key: string): { hex: string, peer: string, seq: number } | undefined {
  const sep = key.length - SEQ_DIGITS - 1
  if (sep < 1 || key.charAt(0) !== MESSAGE_PREFIX || key.charAt(sep) !== SEQ_SEPARATOR) return undefined
  const hex = key.slice(1, sep)
  const peer = decodePeer(hex)
  const seqHex = key.slice(sep + 1)
  if (peer === undefined || !HEX_SEQ.test(seqHex)) return undefined
  const seq = parseInt(seqHex, 16)
  return Number.isSafeInteger(seq) ? { hex, peer, seq } : undefined
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

/** Where encodeMessage puts a message's expiry and flags first: one per process, not a DataView per message. */
const headScratch = new Uint8Array(12)
const headView = new DataView(headScratch.buffer)

function encodeMessage (m: StoredMessage): Uint8Array {
  const value = allocUnsafe(HEADER_LENGTH + m.data.byteLength)
  value.set(m.uuid, 0)
  headView.setFloat64(0, m.expiry, false)
  headView.setUint32(8, m.flags, false)
  value.set(headScratch, UUID_LENGTH)
  value.set(m.data, HEADER_LENGTH)
  return value
}

/** The message, or what is wrong with it. */
function decodeMessage (peer: string, seqHex: string, value: Uint8Array): StoredMessage | string {
  if (!HEX_SEQ.test(seqHex)) return 'malformed seq in key'
  const seq = parseInt(seqHex, 16)
  if (!Number.isSafeInteger(seq)) return 'seq out of range'
  if (value.byteLength < HEADER_LENGTH) return `message value of ${value.byteLength} bytes is shorter than its ${HEADER_LENGTH}-byte header`
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  const expiry = view.getFloat64(UUID_LENGTH, false)
  if (Number.isNaN(expiry)) return 'expiry is NaN'
  return {
    peer,
    seq,
    uuid: value.subarray(0, UUID_LENGTH),
    expiry,
    flags: view.getUint32(UUID_LENGTH + 8, false),
    data: value.subarray(HEADER_LENGTH)
  }
}

function encodeClock (clock: PeerClock): Uint8Array {
  const value = allocUnsafe(clock.minExpiry === undefined ? CLOCK_LENGTH : CLOCK_WITH_EXPIRY_LENGTH)
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  view.setFloat64(0, clock.offline, false)
  view.setFloat64(8, clock.since, false)
  view.setUint8(16, clock.connected ? 1 : 0)
  if (clock.minExpiry !== undefined) view.setFloat64(CLOCK_LENGTH, clock.minExpiry, false)
  return value
}

/** The clock, or what is wrong with it. */
function decodeClock (value: Uint8Array): PeerClock | string {
  if (value.byteLength !== CLOCK_LENGTH && value.byteLength !== CLOCK_WITH_EXPIRY_LENGTH) {
    return `clock value of ${value.byteLength} bytes, not ${CLOCK_LENGTH} or ${CLOCK_WITH_EXPIRY_LENGTH}`
  }
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  const offline = view.getFloat64(0, false)
  const since = view.getFloat64(8, false)
  const connected = view.getUint8(16)
  if (Number.isNaN(offline) || Number.isNaN(since) || connected > 1) return 'malformed clock'
  const clock: PeerClock = { offline, since, connected: connected === 1 }
  if (value.byteLength === CLOCK_WITH_EXPIRY_LENGTH) {
    const minExpiry = view.getFloat64(CLOCK_LENGTH, false)
    if (Number.isNaN(minExpiry)) return 'malformed clock'
    clock.minExpiry = minExpiry
  }
  return clock
}

function encodeCount (count: Count): Uint8Array {
  const value = allocUnsafe(COUNT_LENGTH)
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  view.setFloat64(0, count.count, false)
  view.setFloat64(8, count.bytes, false)
  return value
}

function decodeCount (value: Uint8Array): Count | undefined {
  if (value.byteLength !== COUNT_LENGTH) return undefined
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  const count = view.getFloat64(0, false)
  const bytes = view.getFloat64(8, false)
  if (!Number.isSafeInteger(count) || count < 1 || !Number.isSafeInteger(bytes) || bytes < 0) return undefined
  return { count, bytes }
}

/** The corruption mark: what was found wrong, and how many bytes LevelDB said it dropped. */
function encodeMarker (problems: readonly string[], droppedBytes: number): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ problems, droppedBytes }))
}

function decodeMarker (value: Uint8Array): { problems: string[], droppedBytes: number } {
  const text = new TextDecoder().decode(value)
  try {
    const { problems, droppedBytes } = JSON.parse(text) as { problems?: unknown, droppedBytes?: unknown }
    if (Array.isArray(problems) && problems.every((p) => typeof p === 'string') && Number.isSafeInteger(droppedBytes)) {
      return { problems, droppedBytes: droppedBytes as number }
    }
  } catch {
    // Not JSON: a mark written by hand, or damaged; its text is all there is.
  }
  return { problems: [text], droppedBytes: 0 }
}

/** The peers whose count (`counted`) differs from what is there (`found`). */
function compareCounts (counted: ReadonlyMap<string, Count>, found: ReadonlyMap<string, Count>): SalvagedQueue[] {
  const out: SalvagedQueue[] = []
  for (const peer of new Set([...counted.keys(), ...found.keys()])) {
    const c = counted.get(peer) ?? { count: 0, bytes: 0 }
    const f = found.get(peer) ?? { count: 0, bytes: 0 }
    if (c.count !== f.count || c.bytes !== f.bytes) out.push({ peer, expected: c.count, found: f.count, expectedBytes: c.bytes, foundBytes: f.bytes })
  }
  return out.sort((a, b) => a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0)
}

function describeMismatch (q: SalvagedQueue): string {
  return `the count of ${JSON.stringify(q.peer)} says ${q.expected} messages (${q.expectedBytes} bytes), and there are ${q.found} (${q.foundBytes} bytes)`
}

let levelModule: Promise<typeof LevelModule> | null = null

/** @internal LevelDB, loaded on first use, so that importing snakemq does not load its native addon. */
export async function loadLevel (): Promise<typeof LevelModule> {
  levelModule ??= import('level')
  try {
    return await levelModule
  } catch (err) {
    levelModule = null
    throw new StoreError(`cannot load LevelDB (the "level" package and its native addon, classic-level): ${errorMessage(err)}`, { cause: err })
  }
}

/**
 * Opens the LevelDB database in `location` as a queue store: checks for damage,
 * stamps or upgrades the format, reads the counts, and with `salvage` repairs
 * what it can and reports the rest.
 */
async function openDatabase (platform: LevelPlatform, location: string, salvage: boolean, log: Logger): Promise<Opened> {
  const { Level } = await loadLevel()
  const problems: string[] = []
  let droppedBytes = 0
  let repaired = false
  const repair = async (): Promise<void> => {
    // Level's universal type leaves it out; classic-level, which it is in Node, has it.
    const repairDb = (Level as unknown as { repair?: (location: string) => Promise<void> }).repair
    try {
      if (typeof repairDb !== 'function') throw new Error('this LevelDB binding has no repair()')
      await repairDb.call(Level, location)
    } catch (err) {
      throw new StoreCorruptError(location, [...problems, `LevelDB could not repair it: ${errorMessage(err)}`], { cause: err })
    }
    repaired = true
    const drops = await platform.recoveryDrops(location)
    if (drops !== null) {
      problems.push(`LevelDB's repair ${drops.text}`)
      droppedBytes += drops.bytes
    }
  }

  const damage = await platform.missingFiles(location)
  if (damage !== null) {
    problems.push(damage)
    if (!salvage) throw new StoreCorruptError(location, problems)
    await repair()
  }
  let db: Db = new Level<string, Uint8Array>(location, { valueEncoding: 'view' })
  try {
    await db.open()
  } catch (err) {
    if (hasCode(err, 'LEVEL_LOCKED')) throw new StoreLockedError(location, { cause: err })
    if (!hasCode(err, 'LEVEL_CORRUPTION')) throw new StoreError(`cannot open the queue store ${location}: ${errorMessage(err)}`, { cause: err })
    problems.push(`LevelDB cannot open it: ${errorMessage(err)}`)
    if (!salvage || repaired) throw new StoreCorruptError(location, problems, { cause: err })
    await repair()
    db = new Level<string, Uint8Array>(location, { valueEncoding: 'view' })
    try {
      await db.open()
    } catch (err2) {
      throw new StoreCorruptError(location, [...problems, `LevelDB cannot open it after repairing it: ${errorMessage(err2)}`], { cause: err2 })
    }
  }
  try {
    const drops = await platform.recoveryDrops(location)
    if (drops !== null) {
      problems.push(`LevelDB ${drops.text}`)
      droppedBytes += drops.bytes
    }
    const marker = await db.get(MARKER_KEY)
    if (marker !== undefined) {
      const earlier = decodeMarker(marker)
      problems.push(`an earlier open found it corrupt: ${earlier.problems.join('; ')}`)
      droppedBytes += earlier.droppedBytes
    }
    if (problems.length > 0 && !salvage) {
      // LevelDB has already dropped what it dropped: say so to every later open too.
      if (marker === undefined) await db.put(MARKER_KEY, encodeMarker(problems, droppedBytes), { sync: true }).catch(() => {})
      throw new StoreCorruptError(location, problems)
    }
    const counts = await prepareFormat(db, location, log)
    const salvaged = salvage ? await salvageStore(db, location, counts, problems, droppedBytes, log) : null
    return { db, counts: salvaged === null ? counts : await readCounts(db, location), salvaged }
  } catch (err) {
    await db.close().catch(() => {})
    if (err instanceof StoreError) throw err
    if (hasCode(err, 'LEVEL_CORRUPTION')) throw new StoreCorruptError(location, [...problems, `LevelDB: ${errorMessage(err)}`], { cause: err })
    throw new StoreError(`reading the queue store ${location} failed: ${errorMessage(err)}`, { cause: err })
  }
}

/** Stamps a new, empty database with the format version, upgrades format 1, refuses anything else; returns the counts. */
async function prepareFormat (db: Db, location: string, log: Logger): Promise<Map<string, Count>> {
  const version = await db.get(VERSION_KEY)
  if (version === undefined) {
    const keys = await db.keys({ limit: 2 }).all()
    if (keys.some((k) => k !== MARKER_KEY)) throw new StoreError(`${location} is a LevelDB database but not a snakemq queue store (it has no format version)`)
    await db.put(VERSION_KEY, Uint8Array.of(LEVEL_STORE_FORMAT), { sync: true })
    return new Map()
  }
  if (version.byteLength === 1 && version[0] === LEVEL_STORE_FORMAT) return await readCounts(db, location)
  if (version.byteLength === 1 && version[0] === 2) {
    // Format 2 is format 3 without a journal: only the version changes (so that a version reading format 2, which knows no journal, refuses it).
    await db.put(VERSION_KEY, Uint8Array.of(LEVEL_STORE_FORMAT), { sync: true })
    log.info('queue store upgraded from format 2', { directory: location })
    return await readCounts(db, location)
  }
  if (version.byteLength === 1 && version[0] === 1) {
    // Format 1 kept no counts: count once, and write them with the new version in one batch.
    const counts = await countMessages(db, location)
    const ops = db.batch()
    let messages = 0
    for (const [peer, c] of counts) {
      ops.put(COUNT_PREFIX + encodePeer(peer), encodeCount(c))
      messages += c.count
    }
    ops.put(VERSION_KEY, Uint8Array.of(LEVEL_STORE_FORMAT))
    await ops.write({ sync: true })
    log.info('queue store upgraded from format 1', { directory: location, messages, peers: counts.size })
    return counts
  }
  throw new StoreError(`the queue store ${location} has format version ${version.byteLength === 1 ? String(version[0]) : 'unknown'}; this version of snakemq reads format ${LEVEL_STORE_FORMAT} (and upgrades format 1)`)
}

async function readCounts (db: Db, location: string): Promise<Map<string, Count>> {
  const counts = new Map<string, Count>()
  for (const [key, value] of await db.iterator({ gte: COUNT_PREFIX, lt: nextPrefix(COUNT_PREFIX) }).all()) {
    const peer = decodePeer(key.slice(1))
    const count = decodeCount(value)
    if (peer === undefined || count === undefined) throw new StoreCorruptError(location, [`malformed count (key ${JSON.stringify(key)})`])
    counts.set(peer, count)
  }
  return counts
}

/** Counts every peer's messages and bytes, reading them all. */
async function countMessages (db: Db, location: string): Promise<Map<string, Count>> {
  const counts = new Map<string, Count>()
  let lastHex: string | null = null
  let last: Count = { count: 0, bytes: 0 }
  const iterator = db.iterator({ gte: MESSAGE_PREFIX, lt: nextPrefix(MESSAGE_PREFIX) })
  try {
    for (let entries = await iterator.nextv(LOAD_STEP); entries.length > 0; entries = await iterator.nextv(LOAD_STEP)) {
      for (const [key, value] of entries) {
        const k = splitMessageKey(key)
        if (k === undefined || value.byteLength < HEADER_LENGTH) throw new StoreCorruptError(location, [`malformed message (key ${JSON.stringify(key)})`])
        if (k.hex !== lastHex) {
          lastHex = k.hex
          counts.set(k.peer, last = { count: 0, bytes: 0 })
        }
        last.count++
        last.bytes += value.byteLength - HEADER_LENGTH
      }
    }
  } finally {
    await iterator.close().catch(() => {})
  }
  return counts
}

/**
 * Reads the whole store, removes what cannot be decoded, sets every count to
 * what is there and removes the corruption mark; returns what it found and
 * logs it.
 */
async function salvageStore (db: Db, location: string, counts: ReadonlyMap<string, Count>, problems: string[], droppedBytes: number, log: Logger): Promise<SalvageReport> {
  const found = new Map<string, Count>()
  const ops = db.batch()
  let malformed = 0
  let lastHex: string | null = null
  let last: Count = { count: 0, bytes: 0 }
  const iterator = db.iterator()
  try {
    for (let entries = await iterator.nextv(LOAD_STEP); entries.length > 0; entries = await iterator.nextv(LOAD_STEP)) {
      for (const [key, value] of entries) {
        const kind = key.charAt(0)
        let good: boolean
        if (kind === MESSAGE_PREFIX) {
          const k = splitMessageKey(key)
          good = k !== undefined && typeof decodeMessage(k.peer, key.slice(key.length - SEQ_DIGITS), value) !== 'string'
          if (k !== undefined && good) {
            if (k.hex !== lastHex) {
              lastHex = k.hex
              found.set(k.peer, last = { count: 0, bytes: 0 })
            }
            last.count++
            last.bytes += value.byteLength - HEADER_LENGTH
          }
        } else if (kind === CLOCK_PREFIX) {
          good = decodePeer(key.slice(1)) !== undefined && typeof decodeClock(value) !== 'string'
        } else if (kind === COUNT_PREFIX) {
          good = decodePeer(key.slice(1)) !== undefined && decodeCount(value) !== undefined
          if (!good) ops.del(key)
          continue // rewritten below (a malformed one is not a lost message)
        } else {
          good = key === VERSION_KEY || key === MARKER_KEY || (key === JOURNAL_KEY && decodeJournalMark(value) !== undefined)
        }
        if (!good) {
          malformed++
          ops.del(key)
        }
      }
    }
  } finally {
    await iterator.close().catch(() => {})
  }
  if (malformed > 0) problems.push(`${malformed} entries could not be decoded and were removed`)
  const queues = compareCounts(counts, found)
  for (const q of queues) {
    const key = COUNT_PREFIX + encodePeer(q.peer)
    if (q.found > 0) ops.put(key, encodeCount({ count: q.found, bytes: q.foundBytes }))
    else ops.del(key)
  }
  ops.del(MARKER_KEY)
  await ops.write({ sync: true })
  let lostMessages = 0
  for (const q of queues) lostMessages += Math.max(0, q.expected - q.found)
  const report: SalvageReport = { directory: location, problems, droppedBytes, malformed, queues, lostMessages }
  if (problems.length > 0 || queues.length > 0) {
    log.error('queue store salvaged', {
      directory: location, problems: problems.join('; '), droppedBytes, malformed, lostMessages,
      queues: queues.map((q) => `${JSON.stringify(q.peer)}: ${q.found} of ${q.expected}`).join(', ')
    })
  }
  return report
}

/** @internal Whether `err`, or an error in its chain of causes, has `code`. */
export function hasCode (err: unknown, code: string): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === code) return true
  }
  return false
}

/** @internal */
export function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
