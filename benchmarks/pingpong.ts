// The bare round trip this machine gives two processes over loopback, with
// nothing but node:net: the floor under S3a's sequential p50, and a check of
// which state the machine is in (see PERFORMANCE.md, "Why S3a is bimodal").
// The server can be made to spend `--burn` µs of CPU per message before it
// answers, to show how a round trip grows with the work done on its path; or to
// run `--code` N distinct small functions per message, to compare what code
// costs in a round trip (after the process slept) with what it costs in a warm
// loop (printed alongside).
//
//   npx tsx benchmarks/pingpong.ts [--trips 20000] [--burn 0,2,4] [--code 0,100,300]
//   taskset -c 0 npx tsx benchmarks/pingpong.ts     (both processes on one CPU)
import net from 'node:net'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { percentile } from './harness/rpc-driver.ts'

const HOST = '127.0.0.1'
const WARMUP = 3000

/** `n` distinct functions (each compiled on its own), called one after the other per message. */
function codePath (n: number): (v: number) => number {
  const fns: Array<(v: number) => number> = []
  for (let i = 0; i < n; i++) {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- a benchmark's generated code, no input in it
    fns.push(new Function('a', `let x = a ^ ${i}; x = (x * ${i + 3}) | 0; x = x + ${i * 7} - (x >>> 3); if (x === ${i}) x++; return x ^ ${i * 13}`) as (v: number) => number)
  }
  return (v) => { for (const f of fns) v = f(v); return v }
}

/** µs per message of `codePath(n)` in a warm loop. */
function warmCost (n: number): number {
  const path = codePath(n)
  let v = 0
  for (let i = 0; i < 20_000; i++) v = path(v)
  const t = performance.now()
  for (let i = 0; i < 20_000; i++) v = path(v)
  return ((performance.now() - t) * 1000 / 20_000) + (v === 0.5 ? 1 : 0)
}

function spin (us: number): void {
  if (us <= 0) return
  const until = performance.now() + us / 1000
  while (performance.now() < until) { /* busy */ }
}

/** Child: echoes every chunk back after `burn` µs of work or `code` functions; tells the parent its port. */
async function serve (burn: number, code: number): Promise<void> {
  const path = codePath(code)
  const server = net.createServer({ noDelay: true }, (socket) => {
    // The functions' result goes back in the reply, so their calls cannot be dropped.
    socket.on('data', (chunk) => { spin(burn); chunk[0] = path(chunk[0]!) & 0xff; socket.write(chunk) })
    socket.on('error', () => { socket.destroy() })
    socket.on('close', () => { server.close(); process.disconnect?.() })
  })
  server.listen(0, HOST)
  await once(server, 'listening')
  process.send?.((server.address() as net.AddressInfo).port)
}

/** One round trip at a time, `trips` timed after a warm-up; the p50 and p99 in µs. */
async function measure (burn: number, code: number, trips: number): Promise<{ p50: number, p99: number }> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', String(burn), '--code', String(code)], { execArgv: process.execArgv })
  try {
    const [port] = await once(child, 'message') as [number]
    const socket = net.connect({ port, host: HOST, noDelay: true })
    await once(socket, 'connect')
    const lat = new Float64Array(trips)
    const ping = Buffer.alloc(24, 0x61)
    let i = -WARMUP
    let t = 0
    await new Promise<void>((resolve, reject) => {
      socket.on('error', reject)
      socket.on('data', () => {
        if (i >= 0) lat[i] = (performance.now() - t) * 1000
        if (++i === trips) { resolve(); return }
        t = performance.now()
        socket.write(ping)
      })
      t = performance.now()
      socket.write(ping)
    })
    socket.destroy()
    lat.sort()
    return { p50: percentile(lat, 50), p99: percentile(lat, 99) }
  } finally {
    child.kill()
  }
}

const { values: opt } = parseArgs({
  options: { serve: { type: 'string' }, trips: { type: 'string', default: '20000' }, burn: { type: 'string', default: '0,2,4' }, code: { type: 'string' } }
})
if (opt.serve !== undefined) {
  await serve(Number(opt.serve), Number(opt.code ?? 0))
} else {
  const trips = Number(opt.trips)
  console.log(`raw node:net ping-pong over loopback, 24-byte messages, ${trips} round trips after ${WARMUP} (µs)`)
  if (opt.code === undefined) {
    console.log('server work per message   p50      p99')
    for (const burn of opt.burn.split(',').map(Number)) {
      const { p50, p99 } = await measure(burn, 0, trips)
      console.log(`${String(burn).padStart(10)} µs       ${p50.toFixed(1).padStart(6)}   ${p99.toFixed(1).padStart(6)}`)
    }
  } else {
    console.log('functions per message   p50      p99     (same code in a warm loop)')
    for (const code of opt.code.split(',').map(Number)) {
      const { p50, p99 } = await measure(0, code, trips)
      console.log(`${String(code).padStart(10)}           ${p50.toFixed(1).padStart(6)}   ${p99.toFixed(1).padStart(6)}     ${warmCost(code).toFixed(2)}`)
    }
  }
}
