// node benchmarks/loader-cost.mjs [--runs 5]
//
// What running under tsx costs, for this library and for a raw node:net program:
// S2's shape (256 messages of 1 MiB, one way, two processes on 127.0.0.1), each
// program plain JavaScript on the library compiled to dist/ (run `npm run build`
// first), started once with `node` and once with `tsx` (which also compiles what
// it loads), runs alternated. Prints the median milliseconds from the first send
// to the last message acknowledged (the library: drain() resolved) or the
// socket closed (raw). `npm run bench` runs its programs under tsx, on src/.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { join } from 'node:path'

const here = fileURLToPath(import.meta.url)
const root = join(here, '..', '..')
const COUNT = 256
const SIZE = 1 << 20

async function receiveRaw () {
  const net = await import('node:net')
  const srv = net.createServer((s) => {
    let chunks = []
    let have = 0
    let need = -1
    let n = 0
    s.on('data', (c) => {
      chunks.push(c)
      have += c.length
      for (;;) {
        if (need < 0) {
          if (have < 4) break
          if (chunks[0].length < 4) chunks = [Buffer.concat(chunks, have)]
          need = chunks[0].readUInt32BE(0) + 4
        }
        if (have < need) break
        // The whole frame is in: one copy of it, as a receiver handing it on would make.
        const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, have)
        if (all.subarray(4, need).byteLength !== SIZE) throw new Error('a frame of the wrong size')
        chunks = [all.subarray(need)]
        have -= need
        need = -1
        if (++n === COUNT) { s.end(); srv.close() }
      }
    })
  }).listen(0, '127.0.0.1', () => { process.stdout.write(`${srv.address().port}\n`) })
}

async function sendRaw (port) {
  const net = await import('node:net')
  const s = net.connect(port, '127.0.0.1')
  await new Promise((resolve) => s.once('connect', resolve))
  const t = performance.now()
  for (let i = 0; i < COUNT; i++) {
    const b = Buffer.alloc(SIZE)
    b.writeUInt32BE(i, 0)
    const h = Buffer.allocUnsafe(4)
    h.writeUInt32BE(SIZE, 0)
    s.write(h)
    if (!s.write(b)) await new Promise((resolve) => s.once('drain', resolve))
  }
  s.end()
  await new Promise((resolve) => s.once('close', resolve))
  return performance.now() - t
}

async function receiveLib () {
  const { Link, Messaging } = await import(join(root, 'dist', 'index.js'))
  const link = new Link()
  const mq = new Messaging(link, { identity: 'bob' })
  const l = await link.listen({ host: '127.0.0.1', port: 0 })
  process.stdout.write(`${l.port}\n`)
  let n = 0
  for await (const m of mq.messages()) { if (m.data.byteLength === SIZE && ++n === COUNT) break }
  await mq.drain({ timeout: 2000 })
}

async function sendLib (port) {
  const { Link, Messaging } = await import(join(root, 'dist', 'index.js'))
  const link = new Link()
  link.connect({ host: '127.0.0.1', port })
  const mq = new Messaging(link, { identity: 'alice' })
  await mq.whenConnected('bob')
  const t = performance.now()
  for (let i = 0; i < COUNT; i++) {
    const b = Buffer.alloc(SIZE)
    b.writeUInt32BE(i, 0)
    await mq.send('bob', b, { ttl: 600 })
  }
  await mq.drain()
  return performance.now() - t
}

const [role, arg] = process.argv.slice(2)
if (role === 'rx-raw') await receiveRaw()
else if (role === 'rx-lib') await receiveLib()
else if (role === 'tx-raw' || role === 'tx-lib') {
  const ms = role === 'tx-raw' ? await sendRaw(Number(arg)) : await sendLib(Number(arg))
  process.stdout.write(`${ms}\n`)
} else {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } })
  const runs = Number(values.runs)
  const tsx = join(root, 'node_modules', '.bin', 'tsx')
  const run = (cmd, args) => new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (c) => { out += c })
    p.once('error', reject)
    p.once('exit', (code) => { if (code === 0) resolve(out); else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`)) })
  })
  async function once (runner, impl) {
    const cmd = runner === 'node' ? process.execPath : tsx
    const rx = spawn(cmd, [here, `rx-${impl}`], { stdio: ['ignore', 'pipe', 'inherit'] })
    const port = await new Promise((resolve, reject) => {
      let s = ''
      rx.stdout.on('data', (c) => { s += c; if (s.includes('\n')) resolve(Number(s.trim())) })
      rx.once('exit', (code) => { reject(new Error(`the ${impl} receiver under ${runner} exited with ${code} before listening`)) })
    })
    const ms = Number(await run(cmd, [here, `tx-${impl}`, String(port)]))
    await new Promise((resolve) => { if (rx.exitCode !== null) resolve(); else rx.once('exit', resolve) })
    return ms
  }
  const results = { 'raw node': [], 'raw tsx': [], 'lib node': [], 'lib tsx': [] }
  for (let i = 0; i < runs; i++) {
    for (const impl of ['raw', 'lib']) for (const runner of ['node', 'tsx']) results[`${impl} ${runner}`].push(await once(runner, impl))
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]
  console.log(`256 x 1 MiB one way, median of ${runs} (ms from the first send to the end; MB/s)`)
  for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(9)} ${median(v).toFixed(0).padStart(5)} ms  ${(COUNT * SIZE / 1e6 / (median(v) / 1000)).toFixed(0).padStart(5)} MB/s   (${v.map((x) => x.toFixed(0)).join(', ')})`)
  const r = (a, b) => (median(results[a]) / median(results[b])).toFixed(2)
  console.log(`under tsx / under node: raw ${r('raw tsx', 'raw node')}x, library ${r('lib tsx', 'lib node')}x`)
}
