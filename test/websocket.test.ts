// The WebSocket transport on Node: Messaging peers over ws: and wss:, a peer
// serving TCP and WebSocket on one Messaging, bad input (text messages, oversized
// messages, bad frames) closing only its connection with a typed error, limits,
// listening on a shared http.Server, reconnects, and the options refused.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import tls from 'node:tls'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import {
  Link, Messaging, RpcClient, RpcServer, AbortError, ConnectTimeoutError, HandshakeTimeoutError, InvalidArgumentError, ProtocolError, ReceiveBudgetError, WebSocketMessageTooLargeError, WebSocketUpgradeError,
  WEBSOCKET_MAX_MESSAGE_BYTES, type Connection, type MessagingEvents
} from '../src/index.ts'
import { CertDir, hasOpenssl, type KeyPair } from './helpers/certs.ts'
import { connected, payload, take, waitFor } from './helpers/util.ts'

if (!(await hasOpenssl())) throw new Error('the wss tests need the openssl command line (Debian package openssl)')

let certs: CertDir
let ca: KeyPair
let server: KeyPair
let client: KeyPair

before(async () => {
  certs = await CertDir.create()
  ca = await certs.ca('ca')
  ;[server, client] = await Promise.all([
    certs.cert('server', ca, { cn: 'bob', dns: ['localhost'] }),
    certs.cert('client', ca, { cn: 'alice' })
  ])
})

after(async () => { await certs?.remove() })

const fast = { minDelay: 20, maxDelay: 200 }

/** Every message of `n`, in order, carries its index. */
function assertInOrder (messages: ReadonlyArray<{ data: Uint8Array }>, n: number): void {
  assert.equal(messages.length, n)
  messages.forEach((m, i) => { assert.deepEqual(Buffer.from(m.data), payload(i)) })
}

/** A raw ws client on the listener, open. */
async function rawClient (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url)
  ws.on('error', () => {})
  await once(ws, 'open')
  return ws
}

test('1,000 messages each way over ws:, and a TCP peer served by the same Messaging at once', async () => {
  const linkB = new Link()
  const wsListener = await linkB.listen({ port: 0, websocket: true })
  const tcpListener = await linkB.listen({ port: 0 })
  assert.equal(wsListener.transport, 'ws')
  const bob = new Messaging(linkB, { identity: 'bob' })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  const linkC = new Link()
  const carol = new Messaging(linkC, { identity: 'carol' })
  try {
    const aliceConnector = linkA.connect({ url: `ws://127.0.0.1:${wsListener.port}/`, reconnect: fast })
    linkC.connect({ port: tcpListener.port, reconnect: fast })
    await Promise.all([connected(bob, 'alice'), connected(bob, 'carol'), connected(alice, 'bob')])
    assert.equal(aliceConnector.host, '127.0.0.1')
    assert.equal(aliceConnector.port, wsListener.port)
    assert.equal(aliceConnector.connection?.transport, 'ws')
    const n = 1000
    const fromAlice = take(bob, 2 * n, { filter: (m) => m.from === 'alice' })
    const fromCarol = take(bob, n, { filter: (m) => m.from === 'carol' })
    const atAlice = take(alice, n)
    const sends: Array<Promise<unknown>> = []
    for (let i = 0; i < n; i++) {
      sends.push(alice.send('bob', payload(i)), bob.send('alice', payload(i)), carol.send('bob', payload(i)))
    }
    for (let i = n; i < 2 * n; i++) sends.push(alice.send('bob', payload(i)))
    await Promise.all(sends)
    assertInOrder(await fromAlice, 2 * n)
    assertInOrder(await fromCarol, n)
    assertInOrder(await atAlice, n)
    const stats = bob.stats().peers
    assert.ok((stats.alice?.bytesIn ?? 0) > 2 * n * 16, 'bytes in over the WebSocket are counted')
    assert.ok((stats.alice?.bytesOut ?? 0) > n * 16, 'bytes out over the WebSocket are counted')
  } finally {
    await Promise.all([alice.close(), bob.close(), carol.close()])
  }
})

test('a packet of 3 MiB crosses in several WebSocket messages of at most 1 MiB, and RPC works both ways', async () => {
  const linkB = new Link()
  const listener = await linkB.listen({ port: 0, websocket: { path: '/mq', maxPayload: WEBSOCKET_MAX_MESSAGE_BYTES } })
  const bob = new Messaging(linkB, { identity: 'bob' })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  try {
    linkA.connect({ url: `ws://127.0.0.1:${listener.port}/mq`, reconnect: fast })
    await connected(bob, 'alice')
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251)
    const got = take(bob, 1)
    await alice.send('bob', big)
    const [m] = await got
    assert.ok(Buffer.from(m!.data).equals(big), 'the 3 MiB arrived whole')
    assert.ok(WEBSOCKET_MAX_MESSAGE_BYTES < big.length)

    new RpcServer(bob).register('calc', { add: (a: number, b: number) => a + b })
    new RpcServer(alice).register('echo', { shout: (s: string) => s.toUpperCase() })
    assert.equal(await new RpcClient(alice).proxy<{ add (a: number, b: number): number }>('bob', 'calc').add(2, 3), 5)
    assert.equal(await new RpcClient(bob).proxy<{ shout (s: string): string }>('alice', 'echo').shout('hi'), 'HI')
  } finally {
    await Promise.all([alice.close(), bob.close()])
  }
})

test('wss: with mutual TLS: the certificate of each side is seen by the other, and messages cross', async () => {
  const linkB = new Link()
  const listener = await linkB.listen({ port: 0, websocket: true, tls: { key: server.key, cert: server.cert, ca: ca.cert, requestCert: true } })
  assert.equal(listener.transport, 'wss')
  const bob = new Messaging(linkB, { identity: 'bob', bindIdentityToCertificate: true })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  try {
    const seen = waitFor<MessagingEvents['connect'][0]>(bob, 'connect')
    linkA.connect({ url: `wss://localhost:${listener.port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, reconnect: fast })
    const { certificate, connection } = await seen
    assert.equal(certificate?.subject.CN, 'alice')
    assert.equal(connection.transport, 'wss')
    assert.equal(connection.encrypted, true)
    await connected(alice, 'bob')
    const out = [...linkA.connectionsOpen][0]!
    assert.equal(out.peerCertificate?.subject.CN, 'bob')
    assert.equal(out.peerAuthorized, true)
    const got = take(bob, 10)
    for (let i = 0; i < 10; i++) await alice.send('bob', payload(i))
    assertInOrder(await got, 10)
  } finally {
    await Promise.all([alice.close(), bob.close()])
  }
})

test('wss: a client whose certificate does not verify is refused, and a server certificate for another name is not accepted', async () => {
  const linkB = new Link()
  const listener = await linkB.listen({ port: 0, websocket: true, tls: { key: server.key, cert: server.cert, ca: ca.cert, requestCert: true } })
  const bob = new Messaging(linkB, { identity: 'bob' })
  const linkS = new Link()
  const stranger = new Messaging(linkS, { identity: 'stranger' })
  const linkL = new Link()
  const lost = new Messaging(linkL, { identity: 'lost' })
  try {
    // No client certificate: refused by the listener, which tells the client why.
    const refused = waitFor<MessagingEvents['error'][0]>(stranger, 'error')
    linkS.connect({ url: `wss://localhost:${listener.port}`, tls: { ca: ca.cert }, reconnect: false })
    const { error } = await refused
    assert.equal(error.name, 'PeerCertificateError')
    // 127.0.0.1 is not a name the server's certificate carries: the client gives up before the protocol starts.
    const failed = waitFor<{ error: Error }>(linkL, 'connect-error')
    linkL.connect({ url: `wss://127.0.0.2:${listener.port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, reconnect: false })
    const { error: tlsError } = await failed
    assert.match(tlsError.message, /altnames|IP|certificate|ECONNREFUSED/)
    assert.equal(bob.isConnected('stranger'), false)
  } finally {
    await Promise.all([stranger.close(), lost.close(), bob.close()])
  }
})

test('a text message, a bad frame and an oversized message each close only their connection, with a typed error', async () => {
  const linkB = new Link()
  const listener = await linkB.listen({ port: 0, websocket: { maxPayload: 1024 * 1024 } })
  const bob = new Messaging(linkB, { identity: 'bob' })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  const url = `ws://127.0.0.1:${listener.port}`
  try {
    linkA.connect({ url, reconnect: fast })
    await connected(bob, 'alice')
    const errors: Error[] = []
    bob.on('error', ({ error }) => { errors.push(error) })

    const text = await rawClient(url)
    const textClosed = once(text, 'close')
    text.send('hello')
    const [code] = await textClosed as [number]
    assert.ok(code === 1003 || code === 1006, `closed with ${code}`)

    const large = await rawClient(url)
    const largeClosed = once(large, 'close')
    large.send(new Uint8Array(1024 * 1024 + 1))
    await largeClosed

    const raw = await rawClient(url)
    const rawClosed = once(raw, 'close')
    // A frame with the reserved opcode 3.
    ;(raw as unknown as { _socket: import('node:net').Socket })._socket.write(Buffer.from([0x83, 0x80, 0, 0, 0, 0]))
    await rawClosed

    const huge = await rawClient(url)
    const hugeClosed = once(huge, 'close')
    // A binary frame whose 64-bit length is 2^63 - 1: past anything JavaScript can count.
    ;(huge as unknown as { _socket: import('node:net').Socket })._socket.write(Buffer.from([0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]))
    await hugeClosed

    while (errors.length < 4) await waitFor(bob, 'error')
    assert.equal(errors.filter((e) => e instanceof WebSocketMessageTooLargeError).length, 2, errors.map(String).join('; '))
    assert.ok(errors.some((e) => e instanceof ProtocolError && /text WebSocket message/.test(e.message)), errors.map(String).join('; '))
    assert.ok(errors.some((e) => e instanceof WebSocketMessageTooLargeError && e.limit === 1024 * 1024), errors.map(String).join('; '))
    assert.ok(errors.some((e) => e instanceof ProtocolError && /bad WebSocket frame/.test(e.message)), errors.map(String).join('; '))
    // alice went on.
    const got = take(bob, 1)
    await alice.send('bob', payload(7))
    assert.deepEqual(Buffer.from((await got)[0]!.data), payload(7))
  } finally {
    await Promise.all([alice.close(), bob.close()])
  }
})

test('WebSocket messages still arriving count in maxUnfinishedBytes: over it, the connection holding the most is closed with ReceiveBudgetError, and a ws peer goes on', async () => {
  const MiB = 1024 * 1024
  const linkB = new Link()
  // ws itself would hold up to maxPayload (4 MiB) of each connection's message.
  const listener = await linkB.listen({ port: 0, websocket: true })
  const bob = new Messaging(linkB, { identity: 'bob', maxPacketSize: 2.5 * MiB, maxUnfinishedBytes: 2.5 * MiB })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  const url = `ws://127.0.0.1:${listener.port}`
  const raws: WebSocket[] = []
  try {
    linkA.connect({ url, reconnect: fast })
    await connected(bob, 'alice')
    const over = waitFor<{ error: Error, connection?: Connection }>(bob, 'error', (e) => e.error instanceof ReceiveBudgetError)
    // Three remotes each send 1 MiB of a WebSocket message that never ends (fragments without a final one).
    const closed: Array<Promise<unknown>> = []
    for (let i = 0; i < 3; i++) {
      const raw = await rawClient(url)
      closed.push(once(raw, 'close'))
      for (let k = 0; k < 16; k++) raw.send(new Uint8Array(64 * 1024), { binary: true, fin: false })
      raws.push(raw)
    }
    const { error } = await over
    assert.ok(error instanceof ReceiveBudgetError)
    assert.equal(error.limit, 2.5 * MiB)
    assert.ok(error.total > 2.5 * MiB && error.total <= 3 * MiB + 3 * 16 * 14, `total ${error.total}`)
    assert.ok(error.held > 0.9 * MiB && error.held <= MiB + 16 * 14, `held ${error.held}`)
    // One of the three was closed; alice goes on.
    await Promise.race(closed)
    assert.equal(raws.filter((r) => r.readyState === WebSocket.CLOSED || r.readyState === WebSocket.CLOSING).length, 1)
    const got = take(bob, 1)
    await alice.send('bob', payload(3))
    assert.deepEqual(Buffer.from((await got)[0]!.data), payload(3))
    // Alone, a packet of maxPacketSize gets through, though over WebSocket it also
    // holds the message being assembled: that would be over the budget at every resend.
    for (const r of raws) r.terminate()
    const big = Buffer.alloc(2.5 * MiB - 100, 9)
    const bigGot = take(bob, 1)
    await alice.send('bob', big, { wait: 'delivered' })
    assert.ok(Buffer.from((await bigGot)[0]!.data).equals(big))
  } finally {
    for (const r of raws) r.terminate()
    await Promise.all([alice.close(), bob.close()])
  }
})

test('before its IDENTIFICATION a remote over ws may have no more than one message of 1 MiB (and the handshake) still arriving: past it, closed at once with WebSocketMessageTooLargeError', async () => {
  const MiB = 1024 * 1024
  const linkB = new Link()
  const listener = await linkB.listen({ port: 0, websocket: true })
  // The handshake timeout is far off: what closes the remote is what it holds.
  const bob = new Messaging(linkB, { identity: 'bob', handshakeTimeout: 60_000 })
  const url = `ws://127.0.0.1:${listener.port}`
  const raws: WebSocket[] = []
  try {
    const refused = waitFor<{ error: Error }>(bob, 'error', (e) => e.error instanceof WebSocketMessageTooLargeError)
    const raw = await rawClient(url)
    raws.push(raw)
    const closed = once(raw, 'close')
    // 1.25 MiB of a message that never ends, from a remote that never said who it is (ws alone would hold 4 MiB of it).
    for (let k = 0; k < 20; k++) raw.send(new Uint8Array(64 * 1024), { binary: true, fin: false })
    const { error } = await refused
    assert.ok(error instanceof WebSocketMessageTooLargeError)
    assert.equal(error.limit, MiB + 64 * 1024)
    assert.match(error.message, /before IDENTIFICATION/)
    await closed
    // A remote that holds just under it is not closed for that: a peer of this library never sends more in one message.
    const under = await rawClient(url)
    raws.push(under)
    for (let k = 0; k < 16; k++) under.send(new Uint8Array(64 * 1024), { binary: true, fin: false })
    const linkA = new Link()
    const alice = new Messaging(linkA, { identity: 'alice' })
    try {
      linkA.connect({ url, reconnect: fast })
      await connected(bob, 'alice')
      assert.equal(under.readyState, WebSocket.OPEN)
    } finally {
      await alice.close()
    }
  } finally {
    for (const r of raws) r.terminate()
    await bob.close()
  }
})

test('a connector over ws: reconnects after the listening peer restarts on the same port, and what was queued goes through', async () => {
  let linkB = new Link()
  const first = await linkB.listen({ port: 0, websocket: true })
  const port = first.port
  let bob = new Messaging(linkB, { identity: 'bob' })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  try {
    linkA.connect({ url: `ws://127.0.0.1:${port}`, reconnect: fast })
    await connected(alice, 'bob')
    const gone = waitFor<MessagingEvents['disconnect'][0]>(alice, 'disconnect')
    await bob.close()
    await gone
    const queued = [alice.send('bob', payload(0)), alice.send('bob', payload(1))]
    linkB = new Link()
    await linkB.listen({ port, websocket: true })
    bob = new Messaging(linkB, { identity: 'bob' })
    const got = take(bob, 2)
    await Promise.all(queued)
    assertInOrder(await got, 2)
    assert.ok((alice.stats().peers.bob?.reconnects ?? 0) >= 1)
  } finally {
    await Promise.all([alice.close(), bob.close()])
  }
})

test('limits: maxConnections answers 503, maxConnectionsPerAddress closes the extra connection, other paths get 404 and plain requests 426', async () => {
  const link = new Link()
  const full = await link.listen({ port: 0, websocket: { path: '/mq' }, maxConnections: 1 })
  const perAddress = await link.listen({ port: 0, websocket: true, maxConnectionsPerAddress: 1 })
  const seen: Connection[] = []
  link.on('connection', (c) => { seen.push(c) })
  try {
    const one = await rawClient(`ws://127.0.0.1:${full.port}/mq`)
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${full.port}/mq`)
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
      ws.on('open', () => { reject(new Error('a second connection was accepted')) })
      ws.on('error', () => {})
    })
    assert.equal(status, 503)
    const wrongPath = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${full.port}/elsewhere`)
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
      ws.on('error', () => { resolve(-1) })
    })
    assert.equal(wrongPath, 404)
    const plain = await fetch(`http://127.0.0.1:${full.port}/mq`)
    assert.equal(plain.status, 426)
    await plain.text()

    const a = await rawClient(`ws://127.0.0.1:${perAddress.port}`)
    const b = await rawClient(`ws://127.0.0.1:${perAddress.port}`)
    await once(b, 'close')
    assert.equal(a.readyState, WebSocket.OPEN)
    assert.equal(seen.filter((c) => c.transport === 'ws').length, 2, 'the one of the full listener and the first per address')
    one.terminate()
    a.terminate()
  } finally {
    await link.close()
  }
})

/** A TCP connection that never upgrades, and when (ms after it was opened) the listener closed it. */
interface Idle { readonly socket: net.Socket, readonly closed: Promise<number> }

/** `socket`, just opened, and when it closes. */
function idle (socket: net.Socket): Idle {
  const start = performance.now()
  socket.on('error', () => {})
  return { socket, closed: new Promise<number>((resolve) => { socket.once('close', () => { resolve(performance.now() - start) }) }) }
}

/** Opens `n` TCP connections to `port` that never upgrade: even ones send nothing, odd ones start a request and never finish it. */
function idleSockets (port: number, n: number): Idle[] {
  return Array.from({ length: n }, (_, i) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    if (i % 2 === 1) socket.on('connect', () => { socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n`) })
    return idle(socket)
  })
}

/** Resolves once `k` of `sockets` closed, with their close times; rejects after `ms`. */
async function closedFirst (sockets: readonly Idle[], k: number, ms = 5000): Promise<number[]> {
  const times: number[] = []
  return await new Promise<number[]>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`only ${times.length} of ${sockets.length} connections that never upgrade were closed within ${ms} ms, expected ${k}`)) }, ms)
    for (const { closed } of sockets) {
      void closed.then((t) => {
        times.push(t)
        if (times.length === k) { clearTimeout(timer); resolve([...times]) }
      })
    }
  })
}

test('ws: TCP connections count from accept: ones that never upgrade beyond maxConnections or maxConnectionsPerAddress are closed at once, the others after handshakeTimeout, and ws peers are served', async () => {
  const warnings: string[] = []
  const linkB = new Link({ logger: { debug () {}, info () {}, warn (message: string) { warnings.push(message) }, error () {} } })
  const errors: Error[] = []
  linkB.on('error', (e) => { errors.push(e) })
  const timeout = 200
  const total = await linkB.listen({ port: 0, websocket: true, maxConnections: 4, handshakeTimeout: timeout })
  const perAddress = await linkB.listen({ port: 0, websocket: true, maxConnectionsPerAddress: 2, handshakeTimeout: timeout })
  const bob = new Messaging(linkB, { identity: 'bob' })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  const linkC = new Link()
  const carol = new Messaging(linkC, { identity: 'carol' })
  const opened: Idle[] = []
  let late: WebSocket | undefined
  try {
    // Upgraded before the flood: neither counted with the sockets still upgrading nor dropped by their timeout.
    linkA.connect({ url: `ws://127.0.0.1:${total.port}/`, reconnect: fast })
    await connected(bob, 'alice')

    const flood = idleSockets(total.port, 10)
    const fromOne = idleSockets(perAddress.port, 5)
    opened.push(...flood, ...fromOne)
    for (const [sockets, kept] of [[flood, 4], [fromOne, 2]] as const) {
      const refused = await closedFirst(sockets, sockets.length - kept)
      assert.equal(sockets.filter((s) => s.socket.destroyed).length, sockets.length - kept, 'the ones within the limit are still open')
      assert.ok(refused.every((t) => t < timeout), `the extra ones are closed at once, not after ${timeout} ms: ${refused.map((t) => t.toFixed(0)).join(', ')} ms`)
    }
    assert.equal(warnings.filter((w) => w === 'connection refused: maxConnections reached').length, 6)
    assert.equal(warnings.filter((w) => w === 'connection refused: maxConnectionsPerAddress reached').length, 3)
    const all = await closedFirst(opened, opened.length)
    const timedOut = all.sort((x, y) => x - y).slice(-6)
    assert.ok(timedOut.every((t) => t >= timeout - 5), `the others are closed after handshakeTimeout (${timeout} ms): ${timedOut.map((t) => t.toFixed(0)).join(', ')} ms`)
    const timeouts = errors.filter((e) => e instanceof HandshakeTimeoutError)
    assert.equal(timeouts.length, 6, errors.map(String).join('; '))
    assert.equal(errors.length, 6, errors.map(String).join('; '))
    assert.match(timeouts[0]!.message, new RegExp(`no WebSocket upgrade from 127\\.0\\.0\\.1:\\d+ within ${timeout} ms`))

    // alice's connection outlived the timeout; carol and a raw client get in afterwards.
    assert.equal(bob.isConnected('alice'), true)
    linkC.connect({ url: `ws://127.0.0.1:${total.port}/`, reconnect: fast })
    await connected(bob, 'carol')
    late = await rawClient(`ws://127.0.0.1:${perAddress.port}/`)
    const got = take(bob, 2)
    await alice.send('bob', payload(1))
    await carol.send('bob', payload(2))
    assert.deepEqual((await got).map((m) => m.from).sort(), ['alice', 'carol'])
    assert.equal(late.readyState, WebSocket.OPEN)
  } finally {
    for (const { socket } of opened) socket.destroy()
    late?.terminate()
    await Promise.all([alice.close(), carol.close(), bob.close()])
  }
})

test('wss: a client that never starts TLS and one that never sends its upgrade are each dropped after handshakeTimeout with one error; a wss peer connected meanwhile stays', async () => {
  const linkB = new Link()
  const errors: Error[] = []
  linkB.on('error', (e) => { errors.push(e) })
  const timeout = 200
  const listener = await linkB.listen({ port: 0, websocket: true, tls: { key: server.key, cert: server.cert }, handshakeTimeout: timeout })
  const tcpOnly = net.connect({ host: '127.0.0.1', port: listener.port })
  const tlsOnly = tls.connect({ host: '127.0.0.1', port: listener.port, ca: ca.cert, servername: 'localhost' })
  const dropped = [idle(tcpOnly), idle(tlsOnly)]
  let peer: WebSocket | undefined
  try {
    await once(tlsOnly, 'secureConnect')
    peer = new WebSocket(`wss://localhost:${listener.port}/`, { ca: ca.cert })
    peer.on('error', () => {})
    await once(peer, 'open')
    // Each error is emitted as its client is dropped: once both are closed, each has had its one error (not a second one from the other timer).
    const times = await closedFirst(dropped, 2)
    assert.ok(times.every((t) => t >= timeout - 5), `dropped after handshakeTimeout (${timeout} ms): ${times.map((t) => t.toFixed(0)).join(', ')} ms`)
    assert.equal(errors.length, 2, errors.map(String).join('; '))
    assert.ok(errors.some((e) => /TLS handshake timeout/.test(e.message)), errors.map(String).join('; '))
    assert.ok(errors.some((e) => e instanceof HandshakeTimeoutError), errors.map(String).join('; '))
    assert.equal(peer.readyState, WebSocket.OPEN)
  } finally {
    tcpOnly.destroy()
    tlsOnly.destroy()
    peer?.terminate()
    await linkB.close()
  }
})

test('wss: TCP connections refused at accept (maxConnections, maxConnectionsPerAddress) are logged once, not reported again as failed TLS handshakes', async () => {
  const warnings: string[] = []
  const linkB = new Link({ logger: { debug () {}, info () {}, warn (message: string) { warnings.push(message) }, error () {} } })
  const errors: Error[] = []
  linkB.on('error', (e) => { errors.push(e) })
  const timeout = 300
  const tlsOptions = { key: server.key, cert: server.cert }
  const total = await linkB.listen({ port: 0, websocket: true, tls: tlsOptions, maxConnections: 2, handshakeTimeout: timeout })
  const perAddress = await linkB.listen({ port: 0, websocket: true, tls: tlsOptions, maxConnectionsPerAddress: 2, handshakeTimeout: timeout })
  // Silent ones: they never start TLS (idleSockets' plaintext requests would fail the TLS handshake at once).
  const silent = (port: number): Idle[] => Array.from({ length: 5 }, () => idle(net.connect({ host: '127.0.0.1', port })))
  const opened = [...silent(total.port), ...silent(perAddress.port)]
  try {
    // Three of each five closed at once; then the two kept on each after handshakeTimeout, with one error each.
    await closedFirst(opened, 6)
    assert.equal(warnings.filter((w) => /^connection refused: maxConnections(PerAddress)? reached$/.test(w)).length, 6)
    await closedFirst(opened, opened.length)
    assert.equal(errors.length, 4, errors.map(String).join('; '))
    assert.ok(errors.every((e) => /TLS handshake timeout/.test(e.message)), errors.map(String).join('; '))
  } finally {
    for (const { socket } of opened) socket.destroy()
    await linkB.close()
  }
})

test('listening on a shared http.Server: its own requests stay its own, and closing the link leaves it open', async () => {
  const httpServer = http.createServer((_req, res) => { res.end('page') })
  await new Promise<void>((resolve) => { httpServer.listen(0, '127.0.0.1', resolve) })
  const port = (httpServer.address() as import('node:net').AddressInfo).port
  const linkB = new Link()
  const watchers = httpServer.listenerCount('connection')
  const listener = await linkB.listen({ server: httpServer, websocket: { path: '/mq' }, handshakeTimeout: 50 })
  assert.equal(listener.port, port)
  // The server's sockets stay its own until an upgrade is handed over: neither counted nor timed out by the link.
  assert.equal(httpServer.listenerCount('connection'), watchers, 'the link does not watch the server\'s connections')
  const bob = new Messaging(linkB, { identity: 'bob' })
  const linkA = new Link()
  const alice = new Messaging(linkA, { identity: 'alice' })
  try {
    linkA.connect({ url: `ws://127.0.0.1:${port}/mq`, reconnect: fast })
    await connected(bob, 'alice')
    const got = take(bob, 1)
    await alice.send('bob', payload(3))
    assert.deepEqual(Buffer.from((await got)[0]!.data), payload(3))
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'page')
    await Promise.all([alice.close(), bob.close()])
    assert.equal(httpServer.listening, true)
    assert.equal(httpServer.listenerCount('upgrade'), 0, 'the link took its upgrade handler away')
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'page')
  } finally {
    await Promise.all([alice.close(), bob.close()])
    httpServer.closeAllConnections()
    await new Promise<void>((resolve) => { httpServer.close(() => { resolve() }) })
  }
})

test('a ws: connector whose attempt fails before the upgrade (HTTP 404, no answer, closed meanwhile) gets a typed connect-error and retries, and the process lives', async () => {
  // A web server on the URL's port (404 for everything), and a TCP listener that never answers the upgrade.
  const web = http.createServer((_req, res) => { res.statusCode = 404; res.end('no such page') })
  await new Promise<void>((resolve) => { web.listen(0, '127.0.0.1', resolve) })
  const silentSockets = new Set<import('node:net').Socket>()
  const silent = (await import('node:net')).createServer((s) => { silentSockets.add(s); s.on('close', () => { silentSockets.delete(s) }) })
  await new Promise<void>((resolve) => { silent.listen(0, '127.0.0.1', resolve) })
  const port = (server: { address (): unknown }): number => (server.address() as import('node:net').AddressInfo).port
  const link = new Link()
  const mq = new Messaging(link, { identity: 'alice' })
  try {
    type Failure = { error: Error, delay: number | null }
    const failures = (url: string, n: number, connectTimeout?: number): Promise<Failure[]> => {
      const seen: Failure[] = []
      return new Promise((resolve) => {
        const connector = link.connect({ url, reconnect: fast, ...(connectTimeout === undefined ? {} : { connectTimeout }) })
        const on = (e: { connector: unknown, error: Error, delay: number | null }): void => {
          if (e.connector !== connector) return
          seen.push({ error: e.error, delay: e.delay })
          if (seen.length === n) { link.off('connect-error', on); void connector.close().then(() => { resolve(seen) }) }
        }
        link.on('connect-error', on)
      })
    }
    const refused = await failures(`ws://127.0.0.1:${port(web)}/mq`, 3)
    for (const f of refused) {
      assert.ok(f.error instanceof WebSocketUpgradeError, `got ${f.error.name}: ${f.error.message}`)
      assert.equal(f.error.status, 404)
      assert.equal(f.error.code, 'ERR_WEBSOCKET_UPGRADE')
      assert.ok(f.delay !== null, 'and it is retried')
    }
    const timedOut = await failures(`ws://127.0.0.1:${port(silent)}/mq`, 2, 100)
    for (const f of timedOut) {
      assert.ok(f.error instanceof ConnectTimeoutError, `got ${f.error.name}: ${f.error.message}`)
      assert.equal(f.error.timeout, 100)
    }
    // Closed while an attempt waits for the upgrade: no connect-error, and nothing thrown.
    const accepted = once(silent, 'connection')
    const pending = link.connect({ url: `ws://127.0.0.1:${port(silent)}/mq`, reconnect: fast })
    await accepted
    let lateError = null as Error | null
    link.on('connect-error', (e) => { if (e.connector === pending) lateError = e.error })
    await pending.close()
    await mq.close()
    assert.equal(lateError === null || lateError instanceof AbortError, true)
  } finally {
    await mq.close()
    for (const s of silentSockets) s.destroy()
    await Promise.all([
      new Promise<void>((resolve) => { web.close(() => { resolve() }) }),
      new Promise<void>((resolve) => { silent.close(() => { resolve() }) })
    ])
  }
})

test('bad WebSocket options are refused with InvalidArgumentError before anything connects', async () => {
  const link = new Link()
  try {
    assert.throws(() => link.connect({ url: 'http://127.0.0.1:1/' }), InvalidArgumentError)
    assert.throws(() => link.connect({ url: 'not a url' }), InvalidArgumentError)
    // ws would throw a SyntaxError at every attempt, for ever.
    assert.throws(() => link.connect({ url: 'ws://127.0.0.1:1/mq#part' }), { name: 'InvalidArgumentError', message: /cannot have a fragment/ })
    assert.throws(() => link.connect({ url: 'ws://127.0.0.1:1/mq#' }), { name: 'InvalidArgumentError', message: /cannot have a fragment/ })
    assert.throws(() => link.connect({ url: 'ws://127.0.0.1:1/', tls: { ca: ca.cert } }), /wss:\/\//)
    await assert.rejects(link.listen({ port: 0, websocket: { path: 'mq' } }), InvalidArgumentError)
    await assert.rejects(link.listen({ port: 0, websocket: { maxPayload: 10 } }), InvalidArgumentError)
    await assert.rejects(link.listen({ server: http.createServer(), websocket: true, tls: { key: server.key, cert: server.cert } }), InvalidArgumentError)
  } finally {
    await link.close()
  }
})
