// What one journal append costs, beside the awaited write it replaced: a
// record of the size one persistent 16-byte send makes (an 8-byte head and about
// 90 bytes of payload) checksummed with node:zlib's crc32 and appended with
// fs.writeSync, as src/store/journal.ts does; then the same record appended
// with an awaited fs.write (a round trip to libuv's thread pool, as LevelDB's
// own writes are). In the OS temp directory, which the tests and benchmarks
// use too.
//   node benchmarks/journal-append.mjs [--count N] [--rounds R]
//
// With --latency S: S seconds of appends, each timed, yielding to the event loop
// every 1,000 as a loop of sends does, the file cut back every 2 MiB as the
// journal is started over; prints the distribution of one append's time (the
// event loop waits that long). Run it beside a large write to see what the
// kernel's dirty-page throttling does to it, in a directory on a real disk:
//   dd if=/dev/zero of=/var/tmp/big bs=1M count=25000 & node benchmarks/journal-append.mjs --latency 40 --dir /var/tmp; wait; rm /var/tmp/big
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, write, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { setImmediate } from 'node:timers'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { crc32 } from 'node:zlib'

const { values } = parseArgs({ options: { count: { type: 'string', default: '50000' }, rounds: { type: 'string', default: '3' }, latency: { type: 'string' }, dir: { type: 'string' } } })
const count = Number(values.count)
const rounds = Number(values.rounds)
const dir = mkdtempSync(join(values.dir ?? tmpdir(), 'snakemq-journal-append-'))
const fd = openSync(join(dir, 'journal'), 'a')
const record = Buffer.alloc(98, 7)
const view = new DataView(record.buffer, record.byteOffset, 8)

/** One record checksummed and appended, as src/store/journal.ts does. */
function appendRecord () {
  view.setUint32(0, record.length - 8)
  view.setUint32(4, crc32(record.subarray(8)))
  writeSync(fd, record)
}

/** --latency: every append timed for `seconds`. */
async function latency (seconds) {
  const times = []
  let size = 0
  const end = performance.now() + seconds * 1000
  while (performance.now() < end) {
    const t = performance.now()
    appendRecord()
    times.push(performance.now() - t)
    size += record.length
    if (size > 2 * 1024 * 1024) { ftruncateSync(fd, 16); size = 16 }
    if (times.length % 1000 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  times.sort((a, b) => a - b)
  const us = (p) => Number((times[Math.min(times.length - 1, Math.floor(p * times.length))] * 1000).toFixed(1))
  console.log(JSON.stringify({ appends: times.length, p50_us: us(0.5), p99_us: us(0.99), p999_us: us(0.999), max_ms: Number(times[times.length - 1].toFixed(2)), over_1ms: times.filter((x) => x > 1).length, over_10ms: times.filter((x) => x > 10).length }))
}

try {
  if (values.latency !== undefined) await latency(Number(values.latency))
  else await compare()
} finally {
  closeSync(fd)
  rmSync(dir, { recursive: true, force: true })
}

/** The default: `rounds` of `count` appends, then a tenth as many awaited writes. */
async function compare () {
  for (let r = 1; r <= rounds; r++) {
    let t = performance.now()
    for (let i = 0; i < count; i++) appendRecord()
    const syncUs = ((performance.now() - t) * 1000) / count
    t = performance.now()
    for (let i = 0; i < count / 10; i++) await new Promise((resolve, reject) => { write(fd, record, (err) => { if (err) reject(err); else resolve() }) })
    const asyncUs = ((performance.now() - t) * 1000) / (count / 10)
    console.log(`round ${r}: crc32 + writeSync ${syncUs.toFixed(2)} us per record; awaited fs.write ${asyncUs.toFixed(1)} us`)
  }
}
