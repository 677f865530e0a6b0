// LevelStore in a browser: the same store on IndexedDB, through `level`'s
// browser implementation (browser-level). A location is a database name; there
// are no LevelDB files to check, so damage shows only as entries that do not
// decode, which load() and summary() report as StoreCorruptError.
import { InvalidArgumentError } from '../errors.ts'
import { LevelStoreBase, type LevelPlatform, type LevelStoreOptions } from './level-base.ts'

export { LEVEL_STORE_FORMAT } from './level-base.ts'
export type { SalvageReport, SalvagedQueue } from './level-base.ts'

/** LevelStore's options in a browser: `sync` is Node's (IndexedDB commits each batch in a transaction of its own). */
export type BrowserLevelStoreOptions = Omit<LevelStoreOptions, 'sync'>

const browserPlatform: LevelPlatform = {
  locate: (name) => name,
  missingFiles: async () => null,
  recoveryDrops: async () => null
}

/** A queue store in an IndexedDB database; `durable` is true. Open it with {@link LevelStore.open}. */
export class LevelStore extends LevelStoreBase {
  /**
   * Opens (creating if needed) the store in the IndexedDB database `name` of
   * this page's origin (browser-level names it `level-js-<name>`). Rejects with
   * StoreLockedError if a LevelStore of this page has it open, with
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
