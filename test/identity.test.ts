// Who may take a peer's place, and what the refused side is told: an impostor
// cannot take over a live connection (whichever way the names sort), a refused
// peer gets the typed error and backs off instead of seeing connect/disconnect,
// connect and disconnect balance in the tutorial's two-way topology, and a Link
// serves one Messaging.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  Link, Messaging, DuplicateIdentityError, HandshakeRefusedError, IdentityMismatchError, InvalidArgumentError, PeerCertificateError,
  type Connector, type MessagingEvents
} from '../src/index.ts'
import { CertDir, hasOpenssl, type KeyPair } from './helpers/certs.ts'
import { connected, take, waitFor } from './helpers/util.ts'

type ErrorEvent = MessagingEvents['error'][0]
type ConnectError = { connector: Connector, error: Error, delay: number | null }

/** Counts a Messaging's connect and disconnect events per peer. */
function countEvents (mq: Messaging): { connects: Map<string, number>, disconnects: Map<string, number> } {
  const connects = new Map<string, number>()
  const disconnects = new Map<string, number>()
  mq.on('connect', (e) => { connects.set(e.ident, (connects.get(e.ident) ?? 0) + 1) })
  mq.on('disconnect', (e) => { disconnects.set(e.ident, (disconnects.get(e.ident) ?? 0) + 1) })
  return { connects, disconnects }
}

for (const [victim, zed] of [['alice', 'zed'], ['zoe', 'adam']] as const) {
  test(`an impostor calling itself ${victim} from the other direction does not take over ${zed}'s live connection to the real one ("${victim}" ${victim < zed ? '<' : '>'} "${zed}")`, async () => {
    // The real victim listens; zed connects to it, and listens too.
    const linkV = new Link()
    const lv = await linkV.listen({ port: 0 })
    const real = new Messaging(linkV, { identity: victim })
    const linkZ = new Link()
    const lz = await linkZ.listen({ port: 0 })
    const z = new Messaging(linkZ, { identity: zed })
    const zEvents = countEvents(z)
    const zErrors: ErrorEvent[] = []
    z.on('error', (e) => zErrors.push(e))
    linkZ.connect({ port: lv.port })
    // Another process with the victim's name: its own nonce, and it connects to zed.
    const linkI = new Link()
    const impostor = new Messaging(linkI, { identity: victim })
    const impostorErrors: ErrorEvent[] = []
    impostor.on('error', (e) => impostorErrors.push(e))
    const iEvents = countEvents(impostor)
    try {
      await Promise.all([connected(z, victim), connected(real, zed)])
      const refused = waitFor<ConnectError>(linkI, 'connect-error')
      linkI.connect({ port: lz.port, reconnect: { minDelay: 50, maxDelay: 400 } })
      const { error, delay } = await refused
      assert.ok(error instanceof DuplicateIdentityError, `the impostor got ${String(error)}`)
      assert.equal(error.byRemote, true)
      assert.ok(delay !== null && delay > 0, 'it backs off')
      assert.ok(impostorErrors.some((e) => e.error instanceof DuplicateIdentityError), 'an error event says why')
      assert.equal(iEvents.connects.get(zed) ?? 0, 0, 'no connect for a refused connection')
      // zed's next 100 messages for the victim all reach the real one.
      const atReal = take(real, 100)
      for (let i = 0; i < 100; i++) await z.send(victim, `for ${victim} ${i}`)
      const got = await atReal
      assert.deepEqual(got.map((m) => new TextDecoder().decode(m.data)), Array.from({ length: 100 }, (_, i) => `for ${victim} ${i}`))
      assert.ok(zErrors.some((e) => e.error instanceof DuplicateIdentityError), 'zed reports the impostor')
      assert.equal(zEvents.connects.get(victim), 1)
      assert.equal(zEvents.disconnects.get(victim) ?? 0, 0)
    } finally {
      await impostor.close()
      await z.close()
      await real.close()
    }
  })
}

test('a peer refused for a duplicate identity is told why: an error event with DuplicateIdentityError, a connect-error, no connect, and growing delays', async () => {
  const link = new Link()
  const l = await link.listen({ port: 0 })
  const server = new Messaging(link, { identity: 'server' })
  const linkA = new Link()
  const first = new Messaging(linkA, { identity: 'twin' })
  linkA.connect({ port: l.port })
  const linkB = new Link()
  const second = new Messaging(linkB, { identity: 'twin' })
  const events = countEvents(second)
  const delays: number[] = []
  const errors: Error[] = []
  linkB.on('connect-error', ({ error, delay }) => { if (error instanceof DuplicateIdentityError) delays.push(delay ?? -1) })
  second.on('error', (e) => errors.push(e.error))
  try {
    await connected(server, 'twin')
    linkB.connect({ port: l.port, reconnect: { minDelay: 20, maxDelay: 160, factor: 2 } })
    while (delays.length < 4) await waitFor(linkB, 'connect-error')
    // The delays grow (within their jitter: each is in [ceiling / 2, ceiling], ceiling = min(160, 20 * 2^n)).
    delays.slice(0, 4).forEach((d, n) => {
      const ceiling = Math.min(160, 20 * 2 ** n)
      assert.ok(d >= ceiling / 2 && d <= ceiling, `delay ${n} = ${d}, ceiling ${ceiling}`)
    })
    assert.ok(errors.length >= 4 && errors.every((e) => e instanceof DuplicateIdentityError && (e as DuplicateIdentityError).byRemote))
    assert.equal(events.connects.get('server') ?? 0, 0)
    assert.equal(events.disconnects.get('server') ?? 0, 0)
    assert.equal(server.isConnected('twin'), true)
  } finally {
    await second.close()
    await first.close()
    await server.close()
  }
})

test('connect and disconnect balance in the two-way topology (each peer listens and connects to the other), run after run', async () => {
  for (let run = 0; run < 15; run++) {
    const linkB = new Link()
    const linkJ = new Link()
    const lb = await linkB.listen({ port: 0 })
    const lj = await linkJ.listen({ port: 0 })
    const bob = new Messaging(linkB, { identity: 'bob' })
    const jack = new Messaging(linkJ, { identity: 'jack' })
    const atBob = countEvents(bob)
    const atJack = countEvents(jack)
    const errors: Error[] = []
    bob.on('error', (e) => errors.push(e.error))
    jack.on('error', (e) => errors.push(e.error))
    const reconnect = { minDelay: 10, maxDelay: 50 }
    linkB.connect({ port: lj.port, reconnect })
    linkJ.connect({ port: lb.port, reconnect })
    try {
      await Promise.all([connected(bob, 'jack'), connected(jack, 'bob')])
      // Both directions carry messages over whichever connection both kept.
      const gotAtJack = take(jack, 20)
      const gotAtBob = take(bob, 20)
      for (let i = 0; i < 20; i++) {
        await bob.send('jack', `b${i}`)
        await jack.send('bob', `j${i}`)
      }
      await Promise.all([gotAtJack, gotAtBob])
      assert.equal(atBob.connects.get('jack'), 1, `run ${run}: bob saw jack connect once`)
      assert.equal(atJack.connects.get('bob'), 1, `run ${run}: jack saw bob connect once`)
      assert.deepEqual(errors, [])
    } finally {
      const jackGone = jack.isConnected('bob') ? waitFor(bob, 'disconnect') : Promise.resolve()
      await jack.close()
      await jackGone
      await bob.close()
    }
    assert.equal(atBob.disconnects.get('jack') ?? 0, atBob.connects.get('jack') ?? 0, `run ${run}: bob's events balance`)
    assert.equal(atJack.disconnects.get('bob') ?? 0, atJack.connects.get('bob') ?? 0, `run ${run}: jack's events balance`)
  }
})

test('a second Messaging on one Link, or one on a closed Link, is refused with InvalidArgumentError', async () => {
  const link = new Link()
  const l = await link.listen({ port: 0 })
  const mq = new Messaging(link, { identity: 'one' })
  assert.throws(() => new Messaging(link, { identity: 'two' }), InvalidArgumentError)
  // The first goes on: a connection still works.
  const other = new Link()
  const peer = new Messaging(other, { identity: 'peer' })
  other.connect({ port: l.port })
  await connected(mq, 'peer')
  await peer.close()
  await mq.close()
  const closed = new Link()
  await closed.close()
  assert.throws(() => new Messaging(closed, { identity: 'late' }), InvalidArgumentError)
})

// ---- over TLS ---------------------------------------------------------------

if (!(await hasOpenssl())) throw new Error('the TLS tests need the openssl command line (Debian package openssl)')
let certs: CertDir
let ca: KeyPair
let otherCa: KeyPair
let alice: KeyPair
let eve: KeyPair
let mallory: KeyPair

before(async () => {
  certs = await CertDir.create()
  ;[ca, otherCa] = await Promise.all([certs.ca('ca'), certs.ca('other-ca')])
  ;[alice, eve, mallory] = await Promise.all([
    certs.cert('alice', ca, { cn: 'alice', dns: ['alice'] }),
    certs.cert('eve', ca, { cn: 'eve' }),
    certs.cert('mallory', otherCa, { cn: 'mallory' })
  ])
})
after(async () => { await certs?.remove() })

test('a TLS client refused by bindIdentityToCertificate is told: IdentityMismatchError, a connect-error, no connect', async () => {
  const linkL = new Link()
  const l = await linkL.listen({ port: 0, tls: { key: alice.key, cert: alice.cert, ca: ca.cert, requestCert: true } })
  const server = new Messaging(linkL, { identity: 'alice', bindIdentityToCertificate: true })
  server.on('error', () => {})
  const linkC = new Link()
  // eve's certificate is genuine, but says eve, not bob.
  const client = new Messaging(linkC, { identity: 'bob' })
  const events = countEvents(client)
  try {
    const told = waitFor<ErrorEvent>(client, 'error')
    const refused = waitFor<ConnectError>(linkC, 'connect-error')
    linkC.connect({ port: l.port, tls: { key: eve.key, cert: eve.cert, ca: ca.cert, servername: 'alice' }, reconnect: { minDelay: 100, maxDelay: 1000 } })
    const [e, r] = await Promise.all([told, refused])
    assert.ok(e.error instanceof IdentityMismatchError && e.error.byRemote, String(e.error))
    assert.ok(r.error instanceof IdentityMismatchError)
    assert.equal(events.connects.size, 0)
  } finally {
    await client.close()
    await server.close()
  }
})

test('a TLS client whose certificate a listener refuses (another CA) is told: PeerCertificateError on its side too', async () => {
  const linkL = new Link()
  linkL.on('error', () => {})
  const l = await linkL.listen({ port: 0, tls: { key: alice.key, cert: alice.cert, ca: ca.cert, requestCert: true } })
  const server = new Messaging(linkL, { identity: 'alice' })
  const linkC = new Link()
  const client = new Messaging(linkC, { identity: 'mallory' })
  const events = countEvents(client)
  const errors: Error[] = []
  client.on('error', (e) => errors.push(e.error))
  try {
    const refused = waitFor<ConnectError>(linkC, 'connect-error')
    linkC.connect({ port: l.port, tls: { key: mallory.key, cert: mallory.cert, ca: ca.cert, servername: 'alice' }, reconnect: false })
    const { error } = await refused
    assert.ok(error instanceof PeerCertificateError, `got ${String(error)}`)
    assert.ok(error instanceof HandshakeRefusedError && error.byRemote)
    assert.equal(error.reason, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
    assert.ok(errors.some((e) => e instanceof PeerCertificateError), 'an error event on the refused side')
    assert.equal(events.connects.size, 0)
  } finally {
    await client.close()
    await server.close()
  }
})
