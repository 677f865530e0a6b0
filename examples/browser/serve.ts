// The browser example: a Node worker and the page that hands it jobs, on one
// port. It bundles page.ts with esbuild for the browser, serves the page over
// HTTP, and takes WebSocket peers on the same http.Server (`server` and
// `websocket: { path: '/mq' }`); a TCP listener beside it serves Node peers
// (`npx smq peer --connect 127.0.0.1:PORT ...`) with the same Messaging.
//
//   npx tsx examples/browser/serve.ts            then open http://127.0.0.1:8080/
//
// Add jobs in the page; stop this program and add more (they wait in the page's
// IndexedDB, through reloads too); start it again and they are done.
// Options: --port N (0: any free port), --once (stop when the first page leaves
// after a job), --timeout S (stop after S seconds).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { build } from 'esbuild'
import { Link, Messaging, RpcServer } from '../../src/index.ts'

const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' }, once: { type: 'boolean', default: false }, timeout: { type: 'string' } } })

const bundle = await build({
  entryPoints: [fileURLToPath(new URL('./page.ts', import.meta.url))],
  bundle: true, platform: 'browser', format: 'esm', target: 'es2022', write: false, logLevel: 'warning'
})
const script = bundle.outputFiles[0]!.text
const html = `<!doctype html>
<meta charset="utf-8"><title>snakemq jobs</title>
<style>body { font: 15px system-ui; margin: 2em; max-width: 40em } li { margin: .2em 0 }</style>
<h1>Jobs for the Node worker</h1>
<p>This page is peer <b id="who">?</b>, <span id="state">connecting</span>; <span id="queued">0</span> job(s) queued.</p>
<p><input id="job" placeholder="text to shout" autofocus> <button id="add">Add job</button></p>
<ul id="log"></ul>
<script type="module" src="/page.js"></script>
`

const site = http.createServer((req, res) => {
  const js = req.url === '/page.js'
  res.writeHead(200, { 'Content-Type': js ? 'text/javascript' : 'text/html; charset=utf-8' })
  res.end(js ? script : html)
})
await new Promise<void>((resolve) => { site.listen(Number(values.port), '127.0.0.1', resolve) })
const port = (site.address() as AddressInfo).port

const link = new Link()
await link.listen({ server: site, websocket: { path: '/mq' } })
const tcp = await link.listen({ port: 0 })
const mq = new Messaging(link, { identity: 'worker' })
let done = 0
new RpcServer(mq).register('worker', {
  status: () => ({ done, peers: mq.stats().totals.connected })
})
console.log(`open http://127.0.0.1:${port}/ (WebSocket peers on ws://127.0.0.1:${port}/mq, TCP peers on 127.0.0.1:${tcp.port})`)

let stopping = false
async function stop (why: string): Promise<void> {
  if (stopping) return
  stopping = true
  console.log(`stopping: ${why}`)
  await mq.close()
  site.closeAllConnections()
  site.close()
}
mq.on('connect', ({ ident, connection }) => { console.log(`${ident} connected over ${connection.transport}`) })
mq.on('disconnect', ({ ident }) => {
  console.log(`${ident} left`)
  if (values.once && done > 0) void stop('--once and the page left')
})
process.once('SIGINT', () => { void stop('interrupted') })
if (values.timeout !== undefined) setTimeout(() => { void stop('--timeout') }, Number(values.timeout) * 1000).unref()

for await (const job of mq.messages()) {
  const text = new TextDecoder().decode(job.data)
  const result = `${text.toUpperCase()}!`
  done++
  console.log(`job ${done} from ${job.from}: "${text}" -> "${result}"`)
  await mq.send(job.from, new TextEncoder().encode(result), { ttl: 3600 })
}
