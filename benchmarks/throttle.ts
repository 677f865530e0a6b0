// npx tsx benchmarks/throttle.ts [--quick] [--seconds S] [--rates 10k,1M,...]
//
// How close the throttle comes to the rate asked for: for each rate, two links on
// 127.0.0.1 move rate × S bytes through one connection, throttled once on the
// sender's side (outgoing) and once on the receiver's (incoming), and the
// receiver measures bytes over time from the first write to the last byte. Also
// shows the CPU the process used per second of transfer, which stays low because
// the throttle sleeps on timers while it waits. Prints a table to stdout.
import { parseArgs } from 'node:util'
import { Link, type Connection, type ThrottleRates } from '../src/index.ts'

const USAGE = `usage: npx tsx benchmarks/throttle.ts [options]
  --quick          one second per measurement instead of three
  --seconds S      seconds of traffic per measurement (default 3, --quick 1)
  --rates LIST     rates in bytes/s, comma-separated, with k/M suffixes (default 10k,100k,1M,10M,50M)`

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    rates: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false }
  },
  strict: true
})
if (opt.help) { console.log(USAGE); process.exit(0) }

function parseRate (s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)$/.exec(s.trim())
  if (m === null) { console.error(`bad rate ${s}\n${USAGE}`); process.exit(2) }
  const mult = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 }[m[2]!]!
  return Number(m[1]) * mult
}

const seconds = opt.seconds !== undefined ? Number(opt.seconds) : opt.quick ? 1 : 3
if (!(seconds > 0)) { console.error(`--seconds must be a positive number\n${USAGE}`); process.exit(2) }
const rates = (opt.rates ?? '10k,100k,1M,10M,50M').split(',').map(parseRate)

interface Result { achieved: number, cpuPerSecond: number, seconds: number }

/** One transfer of rate × seconds bytes through a connection throttled on one side. */
async function run (rate: number, side: 'outgoing' | 'incoming'): Promise<Result> {
  const total = Math.round(rate * seconds)
  const sender = new Link()
  const receiver = new Link()
  try {
    const throttle: ThrottleRates = side === 'outgoing' ? { outgoing: rate } : { incoming: rate }
    const inbound = new Promise<Connection>((resolve) => receiver.once('connection', resolve))
    const outbound = new Promise<Connection>((resolve) => sender.once('connection', resolve))
    const listener = await receiver.listen({ port: 0, ...(side === 'incoming' ? { throttle } : {}) })
    sender.connect({ port: listener.port, reconnect: false, ...(side === 'outgoing' ? { throttle } : {}) })
    const [from, to] = await Promise.all([outbound, inbound])
    const chunk = new Uint8Array(65_536)
    async function * data (): AsyncGenerator<Uint8Array> {
      for (let left = total; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left)
    }
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const writing = from.sink(data())
    let got = 0
    for await (const c of to.source) {
      got += c.length
      if (got >= total) break
    }
    const elapsed = (performance.now() - t0) / 1000
    const cpu = process.cpuUsage(cpu0)
    await writing
    return { achieved: got / elapsed, cpuPerSecond: (cpu.user + cpu.system) / 1e6 / elapsed, seconds: elapsed }
  } finally {
    await sender.close()
    await receiver.close()
  }
}

function human (bytesPerSecond: number): string {
  if (bytesPerSecond >= 1e6) return `${(bytesPerSecond / 1e6).toFixed(2)} MB/s`
  return `${(bytesPerSecond / 1e3).toFixed(2)} kB/s`
}

const rows: string[][] = [['requested', 'side', 'achieved', 'error', 'seconds', 'CPU']]
for (const rate of rates) {
  for (const side of ['outgoing', 'incoming'] as const) {
    process.stderr.write(`${human(rate)} ${side} ...\n`)
    const r = await run(rate, side)
    const error = (r.achieved / rate - 1) * 100
    rows.push([human(rate), side, human(r.achieved), `${error >= 0 ? '+' : ''}${error.toFixed(1)} %`, r.seconds.toFixed(2), `${(r.cpuPerSecond * 100).toFixed(1)} %`])
  }
}

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
const line = (row: string[]): string => `| ${row.map((cell, i) => cell.padStart(widths[i]!)).join(' | ')} |`
console.log(line(rows[0]!))
console.log(`|${widths.map((w) => '-'.repeat(w + 1) + ':').join('|')}|`)
for (const row of rows.slice(1)) console.log(line(row))
console.log(`\n${seconds} s per measurement, Node ${process.version}, 127.0.0.1; CPU is the whole process (both ends) per second of transfer.`)
