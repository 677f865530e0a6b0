// What one journal append costs, beside the awaited write it replaced: a
// record of the size one persistent 16-byte send makes (an 8-byte head and about
// 90 bytes of payload) checksummed with node:zlib's crc32 and appended with
// fs.writeSync, as src/store/journal.ts does; then the same record appended
// with an awaited fs.write (a round trip to libuv's thread pool, as LevelDB's
// own writes are). In the OS temp directory, which the tests and benchmarks
// use too.
//   node benchmarks/journal-append.mjs [--count N] [--rounds R]
import { closeSync, mkdtempSync, openSync, rmSync, write, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { crc32 } from 'node:zlib'

const { values } = parseArgs({ options: { count: { type: 'string', default: '50000' }, rounds: { type: 'string', default: '3' } } })
const count = Number(values.count)
const rounds = Number(values.rounds)
const dir = mkdtempSync(join(tmpdir(), 'snakemq-journal-append-'))
const fd = openSync(join(dir, 'journal'), 'a')
const record = Buffer.alloc(98, 7)
const view = new DataView(record.buffer, record.byteOffset, 8)

try {
  for (let r = 1; r <= rounds; r++) {
    let t = performance.now()
    for (let i = 0; i < count; i++) {
      view.setUint32(0, record.length - 8)
      view.setUint32(4, crc32(record.subarray(8)))
      writeSync(fd, record)
    }
    const syncUs = ((performance.now() - t) * 1000) / count
    t = performance.now()
    for (let i = 0; i < count / 10; i++) await new Promise((resolve, reject) => { write(fd, record, (err) => { if (err) reject(err); else resolve() }) })
    const asyncUs = ((performance.now() - t) * 1000) / (count / 10)
    console.log(`round ${r}: crc32 + writeSync ${syncUs.toFixed(2)} us per record; awaited fs.write ${asyncUs.toFixed(1)} us`)
  }
} finally {
  closeSync(fd)
  rmSync(dir, { recursive: true, force: true })
}
