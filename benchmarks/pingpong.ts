// The bare round trip this machine gives two processes over loopback, with
// nothing but node:net: the floor under S3a's sequential p50, and a check of
// which state the machine is in (see PERFORMANCE.md, "Why S3a is bimodal").
// The server can be made to spend `--burn` µs of CPU per message before it
// answers, to show how a round trip grows with the work done on its path.
//
//   npx tsx benchmarks/pingpong.ts [--trips 20000] [--burn 0,2,4]
//   taskset -c 0 npx tsx benchmarks/pingpong.ts     (both processes on one CPU)
import net from 'node:net'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { percentile } from './harness/rpc-driver.ts'

const HOST = '127.0.0.1'
const WARMUP = 3000

function spin (us: number): void {
  if (us <= 0) return
  const until = performance.now() + us / 1000
  while (performance.now() < until) { /* busy */ }
}

/** Child: echoes every chunk back after `burn` µs of work; tells the parent its port. */
async function serve (burn: number): Promise<void> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('data', (chunk) => { spin(burn); socket.write(chunk) })
    socket.on('error', () => { socket.destroy() })
    socket.on('close', () => { server.close(); process.disconnect?.() })
  })
  server.listen(0, HOST)
  await once(server, 'listening')
  process.send?.((server.address() as net.AddressInfo).port)
}

/** One round trip at a time, `trips` timed after a warm-up; the p50 and p99 in µs. */
async function measure (burn: number, trips: number): Promise<{ p50: number, p99: number }> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', String(burn)], { execArgv: process.execArgv })
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
  options: { serve: { type: 'string' }, trips: { type: 'string', default: '20000' }, burn: { type: 'string', default: '0,2,4' } }
})
if (opt.serve !== undefined) {
  await serve(Number(opt.serve))
} else {
  const trips = Number(opt.trips)
  console.log(`raw node:net ping-pong over loopback, 24-byte messages, ${trips} round trips after ${WARMUP} (µs)`)
  console.log('server work per message   p50      p99')
  for (const burn of opt.burn.split(',').map(Number)) {
    const { p50, p99 } = await measure(burn, trips)
    console.log(`${String(burn).padStart(10)} µs       ${p50.toFixed(1).padStart(6)}   ${p99.toFixed(1).padStart(6)}`)
  }
}
