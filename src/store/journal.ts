// The queue store's write-ahead journal in Node: one file in the store's
// directory, appended to with a synchronous write per write() of the store, so a
// persistent send can resolve once its bytes are in the operating system's
// hands without waiting for LevelDB's worker thread (an awaited LevelDB batch
// costs 50-60 us here, the append 1 us). LevelDB is written behind it in groups;
// each group records in LevelDB how far into the journal it reaches, and open
// replays what lies past that. level-base.ts decides what goes in; this module
// only keeps the file: a header, then records, each framed as
//
//   header: 'SMQJ', version u8 (1), three zero bytes, epoch f64 BE    (16 bytes)
//   record: payload length u32 BE, CRC-32 of the payload u32 BE, payload
//
// The epoch tells one life of the file from the next: the file is emptied once
// LevelDB has everything in it, and starts again under a higher epoch.
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import type { JournalContents, JournalFile, JournalMark } from './level-base.ts'

/** The journal's file name in the store's directory (LevelDB leaves names it does not know alone). */
export const JOURNAL_FILE = 'snakemq-journal'
const MAGIC = [0x53, 0x4d, 0x51, 0x4a] // 'SMQJ'
const VERSION = 1
const HEADER_LENGTH = 16
const RECORD_HEAD = 8

class NodeJournal implements JournalFile {
  size: number
  readonly headRoom = RECORD_HEAD

  constructor (private fd: number | null, readonly path: string, public epoch: number, size: number) {
    this.size = size
  }

  append (record: Uint8Array, end: number): number {
    const fd = this.descriptor()
    const length = end - RECORD_HEAD
    const view = new DataView(record.buffer, record.byteOffset, RECORD_HEAD)
    view.setUint32(0, length, false)
    view.setUint32(4, crc32(record.subarray(RECORD_HEAD, end)), false)
    const start = this.size
    try {
      // Head and payload in one write(2).
      writeAll(fd, record, end)
    } catch (err) {
      // A torn record must not stay in front of the next one: cut the file back to where it was.
      try {
        ftruncateSync(fd, start)
      } catch {
        this.close()
        throw new JournalBrokenError(this.path, err)
      }
      throw err
    }
    this.size = start + end
    return this.size
  }

  reset (epoch: number): void {
    const fd = this.descriptor()
    ftruncateSync(fd, 0)
    this.size = 0
    writeAll(fd, header(epoch), HEADER_LENGTH)
    this.size = HEADER_LENGTH
    this.epoch = epoch
  }

  close (): void {
    if (this.fd === null) return
    const fd = this.fd
    this.fd = null
    closeSync(fd)
  }

  private descriptor (): number {
    if (this.fd === null) throw new JournalBrokenError(this.path, new Error('the journal is closed'))
    return this.fd
  }
}

/**
 * The journal could not be cut back after a failed append, so a torn record may
 * sit in it: it is closed, and the store stops using it.
 */
export class JournalBrokenError extends Error {
  constructor (readonly path: string, cause: unknown) {
    super(`the journal ${path} could not be cut back after a failed write`, { cause })
    this.name = 'JournalBrokenError'
  }
}

function writeAll (fd: number, bytes: Uint8Array, length: number): void {
  let done = 0
  while (done < length) done += writeSync(fd, bytes, done, length - done)
}

function header (epoch: number): Uint8Array {
  const h = new Uint8Array(HEADER_LENGTH)
  h.set(MAGIC, 0)
  h[4] = VERSION
  new DataView(h.buffer).setFloat64(8, epoch, false)
  return h
}

/**
 * Opens (creating it if missing) the journal in `directory` and reads it: the
 * records whose CRC holds, up to the first that does not. A record cut short at
 * the end of the file is a write that never finished (its write() never
 * resolved): it is reported as `tornBytes`, not as a problem. A bad record with
 * more after it, or a header that is not a journal's, is a `problem`.
 *
 * `known`: how far into the journal of that epoch LevelDB already has every
 * record (the store's mark). Reading starts there, at a record's end: what lies
 * before it is neither needed nor checked, so damage there cannot refuse an open.
 */
export function openNodeJournal (directory: string, known: JournalMark | null = null): JournalContents {
  const path = join(directory, JOURNAL_FILE)
  let bytes: Uint8Array
  try {
    bytes = readFileSync(path)
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err
    bytes = new Uint8Array(0)
  }
  const records: JournalContents['records'] = []
  let problem: string | null = null
  let tornBytes = 0
  let epoch = 0
  if (bytes.byteLength < HEADER_LENGTH) {
    // Empty, or a header cut short while the file was started over: nothing was ever appended to it.
    tornBytes = bytes.byteLength
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    if (MAGIC.some((b, i) => bytes[i] !== b) || bytes[4] !== VERSION) {
      problem = `its journal ${path} does not start with a version ${VERSION} journal header`
    } else {
      epoch = view.getFloat64(8, false)
      let at = HEADER_LENGTH
      if (known !== null && known.epoch === epoch && known.offset > at) at = Math.min(known.offset, bytes.byteLength)
      while (at < bytes.byteLength) {
        const left = bytes.byteLength - at
        if (left < RECORD_HEAD) { tornBytes = left; break }
        const length = view.getUint32(at, false)
        if (left < RECORD_HEAD + length) { tornBytes = left; break }
        const payload = bytes.subarray(at + RECORD_HEAD, at + RECORD_HEAD + length)
        if (crc32(payload) !== view.getUint32(at + 4, false)) {
          if (at + RECORD_HEAD + length === bytes.byteLength) { tornBytes = left; break }
          problem = `its journal ${path} has a damaged record at byte ${at} (${bytes.byteLength - at} bytes from there on unread)`
          break
        }
        at += RECORD_HEAD + length
        records.push({ end: at, payload })
      }
    }
  }
  const fd = openSync(path, 'a')
  return { file: new NodeJournal(fd, path, epoch, bytes.byteLength - tornBytes), records, problem, tornBytes, path }
}
