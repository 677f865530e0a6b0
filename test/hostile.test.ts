// Hostile peers on raw loopback sockets: huge length headers, garbage, frames out
// of order, short frames, wrong versions, identities that look like Object
// properties, silent connections, connection floods and reconnect storms. Each
// bad connection is closed on its own with a typed error on the 'error' event;
// the listener stays up, keeps serving a good peer, and its memory stays flat.
import { test, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { EventEmitter, once } from 'node:events'
import {
  Link, Messaging, SnakeMQError, PacketTooLargeError, ProtocolError, IncompatibleProtocolError, HandshakeTimeoutError,
  HandshakeRefusedError, ReceiveBudgetError, InvalidArgumentError,
  type Connection, type Message, type MessagingOptions
} from '../src/index.ts'
import { RawPeer, connected, packets, waitFor } from './helpers/util.ts'
import { seededRandom } from './helpers/faulty-proxy.ts'
import { settledHeap } from './helpers/gc.ts'
import { ReceiveBudget, type BudgetMember } from '../src/messaging/receive-budget.ts'
import { MAX_HANDSHAKE_PACKET } from '../src/messaging/session.ts'

// Nothing may escape as an uncaught exception or an unhandled rejection.
const escaped: unknown[] = []
process.on('uncaughtException', (err) => { escaped.push(err) })
process.on('unhandledRejection', (err) => { escaped.push(err) })
afterEach(() => { assert.deepEqual(escaped.splice(0), [], 'an error escaped as uncaught') })

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** A packet: 4-byte big-endian length, then the payload. */
function packet (payload: Buffer | string): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'hex') : payload
  const h = Buffer.alloc(4)
  h.writeUInt32BE(p.length)
  return Buffer.concat([h, p])
}
const VERSION_1 = packet('0000000001')
const identification = (ident: string): Buffer => packet(Buffer.concat([Buffer.of(2), Buffer.from(ident, 'utf8')]))
const message = (body: Buffer): Buffer => packet(Buffer.concat([Buffer.of(3), Buffer.alloc(16, 7), Buffer.from('ffffffff00000000', 'hex'), body]))

interface ConnectionError { error: Error, connection?: Connection, ident?: string }

/**
 * A listening Messaging ("server") with a short handshake timeout, and a good
 * peer connected to it whose messages the server's application echoes back.
 */
class Fixture {
  readonly errors: ConnectionError[] = []
  /** Messages the server's application received from anyone but the good peer. */
  readonly received: Message[] = []
  /** Emits 'message' for each of `received`. */
  private readonly arrivals = new EventEmitter()
  private readonly echoes = new Map<string, () => void>()
  private seq = 0
  private readonly loops: Array<Promise<void>> = []

  private constructor (
    readonly server: Messaging,
    readonly port: number,
    readonly good: Messaging
  ) {
    server.on('error', (e) => this.errors.push(e))
    this.loops.push((async () => {
      for await (const m of server.messages()) {
        if (m.from === 'good') await server.send('good', m.data)
        else { this.received.push(m); this.arrivals.emit('message', m) }
      }
    })())
    this.loops.push((async () => {
      for await (const m of good.messages()) this.echoes.get(Buffer.from(m.data).toString())?.()
    })())
  }

  static async start (options: Partial<MessagingOptions> = {}, maxConnections?: number): Promise<Fixture> {
    const link = new Link()
    // All the test's sockets come from 127.0.0.1: the per-address bound is tested in reliability.test.ts.
    const listener = await link.listen({ port: 0, maxConnectionsPerAddress: 1024, ...(maxConnections !== undefined ? { maxConnections } : {}) })
    const server = new Messaging(link, { identity: 'server', handshakeTimeout: 1000, ...options })
    const goodLink = new Link()
    const good = new Messaging(goodLink, { identity: 'good' })
    goodLink.connect({ port: listener.port, reconnect: { minDelay: 20, maxDelay: 200 } })
    await Promise.all([connected(server, 'good'), connected(good, 'server')])
    return new Fixture(server, listener.port, good)
  }

  /** The first message from `ident` the server's application received, once it comes. */
  async receivedFrom (ident: string): Promise<Message> {
    return this.received.find((m) => m.from === ident) ?? await waitFor<Message>(this.arrivals, 'message', (m) => m.from === ident)
  }

  /** The good peer sends a message and gets it back: the listener is up and serving. */
  async roundtrip (): Promise<void> {
    const text = `ping ${++this.seq}`
    const echoed = new Promise<void>((resolve) => this.echoes.set(text, resolve))
    await this.good.send('server', text)
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([echoed, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`no echo of ${text}`)) }, 20_000) })])
    } finally {
      clearTimeout(timer)
      this.echoes.delete(text)
    }
    assert.ok(this.server.isConnected('good'), 'the good peer was disconnected')
  }

  /** The error the server reported for the connection `raw` made, once it comes. */
  async errorFor (raw: RawPeer, ms = 10_000): Promise<Error> {
    const port = raw.socket.localPort
    const mine = (x: ConnectionError): boolean => x.connection?.remotePort === port
    const seen = this.errors.find(mine)
    if (seen !== undefined) return seen.error
    const e = await waitFor<ConnectionError>(this.server, 'error', mine, ms)
      .catch(() => { throw new Error(`no error reported for the connection from port ${port}`) })
    return e.error
  }

  /** Opens a raw connection, writes `bytes`, and waits for the server to close it; returns the error it reported. */
  async closedWith (bytes: Buffer | Buffer[]): Promise<{ error: Error, raw: RawPeer }> {
    const raw = await RawPeer.connect(this.port)
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) raw.write(b)
    const error = await this.errorFor(raw)
    await raw.closed
    return { error, raw }
  }

  async close (): Promise<void> {
    await this.good.close()
    await this.server.close()
    await Promise.all(this.loops)
  }
}

test('a 4 GiB length header closes the connection with PacketTooLargeError before any payload is buffered', async () => {
  const f = await Fixture.start({ maxPacketSize: 1024 * 1024 })
  try {
    const heapBefore = await settledHeap()
    // The header alone: the decoder must not wait for (or make room for) 4 GiB (before IDENTIFICATION, the limit is the handshake's).
    const { error } = await f.closedWith(Buffer.from('ffffffff', 'hex'))
    assert.ok(error instanceof PacketTooLargeError)
    assert.equal(error.length, 0xFFFFFFFF)
    assert.equal(error.limit, MAX_HANDSHAKE_PACKET)
    // After a good handshake too, and with payload bytes following the header.
    const after = await f.closedWith([VERSION_1, identification('big'), Buffer.from('ffffffff', 'hex'), Buffer.alloc(256 * 1024, 1)])
    assert.ok(after.error instanceof PacketTooLargeError)
    assert.equal(after.error.limit, 1024 * 1024)
    // One byte over the limit is refused; exactly the limit is accepted (an unknown frame type, ignored).
    const over = await f.closedWith([VERSION_1, identification('over'), Buffer.from((1024 * 1024 + 1).toString(16).padStart(8, '0'), 'hex')])
    assert.ok(over.error instanceof PacketTooLargeError)
    const raw = await RawPeer.connect(f.port)
    raw.write(Buffer.concat([VERSION_1, identification('exact'), packet(Buffer.concat([Buffer.of(99), Buffer.alloc(1024 * 1024 - 1)]))]))
    await connected(f.server, 'exact')
    await f.roundtrip()
    assert.ok(f.server.isConnected('exact'), 'a packet of exactly maxPacketSize closed the connection')
    raw.destroy()
    await raw.closed
    assert.ok(await settledHeap() - heapBefore < 16 * 2 ** 20, 'the heap grew')
  } finally {
    await f.close()
  }
})

test('unfinished packets are bounded over all connections (maxUnfinishedBytes): the one holding the most is closed, a peer of this library told why, and its message arrives once there is room', async () => {
  const MiB = 1024 * 1024
  const limit = 2.5 * MiB
  const f = await Fixture.start({ maxPacketSize: limit, maxUnfinishedBytes: limit, handshakeTimeout: 60_000 })
  const raws: RawPeer[] = []
  const aliceLink = new Link()
  const alice = new Messaging(aliceLink, { identity: 'alice' })
  try {
    // Three plain remotes each identify, begin a 1 MiB packet and stop: each holds 1 MiB (its buffer is made at the header), 3 MiB in all.
    const overflowed = waitFor<ConnectionError>(f.server, 'error', (e) => e.error instanceof ReceiveBudgetError)
    for (let i = 0; i < 3; i++) {
      const raw = await RawPeer.connect(f.port)
      raw.write(Buffer.concat([VERSION_1, identification(`holder${i}`), Buffer.from('00100000', 'hex'), Buffer.alloc(10, 1)]))
      raws.push(raw)
    }
    const first = await overflowed
    assert.ok(first.error instanceof ReceiveBudgetError)
    assert.equal(first.error.code, 'ERR_RECEIVE_BUDGET')
    assert.equal(first.error.held, MiB)
    assert.equal(first.error.total, 3 * MiB)
    assert.equal(first.error.limit, limit)
    // Exactly one of them was closed (a plain remote is not told: it has no REFUSED); the good peer is served.
    const victim = raws.find((r) => r.socket.localPort === first.connection?.remotePort)
    assert.ok(victim !== undefined, 'the closed connection is one of the three')
    await victim.closed
    await f.roundtrip()
    assert.equal(f.errors.filter((e) => e.error instanceof ReceiveBudgetError).length, 1)
    assert.equal(raws.filter((r) => r.socket.destroyed).length, 1)

    // A peer of this library now sends a message of 2 MiB: with the two remotes' 2 MiB that is over, and it holds the most.
    const aliceErrors: Error[] = []
    alice.on('error', (e) => aliceErrors.push(e.error))
    aliceLink.connect({ port: f.port, reconnect: { minDelay: 20, maxDelay: 200 } })
    await connected(alice, 'server')
    const data = Buffer.alloc(2 * MiB - 100)
    for (let i = 0; i < data.length; i += 4096) data[i] = (i >> 12) & 0xff
    const refusedAlice = waitFor<ConnectionError>(f.server, 'error', (e) => e.ident === 'alice')
    const told = waitFor<{ error: Error }>(alice, 'error', (e) => e.error instanceof HandshakeRefusedError)
    const delivered = alice.send('server', data, { wait: 'delivered' })
    const mine = await refusedAlice
    assert.ok(mine.error instanceof ReceiveBudgetError)
    assert.ok(mine.error.held > 2 * MiB - 100 && mine.error.held <= 2 * MiB)
    const { error } = await told
    assert.ok(error instanceof HandshakeRefusedError && error.byRemote, 'alice was told with REFUSED')
    assert.match(error.message, /refused by the remote: .*maxUnfinishedBytes/)
    // The remotes that hold the budget leave: alice reconnects, resends, and the message arrives whole, once.
    for (const r of raws) r.destroy()
    await Promise.all(raws.map(async (r) => { await r.closed }))
    await delivered
    const got = f.received.filter((m) => m.from === 'alice')
    assert.equal(got.length, 1)
    assert.ok(Buffer.from(got[0]!.data).equals(data), 'the message arrived byte for byte')
    assert.ok(aliceErrors.length >= 1)
  } finally {
    for (const r of raws) r.destroy()
    await alice.close()
    await f.close()
  }
})

test('a remote that reads verdicts but announced no limit (layout version 2) and sends a packet over maxPacketSize is told so with REFUSED before the close', async () => {
  const f = await Fixture.start({ maxPacketSize: 64 * 1024 })
  try {
    const raw = await RawPeer.connect(f.port)
    // PROTOCOL_VERSION, EXTENSIONS version 2 (acknowledgements and verdicts, a nonce: no maxPacketSize), IDENTIFICATION, then 100 KiB.
    raw.write(Buffer.concat([VERSION_1, packet('1002' + '00000003' + '5a'.repeat(16)), identification('older'), message(Buffer.alloc(100 * 1024))]))
    const error = await f.errorFor(raw)
    assert.ok(error instanceof PacketTooLargeError)
    await raw.closed
    const refused = packets(raw.received).find((p) => p[0] === 18)
    assert.ok(refused !== undefined, `no REFUSED among ${packets(raw.received).map((p) => p[0]).join(',')}`)
    assert.match(refused.subarray(2).toString('utf8'), /^packet of \d+ bytes exceeds the limit of 65536 bytes$/)
    await f.roundtrip()
  } finally {
    await f.close()
  }
})

test('before its IDENTIFICATION a remote may send no packet over 64 KiB (MAX_HANDSHAKE_PACKET): it is closed at the header, a remote that reads verdicts told why; once identified, a 1 MiB message is taken', async () => {
  const f = await Fixture.start()
  try {
    const header = (len: number): Buffer => { const h = Buffer.alloc(4); h.writeUInt32BE(len); return h }
    // Without a word of who it is: PROTOCOL_VERSION, then the header of a 60 MiB packet (within maxPacketSize).
    const { error } = await f.closedWith([VERSION_1, header(60 * 1024 * 1024)])
    assert.ok(error instanceof PacketTooLargeError, `${error.name}: ${error.message}`)
    assert.equal(error.limit, MAX_HANDSHAKE_PACKET)
    assert.match(error.message, /before IDENTIFICATION$/)
    // With EXTENSIONS announcing verdicts: told why with REFUSED before the close.
    const raw = await RawPeer.connect(f.port)
    raw.write(Buffer.concat([VERSION_1, packet('1003' + '00000003' + '5a'.repeat(16) + '04000000'), header(MAX_HANDSHAKE_PACKET + 1)]))
    assert.ok((await f.errorFor(raw)) instanceof PacketTooLargeError)
    await raw.closed
    const refused = packets(raw.received).find((p) => p[0] === 18)
    assert.ok(refused !== undefined, `no REFUSED among ${packets(raw.received).map((p) => p[0]).join(',')}`)
    assert.match(refused.subarray(2).toString('utf8'), /^packet of 65537 bytes exceeds the limit of 65536 bytes before IDENTIFICATION$/)
    // A plain snakeMQ peer's handshake followed at once, in the same write, by a 1 MiB message: the limit is maxPacketSize from its IDENTIFICATION on.
    const plain = await RawPeer.connect(f.port)
    plain.write(Buffer.concat([VERSION_1, identification('plain'), message(Buffer.alloc(1024 * 1024, 1))]))
    assert.equal((await f.receivedFrom('plain')).data.length, 1024 * 1024)
    plain.destroy()
    await f.roundtrip()
  } finally {
    await f.close()
  }
})

test('maxUnfinishedBytes below maxPacketSize is refused: a packet of that size could never arrive', () => {
  assert.throws(() => new Messaging(new Link(), { identity: 'x', maxPacketSize: 1024 * 1024, maxUnfinishedBytes: 1024 * 1024 - 1 }),
    (e: unknown) => e instanceof InvalidArgumentError && /maxUnfinishedBytes/.test(e.message))
})

test('garbage closes only the offending connection, with a typed error', async () => {
  const f = await Fixture.start()
  try {
    const samples: Buffer[] = [
      Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'),
      Buffer.from('160301020001000200', 'hex'), // the start of a TLS ClientHello
      Buffer.from('SSH-2.0-OpenSSH_9.6\r\n'),
      Buffer.alloc(64, 0xff),
      Buffer.alloc(64, 0)
    ]
    const random = seededRandom(7)
    for (let i = 0; i < 20; i++) samples.push(Buffer.from(Array.from({ length: 1 + Math.floor(random() * 300) }, () => Math.floor(random() * 256))))
    for (const bytes of samples) {
      const { error } = await f.closedWith(bytes)
      assert.ok(error instanceof SnakeMQError, `garbage ${bytes.subarray(0, 16).toString('hex')} gave ${error.name}: ${error.message}`)
    }
    await f.roundtrip()
  } finally {
    await f.close()
  }
})

test('a MESSAGE before IDENTIFICATION is a ProtocolError', async () => {
  const f = await Fixture.start()
  try {
    const { error } = await f.closedWith([VERSION_1, message(Buffer.from('sneaky'))])
    assert.ok(error instanceof ProtocolError)
    assert.match(error.message, /before IDENTIFICATION/)
    // Before PROTOCOL_VERSION too, and IDENTIFICATION before PROTOCOL_VERSION.
    assert.ok((await f.closedWith(message(Buffer.from('sneaky')))).error instanceof ProtocolError)
    assert.ok((await f.closedWith(identification('early'))).error instanceof ProtocolError)
    assert.equal(f.received.length, 0, 'the application saw a message from an unidentified connection')
    await f.roundtrip()
  } finally {
    await f.close()
  }
})

test('between peers that give verdicts, a MESSAGE before the remote\'s WELCOME is a ProtocolError, and the application never sees it', async () => {
  const f = await Fixture.start()
  try {
    const raw = await RawPeer.connect(f.port)
    // EXTENSIONS version 3 (acknowledgements and verdicts, a nonce, maxPacketSize), IDENTIFICATION, then a MESSAGE with no WELCOME.
    raw.write(Buffer.concat([VERSION_1, packet('1003' + '00000003' + '5a'.repeat(16) + '04000000'), identification('eager'), message(Buffer.from('too early'))]))
    const error = await f.errorFor(raw)
    assert.ok(error instanceof ProtocolError, `${error.name}: ${error.message}`)
    assert.match(error.message, /before WELCOME/)
    await raw.closed
    assert.equal(f.received.length, 0, 'the application saw a message from a connection that never completed its handshake')
    assert.equal(f.server.isConnected('eager'), false)
    await f.roundtrip()
  } finally {
    await f.close()
  }
})

test('identities that identified and never came up (no WELCOME) leave no per-peer state behind', async () => {
  const f = await Fixture.start()
  try {
    const raws = await Promise.all(Array.from({ length: 50 }, async () => await RawPeer.connect(f.port)))
    raws.forEach((raw, i) => { raw.write(Buffer.concat([VERSION_1, packet('1003' + '00000003' + '5a'.repeat(16) + '04000000'), identification(`half-${i}`)])) })
    // Each is accepted (WELCOME), sends none of its own, and is closed by the handshake timeout.
    for (const raw of raws) assert.ok((await f.errorFor(raw)) instanceof HandshakeTimeoutError)
    await Promise.all(raws.map(async (raw) => { await raw.closed }))
    for (const raw of raws) assert.ok(packets(raw.received).some((p) => p.length === 1 && p[0] === 19), 'it was sent WELCOME')
    await f.roundtrip()
    // Before, each kept a queue record (about 2 KB) among the idle peers, up to maxIdlePeers of them.
    assert.deepEqual(Object.keys(f.server.stats().peers), ['good'])
  } finally {
    await f.close()
  }
})

test('frames too short for their type close the connection with a ProtocolError; extra bytes where snakeMQ ignores them are ignored', async () => {
  const f = await Fixture.start()
  try {
    const hello = [VERSION_1, identification('shorty')]
    const short: Array<[string, Buffer[]]> = [
      ['an empty packet', [packet('')]],
      ['a PROTOCOL_VERSION body of 3 bytes', [packet('00000001')]],
      ['a PROTOCOL_VERSION body of 5 bytes', [packet('000000000100')]],
      ['an empty IDENTIFICATION', [VERSION_1, packet('02')]],
      ['an IDENTIFICATION that is not UTF-8', [VERSION_1, packet('02fffe')]],
      ['an IDENTIFICATION over 1 KiB', [VERSION_1, identification('x'.repeat(1025))]],
      ['a MESSAGE body of 23 bytes', [...hello, packet(Buffer.concat([Buffer.of(3), Buffer.alloc(23)]))]],
      ['a MESSAGE with no body', [...hello, packet('03')]],
      ['an ACK of 15 bytes', [...hello, packet(Buffer.concat([Buffer.of(17), Buffer.alloc(15)]))]],
      ['an empty ACK', [...hello, packet('11')]],
      ['a second IDENTIFICATION', [...hello, identification('again')]]
    ]
    for (const [what, bytes] of short) {
      const { error } = await f.closedWith(bytes)
      assert.ok(error instanceof ProtocolError, `${what}: ${error.name}: ${error.message}`)
    }
    // PING, PONG with bodies, a short EXTENSIONS and unknown types are ignored: the peer identifies and its message arrives.
    const raw = await RawPeer.connect(f.port)
    raw.write(Buffer.concat([
      VERSION_1, packet('1601'), packet('04ffff'), packet('05ff'), packet('63aabbcc'), packet('ff'),
      identification('lenient'), message(Buffer.from('still fine'))
    ]))
    await connected(f.server, 'lenient')
    const deadline = Date.now() + 10_000
    while (!f.received.some((m) => m.from === 'lenient') && Date.now() < deadline) await sleep(10)
    assert.equal(Buffer.from(f.received.find((m) => m.from === 'lenient')!.data).toString(), 'still fine')
    raw.destroy()
    await raw.closed
    await f.roundtrip()
  } finally {
    await f.close()
  }
})

test('a wrong protocol version is answered with INCOMPATIBLE_PROTOCOL and closed with IncompatibleProtocolError', async () => {
  const f = await Fixture.start()
  try {
    for (const version of [0, 2, 0xFFFFFFFF]) {
      const body = Buffer.alloc(5)
      body.writeUInt32BE(version, 1)
      const { error, raw } = await f.closedWith(packet(body))
      assert.ok(error instanceof IncompatibleProtocolError, `${error.name}: ${error.message}`)
      assert.equal(error.remoteVersion, version)
      assert.ok(packets(raw.received).some((p) => p.length === 1 && p[0] === 1), `version ${version}: no INCOMPATIBLE_PROTOCOL frame was sent`)
    }
    // A remote that refuses ours: closed too.
    assert.ok((await f.closedWith(packet('01'))).error instanceof IncompatibleProtocolError)
    await f.roundtrip()
  } finally {
    await f.close()
  }
})

test('identities such as __proto__, constructor and toString are plain names that work end to end', async () => {
  const f = await Fixture.start()
  const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype']
  const peers: Messaging[] = []
  try {
    for (const name of names) {
      const link = new Link()
      const mq = new Messaging(link, { identity: name })
      peers.push(mq)
      link.connect({ port: f.port, reconnect: { minDelay: 20, maxDelay: 200 } })
      await connected(f.server, name)
    }
    assert.deepEqual(f.server.connectedPeers().filter((p) => p !== 'good').sort(), [...names].sort())
    for (const [i, name] of names.entries()) {
      const got = (async () => {
        for await (const m of peers[i]!.messages()) return Buffer.from(m.data).toString()
        return null
      })()
      await f.server.send(name, `to ${name}`, { wait: 'delivered' })
      assert.equal(await got, `to ${name}`)
      await peers[i]!.send('server', `from ${name}`, { wait: 'delivered' })
      assert.ok(f.received.some((m) => m.from === name && Buffer.from(m.data).toString() === `from ${name}`))
      assert.equal(f.server.queued(name), 0)
    }
    // Nothing leaked onto Object.prototype.
    assert.equal(Object.getPrototypeOf({}), Object.prototype)
    assert.equal(typeof ({} as Record<string, unknown>).toString, 'function')
    await f.roundtrip()
  } finally {
    for (const p of peers) await p.close()
    await f.close()
  }
})

test('big messages nobody reads stop being read at receiveBufferBytes, not after receiveBuffer messages', async () => {
  const link = new Link()
  const listener = await link.listen({ port: 0 })
  const idle = new Messaging(link, { identity: 'idle', receiveBufferBytes: 1024 * 1024 })
  const raw = await RawPeer.connect(listener.port)
  try {
    const count = 64
    const body = Buffer.alloc(256 * 1024, 9)
    raw.write(Buffer.concat([VERSION_1, identification('flooder')]))
    for (let i = 0; i < count; i++) {
      const m = message(body)
      m.writeUInt32BE(i, 5) // a UUID of its own
      raw.socket.write(m)
    }
    // 16 MiB offered, 64 messages (far under receiveBuffer's 1,024): the reader stops near 1 MiB,
    // so most of it stays with the sender. Wait until nothing moves any more.
    let last = -1
    while (raw.socket.writableLength !== last) {
      last = raw.socket.writableLength
      await sleep(300)
    }
    assert.ok(raw.socket.writableLength > 4 * 2 ** 20, `only ${raw.socket.writableLength} bytes held back: the receiver kept reading`)
    assert.ok(idle.isConnected('flooder'), 'a slow application must not close the connection')
    // Once the application reads, everything arrives.
    let n = 0
    for await (const _m of idle.messages()) if (++n === count) break
    assert.equal(n, count)
  } finally {
    raw.destroy()
    await idle.close()
  }
})

test('200 connections that send nothing are closed by the handshake timeout; the good peer is served throughout', async () => {
  const f = await Fixture.start({ handshakeTimeout: 500 })
  try {
    const raws = await Promise.all(Array.from({ length: 200 }, async () => await RawPeer.connect(f.port)))
    await f.roundtrip()
    await Promise.all(raws.map(async (r) => { await r.closed }))
    const timeouts = f.errors.filter((e) => e.error instanceof HandshakeTimeoutError).length
    assert.equal(timeouts, 200)
    await f.roundtrip()
  } finally {
    await f.close()
  }
})

test('a connection flood beyond maxConnections is refused at accept; the good peer stays, and a new one gets in afterwards', async (t) => {
  const max = 30
  // A handshake timeout long enough that no accepted flooder is gone before the whole flood has connected.
  const f = await Fixture.start({ handshakeTimeout: 2000 }, max)
  const late = new Link()
  const lateMq = new Messaging(late, { identity: 'late' })
  try {
    // The server's handshake arrives at once on an accepted connection; a refused one is closed without a byte.
    const flood = await Promise.all(Array.from({ length: 3 * max }, async () => {
      const raw = await RawPeer.connect(f.port)
      await Promise.race([raw.bytes(1), raw.closed])
      return raw
    }))
    const accepted = flood.filter((r) => r.received.length > 0).length
    t.diagnostic(`of ${flood.length} flooding connections, ${accepted} were accepted`)
    assert.ok(accepted <= max - 1, `${accepted} flooding connections accepted with maxConnections ${max} and one good peer`)
    assert.ok(accepted >= 1)
    await f.roundtrip()
    // The accepted ones are closed by the handshake timeout; then there is room again.
    await Promise.all(flood.map(async (r) => { await r.closed }))
    late.connect({ port: f.port, reconnect: { minDelay: 20, maxDelay: 200 } })
    await connected(f.server, 'late', 20_000)
    const welcome = (async () => {
      for await (const m of lateMq.messages()) return Buffer.from(m.data).toString()
      return null
    })()
    await f.server.send('late', 'welcome', { wait: 'delivered' })
    assert.equal(await welcome, 'welcome')
    await f.roundtrip()
  } finally {
    await lateMq.close()
    await f.close()
  }
})

test('a reconnect storm is spread by jitter: many connectors do not retry in step', async () => {
  // A port where nothing listens: every attempt fails at once, like a crowd after a server restart.
  const probe = net.createServer().listen({ host: '127.0.0.1', port: 0 })
  await once(probe, 'listening')
  const port = (probe.address() as net.AddressInfo).port
  probe.close()
  await once(probe, 'close')
  const link = new Link()
  const delays = new Map<unknown, number[]>()
  link.on('connect-error', ({ connector, delay }) => {
    const list = delays.get(connector) ?? []
    list.push(delay!)
    delays.set(connector, list)
  })
  try {
    const n = 100
    for (let i = 0; i < n; i++) link.connect({ port, reconnect: { minDelay: 100, maxDelay: 1000, factor: 2 } })
    const deadline = Date.now() + 20_000
    while ([...delays.values()].filter((d) => d.length >= 2).length < n && Date.now() < deadline) await sleep(20)
    const first = [...delays.values()].map((d) => d[0]!)
    const second = [...delays.values()].map((d) => d[1]!)
    assert.equal(first.length, n)
    for (const [wave, ds, ceiling] of [['first', first, 100], ['second', second, 200]] as const) {
      // Each delay lies in [ceiling/2, ceiling]; together they cover that range rather than bunching.
      assert.ok(ds.every((d) => d >= ceiling / 2 && d <= ceiling), `${wave} wave delays outside [${ceiling / 2}, ${ceiling}]`)
      const distinct = new Set(ds).size
      assert.ok(distinct >= 20, `${wave} wave: only ${distinct} distinct delays among ${n} connectors`)
      const buckets = new Set(ds.map((d) => Math.min(4, Math.floor((d - ceiling / 2) / (ceiling / 10)))))
      assert.equal(buckets.size, 5, `${wave} wave: the delays do not cover the jitter range`)
    }
  } finally {
    await link.close()
  }
})

test('a round of every hostile behaviour, repeated, leaves memory flat and the listener serving', async (t) => {
  const f = await Fixture.start({ handshakeTimeout: 300, maxPacketSize: 1024 * 1024 })
  try {
    const round = async (): Promise<void> => {
      const bad: Buffer[][] = [
        [Buffer.from('ffffffff', 'hex')],
        [Buffer.from('GET / HTTP/1.1\r\n\r\n')],
        [VERSION_1, message(Buffer.alloc(100))],
        [packet('')],
        [packet('0000000002')],
        [VERSION_1, identification('__proto__'), packet('03')],
        [] // silent: the handshake timeout
      ]
      await Promise.all(Array.from({ length: 5 }, async () => { await Promise.all(bad.map(async (b) => await f.closedWith(b))) }))
      await f.roundtrip()
    }
    await round()
    await round()
    const before = await settledHeap()
    for (let i = 0; i < 6; i++) await round()
    const after = await settledHeap()
    t.diagnostic(`heap after GC: ${(before / 2 ** 20).toFixed(1)} MiB -> ${(after / 2 ** 20).toFixed(1)} MiB over 6 rounds of ${5 * 7} bad connections`)
    assert.ok(after - before < 8 * 2 ** 20, `the heap grew by ${((after - before) / 2 ** 20).toFixed(1)} MiB`)
    for (const e of f.errors) assert.ok(e.error instanceof SnakeMQError, `untyped error ${e.error.name}: ${e.error.message}`)
  } finally {
    await f.close()
  }
})

test('after close() no socket, server or timer of the library is left', async () => {
  const count = (): Map<string, number> => {
    const m = new Map<string, number>()
    for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1)
    return m
  }
  const baseline = count()
  const f = await Fixture.start({ keepalive: { interval: 100, wait: 200 } })
  const raw = await RawPeer.connect(f.port)
  await f.roundtrip()
  await f.close()
  await raw.closed
  await sleep(50)
  const left = count()
  for (const kind of ['TCPSocketWrap', 'TCPServerWrap', 'Timeout']) {
    assert.ok((left.get(kind) ?? 0) <= (baseline.get(kind) ?? 0), `${kind}: ${left.get(kind) ?? 0} left, ${baseline.get(kind) ?? 0} before`)
  }
})

test('the receive budget: the largest holder is cut past the limit, never one that holds it all alone, and one cut counts no more whatever it still reports', () => {
  const budget = new ReceiveBudget(100)
  const cuts: string[] = []
  const member = (name: string): BudgetMember & { name: string } => ({ name, held: 0, overBudget () { cuts.push(name) } })
  const a = member('a')
  const b = member('b')
  budget.join(a)
  budget.join(b)
  // Alone over the limit (a packet of maxPacketSize over WebSocket, with the message being assembled): not cut.
  budget.update(a, 120)
  assert.deepEqual(cuts, [])
  budget.update(a, 60)
  budget.update(b, 50)
  assert.deepEqual(cuts, ['a'])
  assert.equal(budget.total, 50)
  // a's transport reports bytes after the cut: ignored, or the total would never come down again.
  budget.update(a, 30)
  assert.equal(budget.total, 50)
  budget.leave(b)
  assert.equal(budget.total, 0)
})
