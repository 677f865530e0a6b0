// LevelStore in a browser: the same store on IndexedDB, through `level`'s
// browser implementation (browser-level). A location is a database name; there
// are no LevelDB files to check, so damage shows only as entries that do not
// decode, which load() and summary() report as StoreCorruptError.
//
// IndexedDB lets every tab and worker of an origin open the same database at
// once, and two stores on one database would each load and send the other's
// messages and write over each other's counts and seqs. So the store holds a
// Web Lock (navigator.locks) named after its database from open to close; the
// browser lets go of it when the page or worker goes away, so a closed or
// crashed tab never leaves the store locked.
import { InvalidArgumentError, StoreError, StoreLockedError } from '../errors.ts'
import type { Logger } from '../logging.ts'
import { errorMessage, LevelStoreBase, type LevelPlatform, type LevelStoreOptions, type StoreLock } from './level-base.ts'

export { LEVEL_STORE_FORMAT } from './level-base.ts'
export type { SalvageReport, SalvagedQueue } from './level-base.ts'

/** LevelStore's options in a browser: `sync` is Node's (IndexedDB commits each batch in a transaction of its own). */
export type BrowserLevelStoreOptions = Omit<LevelStoreOptions, 'sync'>

/** The part of the Web Locks API used here. */
interface LockManager {
  request (name: string, options: { signal: AbortSignal }, callback: (lock: unknown) => Promise<void>): Promise<void>
}

/**
 * How long open() waits for the store's lock before it gives up with
 * StoreLockedError, in ms. The browser lets go of the lock of a page that went
 * away (closed, crashed, or reloaded: the old document may still be ending
 * while the new one runs) a moment later, not at once.
 */
const LOCK_WAIT = 2000

/** The name of the Web Lock that keeps the store in IndexedDB database `name` to one tab or worker. */
function storeLockName (name: string): string {
  return `snakemq-store:${name}`
}

/**
 * Takes the Web Lock of the store `name` for as long as it is open; rejects
 * with StoreLockedError if another tab or worker of this origin holds it for
 * LOCK_WAIT ms.
 * Where there is no navigator.locks (a page served over plain http from
 * another host than localhost: Web Locks are for secure contexts only), the
 * store opens without a lock, saying so in a log line.
 */
async function lockStore (name: string, log: Logger): Promise<StoreLock> {
  const locks = (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks
  if (locks === undefined) {
    log.warn('queue store opened without a lock: this context has no navigator.locks (Web Locks need a secure context); do not open it in two tabs at once', { directory: name })
    return { release: async () => {} }
  }
  let release!: () => void
  const held = new Promise<void>((resolve) => { release = resolve })
  let granted!: (taken: true) => void
  const taking = new Promise<true>((resolve) => { granted = resolve })
  // A timer rather than AbortSignal.timeout(), which browsers got years after Web Locks.
  const waiting = new AbortController()
  const timer = setTimeout(() => { waiting.abort() }, LOCK_WAIT)
  const request = locks.request(storeLockName(name), { signal: waiting.signal }, async () => {
    granted(true)
    await held
  })
  // The request settles once the lock is let go, or when waiting for it fails (the signal aborted it).
  const ended = request.then(() => false, (err: unknown) => ({ err }))
  const taken = await Promise.race([taking, ended])
  clearTimeout(timer)
  if (taken !== true) {
    if (waiting.signal.aborted) throw new StoreLockedError(name, { holder: 'another tab or worker of this origin' })
    const cause = taken === false ? undefined : taken.err
    throw new StoreError(`cannot take the lock of the queue store ${name} (Web Lock ${storeLockName(name)}): ${errorMessage(cause)}`, { cause })
  }
  return {
    release: async () => {
      release()
      await ended
    }
  }
}

const browserPlatform: LevelPlatform = {
  locate: (name) => name,
  missingFiles: async () => null,
  recoveryDrops: async () => null,
  lock: lockStore
}

/** A queue store in an IndexedDB database; `durable` is true. Open it with {@link LevelStore.open}. */
export class LevelStore extends LevelStoreBase {
  /**
   * Opens (creating if needed) the store in the IndexedDB database `name` of
   * this page's origin (browser-level names it `level-js-<name>`). Rejects with
   * StoreLockedError if a LevelStore of this page, or of another tab or worker
   * of the origin, has it open (it holds a Web Lock from open to close; open
   * waits up to 2 s for another tab's to be let go), with
   * StoreCorruptError if it holds entries that are not a queue store's, and with
   * StoreError if IndexedDB cannot open it. `sync` is refused
   * (InvalidArgumentError): it is Node's.
   */
  static async open (name: string, options: BrowserLevelStoreOptions = {}): Promise<LevelStore> {
    if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('LevelStore.open: name must be a non-empty string')
    if ((options as LevelStoreOptions).sync !== undefined) {
      throw new InvalidArgumentError('LevelStore.open: sync is an option of LevelDB in Node; IndexedDB commits every batch in a transaction of its own')
    }
    return await LevelStoreBase.openWith(browserPlatform, name, options, (opened, location, log) => new LevelStore(opened, location, options, log, browserPlatform))
  }
}
