// Nothing lost without a word, nothing hangs: close() reports every message it
// discards, drain() waits for the queues to empty, keepalive (on by default)
// notices a connection that died silently so a call waiting on it is resent,
// and one remote address cannot take every connection slot of a listener.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import {
  Link, Messaging, ClosedError, MemoryStore, RpcClient, RpcServer, encodeFrame, encodePacketBatch, FrameType, listenDefaults,
  messagingDefaults, type Logger, type MessagingEvents, type QueueStore
} from '../src/index.ts'
import { FaultyProxy } from './helpers/faulty-proxy.ts'
import { connected, pair, take } from './helpers/util.ts'

type Drop = MessagingEvents['drop'][0]

test('close() with 20,000 messages queued for a connected peer: each one arrives or is reported as a drop with reason "closed"', async () => {
  const { a, b } = await pair()
  const count = 20_000
  const arrived = new Set<string>()
  const consuming = (async () => { for await (const m of a.messages()) arrived.add(m.uuid) })()
  const dropped = new Map<string, string>()
  b.on('drop', (d: Drop) => { dropped.set(d.uuid, d.reason) })
  const sent: string[] = []
  for (let i = 0; i < count; i++) sent.push((await b.send('alice', `m${i}`)).uuid)
  await b.close()
  await a.close()
  await consuming
  assert.ok(dropped.size > 0 || arrived.size === count)
  for (const uuid of sent) {
    const here = arrived.has(uuid)
    const gone = dropped.get(uuid)
    assert.ok(here !== (gone !== undefined), `message ${uuid}: arrived ${here}, dropped ${gone}`)
    if (gone !== undefined) assert.equal(gone, 'closed')
  }
  console.log(`# close(): ${arrived.size} arrived, ${dropped.size} reported dropped ('closed')`)
})

test('drain() refuses new sends, waits until the 20,000 queued messages are delivered, then closes', async () => {
  const { a, b } = await pair()
  const count = 20_000
  const got = take(a, count)
  for (let i = 0; i < count; i++) await b.send('alice', `m${i}`)
  const drops: Drop[] = []
  b.on('drop', (d: Drop) => drops.push(d))
  const draining = b.drain()
  await assert.rejects(b.send('alice', 'too late'), ClosedError)
  const result = await draining
  assert.deepEqual(result, { drained: true, left: 0 })
  assert.equal((await got).length, count)
  assert.deepEqual(drops, [])
  assert.equal(b.queued(), 0)
  await a.close()
})

test('drain() with a timeout, the peer away: it closes when the time is up, dropping what is not stored and keeping what is', async () => {
  const store = new MemoryStore()
  const link = new Link()
  const mq = new Messaging(link, { identity: 'bob', store })
  await mq.send('absent', 'transient 1')
  await mq.send('absent', 'persistent', { persistent: true })
  await mq.send('absent', 'transient 2')
  const drops: Drop[] = []
  mq.on('drop', (d: Drop) => drops.push(d))
  const t0 = Date.now()
  const result = await mq.drain({ timeout: 100 })
  assert.ok(Date.now() - t0 >= 95, 'it waited for the timeout')
  assert.deepEqual(result, { drained: false, left: 3 })
  // MemoryStore keeps nothing across a restart: all three are gone, and each says so.
  assert.deepEqual(drops.map((d) => d.reason), ['closed', 'closed', 'closed'])
})

test('drain() and close() keep persistent messages in a durable store: not dropped, there for the next start', async () => {
  // A durable store as far as Messaging is concerned: what it holds survives close().
  const inner = new MemoryStore()
  const durable: QueueStore = {
    durable: true,
    load: inner.load.bind(inner),
    write: inner.write.bind(inner),
    summary: inner.summary.bind(inner),
    read: inner.read.bind(inner),
    claim: inner.claim.bind(inner),
    release: inner.release.bind(inner),
    close: async () => {}
  }
  const link = new Link()
  const mq = new Messaging(link, { identity: 'bob', store: durable })
  const { uuid } = await mq.send('absent', 'persistent', { persistent: true })
  await mq.send('absent', 'transient')
  const drops: Drop[] = []
  mq.on('drop', (d: Drop) => drops.push(d))
  const ac = new AbortController()
  const draining = mq.drain({ signal: ac.signal })
  ac.abort()
  assert.deepEqual(await draining, { drained: false, left: 2 })
  assert.deepEqual(drops.map((d) => d.reason), ['closed'])
  assert.notEqual(drops[0]!.uuid, uuid)
  const kept = await inner.load()
  assert.deepEqual(kept.messages.map((m) => Buffer.from(m.uuid).toString('hex')), [uuid])
})

test('keepalive is on by default, and is turned off with keepalive: false', () => {
  const on = new Messaging(new Link(), { identity: 'on' })
  const off = new Messaging(new Link(), { identity: 'off', keepalive: false })
  assert.deepEqual(on.keepalive, { interval: 10_000, wait: 10_000 })
  assert.deepEqual(messagingDefaults.keepalive, { interval: 10_000, wait: 10_000 })
  assert.equal(off.keepalive, undefined)
  void on.close()
  void off.close()
})

test('with default options, an RPC call in flight on a connection that silently stops forwarding completes on the next connection within 30 s', async () => {
  const linkS = new Link()
  const ls = await linkS.listen({ port: 0 })
  const server = new Messaging(linkS, { identity: 'server' })
  let runs = 0
  const rpc = new RpcServer(server)
  rpc.register('calc', { add (x: number, y: number) { runs++; return x + y } })
  const proxy = await FaultyProxy.start(ls.port)
  const linkC = new Link()
  const client = new Messaging(linkC, { identity: 'client' })
  linkC.connect({ port: proxy.port })
  const calc = new RpcClient(client).proxy<{ add (x: number, y: number): number }>('server', 'calc')
  try {
    await Promise.all([connected(client, 'server'), connected(server, 'client')])
    assert.equal(await calc.add(1, 2), 3)
    assert.equal(proxy.halfOpen(), 1)
    const t0 = Date.now()
    const sum = await calc.add(2, 3)
    const seconds = (Date.now() - t0) / 1000
    assert.equal(sum, 5)
    assert.ok(seconds < 30, `the call took ${seconds} s`)
    assert.equal(runs, 2)
    console.log(`# the call in flight on the half-open connection completed after ${seconds.toFixed(1)} s`)
  } finally {
    await client.close()
    await rpc.close()
    await server.close()
    await proxy.close()
  }
})

/** A packet: 4-byte big-endian length, then the frame. */
const packetOf = (frame: Parameters<typeof encodeFrame>[0]): Buffer => Buffer.concat(encodePacketBatch([encodeFrame(frame)]))

test('silent identified connections from one address take at most maxConnectionsPerAddress slots, and keepalive closes them', async () => {
  assert.ok(listenDefaults.maxConnectionsPerAddress < listenDefaults.maxConnections)
  const warnings: string[] = []
  const logger: Logger = { debug () {}, info () {}, warn (m) { warnings.push(m) }, error () {} }
  const link = new Link({ logger })
  const l = await link.listen({ port: 0, maxConnections: 64, maxConnectionsPerAddress: 8 })
  const mq = new Messaging(link, { identity: 'hub', keepalive: { interval: 300, wait: 300 } })
  const silent: net.Socket[] = []
  try {
    const identified: Array<Promise<unknown>> = []
    for (let i = 0; i < 12; i++) {
      const s = net.connect({ host: '127.0.0.1', port: l.port })
      s.on('error', () => {})
      s.resume()
      silent.push(s)
      await once(s, 'connect')
      // Each identifies as plain snakeMQ and then says nothing more (it does not even answer PINGs).
      s.write(Buffer.concat([packetOf({ type: FrameType.ProtocolVersion, version: 1 }), packetOf({ type: FrameType.Identification, identity: `silent-${i}` })]))
      if (i < 8) identified.push(connected(mq, `silent-${i}`))
    }
    await Promise.all(identified)
    await Promise.all(silent.slice(8).map(async (s) => { if (!s.destroyed) await once(s, 'close') }))
    assert.equal(warnings.filter((w) => /maxConnectionsPerAddress/.test(w)).length, 4)
    assert.equal(mq.connectedPeers().length, 8)
    // Keepalive closes the silent ones; then a real peer gets in.
    await Promise.all(silent.slice(0, 8).map(async (s) => { if (!s.destroyed) await once(s, 'close') }))
    const linkP = new Link()
    const peer = new Messaging(linkP, { identity: 'real' })
    linkP.connect({ port: l.port })
    await connected(mq, 'real')
    await peer.close()
  } finally {
    for (const s of silent) s.destroy()
    await mq.close()
  }
})

test('listen options outside their domain are InvalidArgumentErrors', async () => {
  const link = new Link()
  await assert.rejects(link.listen({ port: 0, maxConnectionsPerAddress: 0 }), /maxConnectionsPerAddress/)
  await assert.rejects(link.listen({ port: 0, maxConnections: -1 }), /maxConnections/)
  await link.close()
})

for (const perPeer of ['the default', 'every slot'] as const) {
  test(`a peer whose 64 calls to a method that never returns time out after 1 s does not starve another peer (a peer may hold ${perPeer}): its 20 calls all succeed`, async () => {
    const linkS = new Link()
    const ls = await linkS.listen({ port: 0 })
    const server = new Messaging(linkS, { identity: 'server' })
    // With every slot to one peer, only the greedy calls' deadlines (carried in their requests) free them.
    const rpc = new RpcServer(server, perPeer === 'every slot' ? { concurrency: 64, perPeerConcurrency: 64 } : {})
    let hung = 0
    let allHung: () => void = () => {}
    const filled = new Promise<void>((resolve) => { allHung = resolve })
    const slotsFor = perPeer === 'every slot' ? 64 : 32
    rpc.register('svc', {
      hang: async () => { if (++hung === slotsFor) allHung(); await new Promise<never>(() => {}) },
      add: (a: number, b: number) => a + b
    })
    const peers = await Promise.all(['greedy', 'modest'].map(async (identity) => {
      const link = new Link()
      const mq = new Messaging(link, { identity })
      link.connect({ port: ls.port })
      await connected(mq, 'server')
      return { mq, svc: new RpcClient(mq).proxy<{ hang (): Promise<void>, add (a: number, b: number): number }>('server', 'svc') }
    }))
    const [greedy, modest] = peers as [typeof peers[0], typeof peers[0]]
    try {
      const given = Promise.allSettled(Array.from({ length: 64 }, async () => { await greedy.svc.hang.with({ timeout: 1000 })() }))
      // The greedy peer holds all the slots it may: 32 by default, or every one.
      await filled
      assert.equal(rpc.running, slotsFor)
      const sums = await Promise.all(Array.from({ length: 20 }, async (_, i) => await modest.svc.add.with({ timeout: 5000 })(i, 1)))
      assert.deepEqual(sums, Array.from({ length: 20 }, (_, i) => i + 1))
      const outcomes = await given
      assert.ok(outcomes.every((r) => r.status === 'rejected' && (r.reason as Error).name === 'RpcTimeoutError'))
    } finally {
      for (const p of peers) await p.mq.close()
      await server.close()
    }
  })
}

test('while one peer\'s calls hang without a timeout, another peer is still served: a peer holds at most half the slots', async () => {
  const linkS = new Link()
  const ls = await linkS.listen({ port: 0 })
  const server = new Messaging(linkS, { identity: 'server' })
  const rpc = new RpcServer(server, { concurrency: 8 })
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  rpc.register('svc', { hang: async () => { await gate }, add: (a: number, b: number) => a + b })
  const clients = await Promise.all(['greedy', 'modest'].map(async (identity) => {
    const link = new Link()
    const mq = new Messaging(link, { identity })
    link.connect({ port: ls.port })
    await connected(mq, 'server')
    return { mq, rpc: new RpcClient(mq) }
  }))
  try {
    const hanging = Array.from({ length: 20 }, async () => await clients[0]!.rpc.call('server', 'svc', 'hang'))
    const sums = await Promise.all(Array.from({ length: 10 }, async (_, i) => await clients[1]!.rpc.call('server', 'svc', 'add', [i, 1])))
    assert.deepEqual(sums, Array.from({ length: 10 }, (_, i) => i + 1))
    assert.ok(rpc.running <= 4, `${rpc.running} running`)
    release()
    await Promise.all(hanging)
  } finally {
    release()
    for (const c of clients) await c.mq.close()
    await server.close()
  }
})

test('register({ timeout }): a call that runs past it gets RpcTimeoutError, and its slot is given back', async () => {
  const { a, b } = await pair()
  const rpc = new RpcServer(a, { concurrency: 1 })
  rpc.register('svc', { slow: async () => { await new Promise<never>(() => {}) }, quick: () => 'quick' }, { timeout: { slow: 200 } })
  const svc = new RpcClient(b).proxy<{ slow (): Promise<void>, quick (): string }>('alice', 'svc')
  try {
    const t0 = Date.now()
    await assert.rejects(svc.slow(), (err: Error) => err.name === 'RpcTimeoutError' && /200 ms/.test(err.message))
    assert.ok(Date.now() - t0 >= 190)
    // The one slot was given back: the next call runs.
    assert.equal(await svc.quick(), 'quick')
    assert.throws(() => { rpc.register('bad', { f () {} }, { timeout: -1 }) }, /timeout/)
    assert.throws(() => { rpc.register('bad', { f () {} }, { timeout: { g: 10 } }) }, /not a method/)
  } finally {
    await b.close()
    await a.close()
  }
})
