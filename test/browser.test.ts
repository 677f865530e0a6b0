// A page in headless Chromium is a peer: its script, bundled by esbuild from the
// package's browser entry, talks over WebSocket to a Node peer that listens with
// `websocket: true` and serves a TCP peer at the same time. Messages both ways,
// RPC each way, a reconnect after the Node peer restarts, and persistent
// messages queued in IndexedDB that survive a reload and are delivered once the
// Node peer is back.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import type { Page } from 'playwright-core'
import { WebSocketServer } from 'ws'
import { Link, Messaging, RpcClient, RpcServer, type Message } from '../src/index.ts'
import { encodeFrame, FrameType, PROTOCOL_VERSION, type Frame } from '../src/transforms/frames.ts'
import { encodePacketBatch } from '../src/transforms/framing.ts'
import { RECEIVE_HOLD_LIMIT } from '../src/link/browser-websocket.ts'
import type { Harness } from './browser/page.ts'
import { bundleForBrowser, launchChromium, type Chromium } from './helpers/chromium.ts'
import { connected, take } from './helpers/util.ts'

const PAGE = fileURLToPath(new URL('./browser/page.ts', import.meta.url))
const text = (m: Message): string => new TextDecoder().decode(m.data)

let browser: Chromium
let site: http.Server
let siteUrl = ''
let bundleInputs: string[] = []

before(async () => {
  const { code, inputs } = await bundleForBrowser(PAGE)
  bundleInputs = inputs
  site = http.createServer((req, res) => {
    if (req.url === '/page.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' })
      res.end(code)
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html' })
      res.end('<!doctype html><title>snakemq page</title><script type="module" src="/page.js"></script>')
    }
  })
  await new Promise<void>((resolve) => { site.listen(0, '127.0.0.1', resolve) })
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`
  browser = await launchChromium()
})

after(async () => {
  await browser?.close()
  if (site === undefined) return
  site.closeAllConnections()
  await new Promise<void>((resolve) => { site.close(() => { resolve() }) })
})

/** The Node peer 'node': WebSocket and TCP listeners on one Messaging, with an RPC object. */
async function startNode (wsPort = 0, tcpPort = 0): Promise<{ mq: Messaging, wsPort: number, tcpPort: number }> {
  const link = new Link()
  const ws = await link.listen({ port: wsPort, websocket: { path: '/mq' } })
  const tcp = await link.listen({ port: tcpPort })
  const mq = new Messaging(link, { identity: 'node' })
  new RpcServer(mq).register('calc', { add: (a: number, b: number) => a + b })
  return { mq, wsPort: ws.port, tcpPort: tcp.port }
}

async function openPage (): Promise<Page> {
  const page = await browser.context.newPage()
  const problems: string[] = []
  page.on('pageerror', (err) => { problems.push(String(err)) })
  await page.goto(siteUrl)
  await page.waitForFunction(() => 'harness' in globalThis, undefined, { timeout: 10_000 }).catch((err: unknown) => {
    throw new Error(`the page script did not start: ${problems.join('; ')}`, { cause: err })
  })
  return page
}

test('the page bundles from the browser entry with no Node built-in and neither ws nor classic-level', () => {
  assert.ok(bundleInputs.some((i) => i.endsWith('src/index.browser.ts')))
  assert.ok(bundleInputs.some((i) => i.includes('node_modules/browser-level/')), 'level is browser-level')
  assert.deepEqual(bundleInputs.filter((i) => /^node:|node_modules\/(ws|classic-level)\/|src\/link\/(tcp|ws|node-link)\.ts$|level-node/.test(i)), [])
})

test('a page in Chromium and a Node peer: 1,000 messages both ways while the Node peer serves a TCP peer, RPC each way, and a reconnect after the Node peer restarts', async () => {
  let node = await startNode()
  const { wsPort, tcpPort } = node
  const carolLink = new Link()
  const carol = new Messaging(carolLink, { identity: 'carol' })
  carolLink.connect({ port: tcpPort, reconnect: { minDelay: 20, maxDelay: 200 } })
  const page = await openPage()
  try {
    assert.deepEqual(await page.evaluate(async (u) => await harness.start(u, 'exchange'), `ws://127.0.0.1:${wsPort}/mq`), { queued: 0 })
    assert.equal(await page.evaluate(async () => await harness.connected()), 'ws')
    await connected(node.mq, 'carol')

    const n = 1000
    const fromPage = take(node.mq, n, { filter: (m) => m.from === 'page' })
    const fromCarol = take(node.mq, n, { filter: (m) => m.from === 'carol' })
    const exchanged = page.evaluate(async (count) => await harness.exchange(count), n)
    const sends: Array<Promise<unknown>> = []
    for (let i = 0; i < n; i++) {
      sends.push(node.mq.send('page', new TextEncoder().encode(`to page ${i}`)), carol.send('node', new TextEncoder().encode(`carol ${i}`)))
    }
    await Promise.all(sends)
    assert.deepEqual(await exchanged, { received: n, inOrder: true })
    assert.deepEqual((await fromPage).map(text), Array.from({ length: n }, (_, i) => `from page ${i}`))
    assert.deepEqual((await fromCarol).map(text), Array.from({ length: n }, (_, i) => `carol ${i}`))

    assert.equal(await page.evaluate(async () => await harness.callNode(20, 22)), 42)
    const pageApi = new RpcClient(node.mq).proxy<{ mul (a: number, b: number): number, where (): string }>('page', 'page')
    assert.equal(await pageApi.mul(6, 7), 42)
    assert.equal(await pageApi.where(), 'in a browser')

    // The Node peer restarts on the same ports: the page's connector comes back by itself.
    await node.mq.close()
    await page.evaluate(async () => { await harness.disconnected() })
    node = await startNode(wsPort, tcpPort)
    assert.equal(await page.evaluate(async () => await harness.connected()), 'ws')
    const again = take(node.mq, 10, { filter: (m) => m.from === 'page' })
    const back = page.evaluate(async () => await harness.exchange(10))
    for (let i = 0; i < 10; i++) await node.mq.send('page', new TextEncoder().encode(`to page ${i}`))
    assert.deepEqual(await back, { received: 10, inOrder: true })
    assert.deepEqual((await again).map(text), Array.from({ length: 10 }, (_, i) => `from page ${i}`))
    await page.evaluate(async () => { await harness.close() })
  } finally {
    await page.close()
    await Promise.all([node.mq.close(), carol.close()])
  }
})

test('100 persistent messages queued in IndexedDB while the Node peer is down survive a page reload and are delivered once it is back', async () => {
  // A port for the Node peer that nobody listens on yet: bound, then released.
  const probe = await startNode()
  const { wsPort, tcpPort } = probe
  await probe.mq.close()
  const url = `ws://127.0.0.1:${wsPort}/mq`
  const page = await openPage()
  let node: Awaited<ReturnType<typeof startNode>> | null = null
  try {
    assert.deepEqual(await page.evaluate(async (u) => await harness.start(u, 'kept'), url), { queued: 0 })
    assert.deepEqual(await page.evaluate(async () => await harness.queuePersistent(100)), { queued: 100 })
    // A reload, not a close: the page goes away without a word, as a closed tab does.
    await page.reload()
    await page.waitForFunction(() => 'harness' in globalThis)
    assert.deepEqual(await page.evaluate(async (u) => await harness.start(u, 'kept'), url), { queued: 100 }, 'still queued after the reload')

    node = await startNode(wsPort, tcpPort)
    const got = await take(node.mq, 100, { filter: (m) => m.from === 'page' })
    assert.deepEqual(got.map(text), Array.from({ length: 100 }, (_, i) => `kept ${i}`))
    assert.ok(got.every((m) => m.persistent), 'they came as persistent messages')
    assert.equal(await page.evaluate(async () => await harness.delivered(100)), 100)
    // Delivered once: after another reload nothing is left to send.
    await page.evaluate(async () => { await harness.close() })
    await page.reload()
    await page.waitForFunction(() => 'harness' in globalThis)
    assert.deepEqual(await page.evaluate(async (u) => await harness.start(u, 'kept'), url), { queued: 0 })
    await page.evaluate(async () => { await harness.close() })
  } finally {
    await page.close()
    await node?.mq.close()
  }
})

test('a store open in one tab is refused to another tab with StoreLockedError, and is free again once the first tab closes it or goes away', async () => {
  // No Node peer: the first tab's connector keeps failing, which does not matter here.
  const url = 'ws://127.0.0.1:1/mq'
  const first = await openPage()
  const second = await openPage()
  try {
    assert.deepEqual(await first.evaluate(async (u) => await harness.start(u, 'tabs'), url), { queued: 0 })
    assert.deepEqual(await first.evaluate(async () => await harness.queuePersistent(10)), { queued: 10 })
    // Without a lock the second tab would load the first one's 10 messages and send them too.
    assert.deepEqual(await second.evaluate(async () => await harness.openStore('tabs')), {
      name: 'StoreLockedError', message: 'the queue store tabs is in use by another tab or worker of this origin'
    })
    await first.evaluate(async () => { await harness.close() })
    assert.deepEqual(await second.evaluate(async () => await harness.openStore('tabs')), { opened: true })
    // A tab that goes away without closing its store (as a crashed or closed tab does) leaves it free too.
    await first.close()
    const third = await openPage()
    try {
      assert.equal((await third.evaluate(async () => await harness.openStore('tabs')) as { name: string }).name, 'StoreLockedError')
      await second.close({ runBeforeUnload: false })
      assert.deepEqual(await third.evaluate(async () => await harness.openStore('tabs')), { opened: true })
      await third.evaluate(async () => { await harness.closeStore() })
    } finally {
      await third.close()
    }
  } finally {
    if (!first.isClosed()) await first.close()
    if (!second.isClosed()) await second.close()
  }
})

test('a server that sends the page a text message: ProtocolError in the page, close code 4003 with the reason to the server, no uncaught error, and the page reconnects', async () => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise<void>((resolve) => { server.once('listening', resolve) })
  const closes: Array<{ code: number, reason: string }> = []
  let closed: () => void
  const twoClosed = new Promise<void>((resolve) => { closed = resolve })
  server.on('connection', (ws) => {
    ws.on('close', (code, reason) => {
      closes.push({ code, reason: String(reason) })
      if (closes.length === 2) closed()
    })
    ws.send('not the protocol')
  })
  const page = await openPage()
  const uncaught: string[] = []
  page.on('pageerror', (err) => { uncaught.push(String(err)) })
  try {
    await page.evaluate(async (u) => await harness.start(u, 'text-message'), `ws://127.0.0.1:${(server.address() as AddressInfo).port}/mq`)
    // Two connections, each refused the same way: the connector went on.
    await twoClosed
    const errors = await page.evaluate(async () => await harness.errors(2))
    for (const e of errors.slice(0, 2)) assert.match(e, /^ProtocolError: connection \w+: a text WebSocket message arrived/)
    assert.deepEqual(closes.slice(0, 2), [{ code: 4003, reason: 'binary messages only' }, { code: 4003, reason: 'binary messages only' }])
    await page.evaluate(async () => { await harness.close() })
    assert.deepEqual(uncaught, [])
  } finally {
    await page.close()
    for (const ws of server.clients) ws.terminate()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }
})

test('a server that floods a page whose consumer does not read: ReceiveOverflowError in the page once it holds 64 MiB, close code 4008 with the reason to the server, what the page took in is kept, and the page reconnects', { timeout: 60_000 }, async () => {
  // A plain snakeMQ peer 'node' (no acknowledgements): the first connection sends MESSAGE frames of 16 KiB as fast as the page takes them in, up to 256 MiB.
  const MIB = 1024 * 1024
  const FLOOD = 256 * MIB
  const wire = (frames: Frame[]): Buffer => Buffer.concat(encodePacketBatch(frames.map(encodeFrame)))
  const hello = wire([{ type: FrameType.ProtocolVersion, version: PROTOCOL_VERSION }, { type: FrameType.Identification, identity: 'node' }])
  const message = (text: string, size: number): Frame => {
    const data = Buffer.alloc(size)
    data.write(text)
    return { type: FrameType.Message, uuid: randomBytes(16), ttl: 600, flags: 0, data }
  }
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise<void>((resolve) => { server.once('listening', resolve) })
  let connections = 0
  let written = 0
  let floodClose!: (close: { code: number, reason: string, written: number }) => void
  const closed = new Promise<{ code: number, reason: string, written: number }>((resolve) => { floodClose = resolve })
  let second!: () => void
  const secondUp = new Promise<void>((resolve) => { second = resolve })
  let consumerExists!: () => void
  const consumerReady = new Promise<void>((resolve) => { consumerExists = resolve })
  server.on('connection', (ws) => {
    ws.on('error', () => {})
    ws.send(hello)
    if (++connections > 1) {
      ws.send(wire([0, 1, 2].map((i) => message(`after ${i}`, 16))))
      second()
      return
    }
    ws.on('close', (code, reason) => { floodClose({ code, reason: String(reason), written }) })
    // Each batch goes out once the socket took one of the 16 before it: the server is bound by the page's reading, not by a timer.
    let next = 0
    let inFlight = 0
    const pump = (): void => {
      while (inFlight < 16 && ws.readyState === ws.OPEN && next * 16 * 1024 < FLOOD) {
        const batch = wire(Array.from({ length: 16 }, () => message(`flood ${next++}`, 16 * 1024)))
        inFlight++
        ws.send(batch, (err) => {
          inFlight--
          if (err !== undefined && err !== null) return
          written += batch.length
          pump()
        })
      }
    }
    // Only once the page's consumer exists: until then only its RpcServer reads, and it lets other messages go.
    void consumerReady.then(pump)
  })
  const page = await openPage()
  const uncaught: string[] = []
  page.on('pageerror', (err) => { uncaught.push(String(err)) })
  try {
    await page.evaluate(async (u) => { await harness.start(u, 'flood'); harness.stall() }, `ws://127.0.0.1:${(server.address() as AddressInfo).port}/mq`)
    consumerExists()
    // Without the limit the page takes in all 256 MiB and is never closed (the test's timeout fails it). The
    // server may write much of the flood before it reads the page's close when the machine is loaded, so the
    // bound is checked where it holds: what the page held (the error's `held`, below).
    const close = await closed
    assert.deepEqual({ code: close.code, reason: close.reason }, { code: 4008, reason: 'receive overflow' })
    const [error] = await page.evaluate(async () => await harness.errorFields(1))
    assert.equal(error!.name, 'ReceiveOverflowError')
    assert.equal(error!.code, 'ERR_RECEIVE_OVERFLOW')
    assert.equal(error!.limit, RECEIVE_HOLD_LIMIT)
    assert.ok(typeof error!.held === 'number' && error!.held > RECEIVE_HOLD_LIMIT && error!.held < RECEIVE_HOLD_LIMIT + MIB, `held ${String(error!.held)}`)
    assert.match((await page.evaluate(async () => await harness.errors(1)))[0]!, /while this side was not reading.*a browser's WebSocket cannot stop reading/)

    // The connector reconnects; the messages the page took in before the close are still there for its consumer, in order, then the new ones.
    await secondUp
    assert.equal(await page.evaluate(async () => await harness.connected()), 'ws')
    const got = await page.evaluate(async () => await harness.takeUntil('after 2', 12))
    const flood = got.filter((t) => t.startsWith('flood '))
    assert.ok(flood.length >= 1024, `${flood.length} kept`)
    assert.deepEqual(flood.map((t) => t.replace(/\0/g, '')), Array.from({ length: flood.length }, (_, i) => `flood ${i}`))
    assert.deepEqual(got.slice(flood.length).map((t) => t.replace(/\0/g, '')), ['after 0', 'after 1', 'after 2'])
    await page.evaluate(async () => { await harness.close() })
    assert.deepEqual(uncaught, [])
  } finally {
    await page.close()
    for (const ws of server.clients) ws.terminate()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }
})

test('close() in a page is not held up by a server that never answers the WebSocket closing handshake', async () => {
  // A server that upgrades, says it is the peer 'node' (PROTOCOL_VERSION, IDENTIFICATION, as snakeMQ 1.6 would) and then reads nothing, answers nothing, never closes.
  const sockets: net.Socket[] = []
  const deaf = net.createServer((socket) => {
    sockets.push(socket)
    let head = ''
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1')
      const key = /^sec-websocket-key: *(\S+)\r$/im.exec(head)?.[1]
      if (!head.includes('\r\n\r\n') || key === undefined) return
      socket.off('data', onData)
      const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
      const frames = [encodeFrame({ type: FrameType.ProtocolVersion, version: PROTOCOL_VERSION }), encodeFrame({ type: FrameType.Identification, identity: 'node' })]
      const payload = Buffer.concat(frames.flatMap((f) => { const b = f instanceof Uint8Array ? f : f.subarray(); const len = Buffer.alloc(4); len.writeUInt32BE(b.length); return [len, b] }))
      socket.write(Buffer.concat([Buffer.from([0x82, payload.length]), payload]))
    }
    socket.on('data', onData)
  })
  await new Promise<void>((resolve) => { deaf.listen(0, '127.0.0.1', resolve) })
  const page = await openPage()
  try {
    await page.evaluate(async (u) => await harness.start(u, 'deaf-server'), `ws://127.0.0.1:${(deaf.address() as AddressInfo).port}/mq`)
    assert.equal(await page.evaluate(async () => await harness.connected()), 'ws')
    // Chromium waits a minute for the answer to its close frame; the channel stops waiting after 2 s.
    const ms = await page.evaluate(async () => {
      const t0 = performance.now()
      await harness.close()
      return performance.now() - t0
    })
    assert.ok(ms < 10_000, `close() took ${Math.round(ms)} ms`)
  } finally {
    await page.close()
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => { deaf.close(() => { resolve() }) })
  }
})

test('what a browser cannot do is refused with InvalidArgumentError saying so', async () => {
  const page = await openPage()
  try {
    const refusals = await page.evaluate(async () => await harness.refusals())
    const expected = [/cannot listen/, /WebSocket only/, /cannot have a fragment/, /tls options cannot be used in a browser/, /incoming throttle/, /sync is an option of LevelDB in Node/]
    assert.equal(refusals.length, expected.length)
    for (const [i, re] of expected.entries()) assert.match(refusals[i]!, re)
  } finally {
    await page.close()
  }
})

declare global {
  /** The page's harness (test/browser/page.ts), in the page. */
  var harness: Harness
}
