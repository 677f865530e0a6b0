// The page of the browser example: a peer named after this browser (kept in
// localStorage, so a reload is the same peer) that hands jobs to the Node
// worker. Jobs are persistent messages: queued in IndexedDB, they wait there
// while the worker is away, survive a reload, and go out once it is back. The
// worker's answers come back as messages; its status is an RPC call.
//
// serve.ts bundles this file with esbuild for the browser. In an application,
// import from 'snakemq' (the bundler picks the browser build) instead of
// '../../src/index.browser.ts'.
import { Link, LevelStore, Messaging, RpcClient, StoreLockedError } from '../../src/index.browser.ts'

interface Status { done: number, peers: number }

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T
const log = (line: string): void => {
  const li = document.createElement('li')
  li.textContent = line
  $('log').prepend(li)
}

const identity = localStorage.getItem('snakemq-example-identity') ?? `page-${Math.random().toString(36).slice(2, 8)}`
localStorage.setItem('snakemq-example-identity', identity)

// One tab at a time is this peer: its store holds a Web Lock, and a second tab gets StoreLockedError.
const store = await LevelStore.open(`jobs-${identity}`).catch((err: unknown) => {
  if (err instanceof StoreLockedError) $('state').textContent = `${identity} is open in another tab: use that one, or close it and reload`
  throw err
})
const link = new Link()
const mq = new Messaging(link, { identity, store })
const worker = new RpcClient(mq).proxy<{ status (): Status }>('worker', 'worker')
link.connect({ url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mq` })

const showQueued = (): void => { $('queued').textContent = String(mq.stats().peers.worker?.queued ?? 0) }
mq.on('connect', () => {
  $('state').textContent = 'connected'
  void worker.status().then((s) => { log(`worker status: ${s.done} jobs done, ${s.peers} page(s) connected`) })
})
mq.on('disconnect', () => { $('state').textContent = 'disconnected (jobs wait in IndexedDB)' })
mq.on('delivered', showQueued)
await mq.ready()
$('who').textContent = identity
showQueued()
if ((mq.stats().peers.worker?.queued ?? 0) > 0) log(`${mq.stats().peers.worker?.queued} job(s) from before the reload are still queued`)

$('add').addEventListener('click', () => {
  const input = $<HTMLInputElement>('job')
  const text = input.value.trim()
  if (text === '') return
  input.value = ''
  // Resolves once the job is in IndexedDB; delivered whenever the worker is reachable.
  void mq.send('worker', new TextEncoder().encode(text), { persistent: true, ttl: 3600 }).then(() => {
    log(`queued: ${text}`)
    showQueued()
  })
})

for await (const msg of mq.messages()) log(`done: ${new TextDecoder().decode(msg.data)}`)
