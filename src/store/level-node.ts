// LevelStore in Node: LevelDB (classic-level) in a directory, with the checks
// of LevelDB's own files that LevelDB does not make itself (a missing CURRENT, the
// records its recovery dropped, as its LOG tells), and a lock on the directory
// that lasts as long as the store, which LevelDB's own does not.
import { readdir, readFile } from 'node:fs/promises'
import { join, resolve as resolvePath } from 'node:path'
import { StoreError, StoreLockedError } from '../errors.ts'
import { errorMessage, hasCode, LevelStoreBase, loadLevel, type LevelPlatform, type LevelStoreOptions, type StoreLock } from './level-base.ts'
import { JOURNAL_FILE, openNodeJournal } from './journal.ts'

export { LEVEL_STORE_FORMAT } from './level-base.ts'
export type { LevelStoreOptions, SalvageReport, SalvagedQueue } from './level-base.ts'

/**
 * What is missing from a LevelDB directory that LevelDB would not report: without
 * CURRENT it starts a new, empty database (and deletes the old tables); null if
 * nothing is missing (or there is no database yet).
 */
async function missingFiles (location: string): Promise<string | null> {
  let names: string[]
  try {
    names = await readdir(location)
  } catch {
    return null
  }
  if (!names.includes('CURRENT')) {
    const files = names.filter((n) => /^(?:MANIFEST-\d+|\d+\.(?:log|ldb|sst))$/.test(n))
    return files.length === 0 ? null : `its CURRENT file is missing (${files.length} LevelDB files are there)`
  }
  let current: string
  try {
    current = await readFile(join(location, 'CURRENT'), 'utf8')
  } catch (err) {
    return `its CURRENT file cannot be read: ${errorMessage(err)}`
  }
  const manifest = current.endsWith('\n') ? current.slice(0, -1) : current
  if (!/^MANIFEST-\d+$/.test(manifest)) return `its CURRENT file does not name a MANIFEST file (it holds ${JSON.stringify(current.slice(0, 40))})`
  if (!names.includes(manifest)) return `its CURRENT file names ${manifest}, which is missing`
  return null
}

/**
 * What LevelDB's LOG says it dropped while recovering (it starts a new LOG at
 * every open, so this is the last open's, or the last repair's); null if nothing.
 */
async function recoveryDrops (location: string): Promise<{ bytes: number, text: string } | null> {
  let text: string
  try {
    text = await readFile(join(location, 'LOG'), 'utf8')
  } catch {
    return null
  }
  let bytes = 0
  let records = 0
  let first = ''
  for (const line of text.split('\n')) {
    const m = /: dropping (\d+) bytes; (.*)$/.exec(line) ?? /Ignoring error (.*)$/.exec(line)
    if (m === null) continue
    records++
    if (m.length === 3) bytes += Number(m[1])
    if (first === '') first = (m.length === 3 ? m[2] : m[1]) ?? ''
  }
  if (records === 0) return null
  return { bytes, text: `dropped ${bytes} bytes of its log while recovering (${records} report${records === 1 ? '' : 's'}, the first: ${first})` }
}

/** The directory, in the store's, of the LevelDB database that is the store's lock and holds nothing else. */
export const LOCK_DIRECTORY = 'snakemq-lock'

/**
 * Takes the lock of the store in `location` for as long as the store is open.
 *
 * LevelDB's lock on the store's database is let go whenever the store closes
 * the database to reopen it after a failed write, and another process could
 * open the store in that gap. This one is held throughout: it is an empty
 * LevelDB database of its own, kept open only for the lock LevelDB takes on
 * its LOCK file. That is the same kind of lock as LevelDB's (fcntl, LockFileEx
 * on Windows), which Node cannot take without native code: the system lets go
 * of it when the process ends however it ends, so a crash never leaves the
 * store locked, as a lock file holding a pid could (the pid reused, or seen
 * from another pid namespace).
 */
async function lockStore (location: string): Promise<StoreLock> {
  const { Level } = await loadLevel()
  const path = join(location, LOCK_DIRECTORY)
  const db = new Level(path)
  try {
    await db.open()
  } catch (err) {
    if (hasCode(err, 'LEVEL_LOCKED')) throw new StoreLockedError(location, { cause: err })
    throw new StoreError(`cannot take the lock of the queue store ${location} (the LevelDB database ${path}): ${errorMessage(err)}`, { cause: err })
  }
  return { release: async () => { await db.close() } }
}

/** A file LevelDB keeps in its directory. */
const LEVELDB_FILE = /^(?:CURRENT|LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.(?:log|ldb|sst))$/
const isStoreEntry = (name: string): boolean => name === JOURNAL_FILE || name === LOCK_DIRECTORY || LEVELDB_FILE.test(name)

/** See LevelPlatform.foreign. */
async function foreign (location: string): Promise<string | null> {
  let names: string[]
  try {
    names = await readdir(location)
  } catch (err) {
    // Missing: LevelDB creates it. Not a directory, or unreadable: LevelDB's open says so.
    return hasCode(err, 'ENOTDIR') ? 'it is a file' : null
  }
  if (names.length === 0 || names.some(isStoreEntry)) return null
  const shown = names.slice(0, 3).map((n) => JSON.stringify(n)).join(', ')
  return `it holds ${names.length} ${names.length === 1 ? 'entry' : 'entries'} (${shown}${names.length > 3 ? ', ...' : ''}) and no LevelDB files`
}

const nodePlatform: LevelPlatform = { locate: (location) => resolvePath(location), missingFiles, foreign, recoveryDrops, openJournal: openNodeJournal, lock: lockStore }

/** A queue store in a LevelDB directory; `durable` is true. Open it with {@link LevelStore.open}. */
export class LevelStore extends LevelStoreBase {
  /**
   * Opens (creating if needed) the store in `directory`. Rejects with
   * StoreLockedError if another LevelStore, in this process or another, has it
   * open (while that one reopens its database after a failed write too); with StoreCorruptError if it is damaged (unless `salvage`); and with
   * StoreError if LevelDB cannot be loaded, or the directory cannot be opened
   * or is not a queue store. Loads LevelDB's native addon on first use.
   */
  static async open (directory: string, options: LevelStoreOptions = {}): Promise<LevelStore> {
    return await LevelStoreBase.openWith(nodePlatform, directory, options, (opened, location, log) => new LevelStore(opened, location, options, log, nodePlatform))
  }
}
