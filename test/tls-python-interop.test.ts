// TLS interop with snakeMQ 1.6's SSL link, in both directions. snakeMQ itself
// cannot be installed where the tests run, but its SSL link is Python's ssl module
// around a TCP socket with the plain framing inside, so test/fixtures/tls_peer.py
// wraps its socket as snakeMQ's LinkSocket does (cert_reqs=CERT_REQUIRED, the CA
// as ca_certs) and replays the bytes recorded from a real snakeMQ peer
// (test/fixtures/snakemq-1.6.json). python3 is part of every machine these tests
// run on: without it they fail, they do not skip. Certificates are made by openssl
// in a temp dir, as in tls.test.ts.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import {
  Link, Messaging, decodeFrame, FrameType, PROTOCOL_VERSION, FEATURE_ACK, FEATURE_VERDICT, EXTENSIONS_VERSION, FLAG_PERSISTENT,
  type Frame, type MessagingEvents
} from '../src/index.ts'
import { CertDir, hasOpenssl, type KeyPair } from './helpers/certs.ts'
import { packets, take, waitFor } from './helpers/util.ts'

// openssl makes the test certificates. It is part of this machine type, so its
// absence fails these tests (as a missing python3 does) instead of skipping them.
if (!(await hasOpenssl())) throw new Error('the TLS tests need the openssl command line (Debian package openssl)')
const skip = false

const PYTHON = 'python3'
const SCRIPT = fileURLToPath(new URL('./fixtures/tls_peer.py', import.meta.url))

/** `python3 --version`, or a rejection that says plainly what is missing. Every test awaits it. */
const python: Promise<string> = promisify(execFile)(PYTHON, ['--version']).then(
  ({ stdout, stderr }) => (stdout + stderr).trim(),
  (err: unknown) => {
    throw new Error(`python3 is required by the TLS interop tests (it plays the snakeMQ 1.6 peer over Python's ssl module), ` +
      `but \`${PYTHON} --version\` failed: ${(err as Error).message}`)
  })
python.catch(() => {})

interface Vectors {
  sessions: Array<{ name: string, sent_to_snakemq_hex: string, received_from_snakemq_hex: string }>
}
const vectors = JSON.parse(readFileSync(fileURLToPath(new URL('./fixtures/snakemq-1.6.json', import.meta.url)), 'utf8')) as Vectors
const session = vectors.sessions.find((s) => s.name === 'connect, handshake, then two queued messages to bob')!

let certs: CertDir
let ca: KeyPair
/** What the Python (snakeMQ) peer presents, whichever identity it plays. */
let pyPair: KeyPair
/** What the Node peer presents. */
let nodePair: KeyPair
/** A certificate from a CA the Python peer does not trust. */
let strangerPair: KeyPair

before(async () => {
  if (skip !== false) return
  certs = await CertDir.create()
  const [trusted, other] = await Promise.all([certs.ca('ca'), certs.ca('other-ca')])
  ca = trusted
  ;[pyPair, nodePair, strangerPair] = await Promise.all([
    certs.cert('python', ca, { cn: 'snakemq-python-peer', dns: ['python-peer'] }),
    certs.cert('node', ca, { cn: 'snakemq-node-peer', dns: ['node-peer'] }),
    certs.cert('stranger', other, { cn: 'stranger' })
  ])
})

after(async () => { await certs?.remove() })

/** One JSON line from tls_peer.py. */
interface PeerLine {
  event: string
  port?: number
  /** getpeercert(): subject as RDNs of [name, value] pairs, subjectAltName as [type, value] pairs. */
  peer_cert?: { subject: Array<Array<[string, string]>>, subjectAltName?: Array<[string, string]> }
  version?: string
  cipher?: string
  wrap?: string
  received_hex?: string
}

/**
 * Closes our side, then checks that the Python peer read nothing after `received`
 * before the end of the stream, and exited cleanly.
 */
async function closeAndCheckEof (mq: Messaging, peer: PythonPeer, received: PeerLine): Promise<void> {
  await mq.close()
  const eof = await peer.next('eof')
  assert.equal(eof.received_hex, received.received_hex)
  const { code, stderr } = await peer.status()
  assert.equal(code, 0, stderr)
}

/** tls_peer.py as a child process whose stdout lines can be awaited one event at a time. */
class PythonPeer {
  readonly exited: Promise<number | null>
  private readonly child: ChildProcessByStdio<null, Readable, Readable>
  private readonly lines: PeerLine[] = []
  private stderr = ''
  private exitCode: number | null | undefined
  private wake: Array<() => void> = []

  constructor (args: string[]) {
    this.child = spawn(PYTHON, ['-u', SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as PeerLine)
      } catch {
        this.stderr += `(not JSON on stdout) ${line}\n`
      }
      this.notify()
    })
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => { this.stderr += s })
    this.exited = new Promise((resolve) => {
      const done = (code: number | null): void => {
        if (this.exitCode !== undefined) return
        this.exitCode = code
        this.notify()
        resolve(code)
      }
      this.child.once('close', done)
      this.child.once('error', (err) => { this.stderr += `${String(err)}\n`; done(-1) })
    })
  }

  /** The next line printed with this event (lines are taken in order); rejects if the script ends first. */
  async next (event: string, ms = 20_000): Promise<PeerLine> {
    const deadline = Date.now() + ms
    for (;;) {
      const i = this.lines.findIndex((l) => l.event === event)
      if (i >= 0) return this.lines.splice(i, 1)[0]!
      if (this.exitCode !== undefined) throw new Error(`tls_peer.py exited with ${this.exitCode} before printing "${event}"; stderr:\n${this.stderr}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for tls_peer.py to print "${event}"; stderr:\n${this.stderr}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  /** Its exit status, with its stderr to explain a failure. */
  async status (): Promise<{ code: number | null, stderr: string }> {
    const code = await this.exited
    return { code, stderr: this.stderr }
  }

  async kill (): Promise<void> {
    if (this.exitCode === undefined) this.child.kill('SIGKILL')
    await this.exited
  }

  private notify (): void {
    const wake = this.wake
    this.wake = []
    for (const w of wake) w()
  }
}

function pythonArgs (mode: 'listen' | 'connect', sendHex: string, port?: number): string[] {
  return [mode, ...(port === undefined ? [] : ['--port', String(port)]),
    '--cert', pyPair.certFile, '--key', pyPair.keyFile, '--ca', ca.certFile, '--send-hex', sendHex]
}

/** The port the Python listener bound (a free one, on 127.0.0.1). */
async function listening (peer: PythonPeer): Promise<number> {
  const { port } = await peer.next('listening')
  assert.ok(typeof port === 'number' && port > 0, `listening on ${port}`)
  return port
}

/** The subject CN of a certificate as Python's getpeercert() reports it. */
function pythonCn (cert: PeerLine['peer_cert']): string | undefined {
  return cert?.subject.flat().find(([name]) => name === 'commonName')?.[1]
}

function frames (hex: string): Frame[] {
  return packets(Buffer.from(hex, 'hex')).map((p) => {
    const f = decodeFrame(p)
    assert.ok(f !== null, `undecodable packet ${p.toString('hex')}`)
    return f
  })
}

/** What a Node peer sends a snakeMQ peer first: PROTOCOL_VERSION, our EXTENSIONS (snakeMQ ignores type 16), IDENTIFICATION. */
function nodeHandshake (mq: Messaging): Frame[] {
  return [
    { type: FrameType.ProtocolVersion, version: PROTOCOL_VERSION },
    { type: FrameType.Extensions, version: EXTENSIONS_VERSION, features: FEATURE_ACK | FEATURE_VERDICT, nonce: Buffer.from((mq as unknown as { nonce: Uint8Array }).nonce), maxPacketSize: mq.maxPacketSize },
    { type: FrameType.Identification, identity: mq.identity }
  ]
}

type ConnectEvent = MessagingEvents['connect'][0]

test('a Node connector gets both queued messages from a snakeMQ-like Python ssl listener, and each side sees the other\'s certificate', { skip }, async (t) => {
  await python
  const peer = new PythonPeer(pythonArgs('listen', session.received_from_snakemq_hex))
  const link = new Link()
  const mq = new Messaging(link, { identity: 'bob' })
  try {
    const port = await listening(peer)
    const connect = waitFor<ConnectEvent>(mq, 'connect')
    const got = take(mq, 2)
    // The Python certificate names 127.0.0.1 (an IP subjectAltName), so the default host check passes.
    link.connect({ port, tls: { ca: ca.cert, cert: nodePair.cert, key: nodePair.key }, reconnect: false })

    const ev = await connect
    assert.equal(ev.ident, 'alice')
    assert.equal(ev.connection.encrypted, true)
    assert.equal(ev.connection.peerAuthorized, true)
    assert.equal(ev.certificate?.subject.CN, 'snakemq-python-peer')

    // Python required our certificate and verified it against the CA (CERT_REQUIRED), as snakeMQ would.
    // getpeercert() is empty unless the certificate was verified, so a subject here means verified.
    const tlsLine = await peer.next('tls')
    t.diagnostic(`${await python}, ${tlsLine.wrap}, ${tlsLine.version} ${tlsLine.cipher}`)
    assert.equal(pythonCn(tlsLine.peer_cert), 'snakemq-node-peer', JSON.stringify(tlsLine))
    assert.deepEqual(tlsLine.peer_cert?.subjectAltName, [['DNS', 'node-peer'], ['IP Address', '127.0.0.1']])
    assert.match(tlsLine.version ?? '', /^TLSv1\.[23]$/)

    // What Python received once we identified: PROTOCOL_VERSION first, then EXTENSIONS, then IDENTIFICATION bob.
    const received = await peer.next('received')
    assert.ok(received.received_hex?.startsWith('000000050000000001'), received.received_hex)
    assert.deepEqual(frames(received.received_hex ?? ''), nodeHandshake(mq))

    // The recorded messages, decoded as from the recorded snakeMQ peer over plain TCP (vectors.test.ts).
    const msgs = await got
    assert.deepEqual(msgs.map((m) => [m.from, Buffer.from(m.data).toString(), m.ttl, m.persistent, m.uuid]), [
      ['alice', 'first', 599, false, '01'.repeat(16)],
      ['alice', 'second', null, true, '02'.repeat(16)]
    ])

    // On close Python reads to the end: nothing followed the handshake (a plain snakeMQ peer gets no ACKs).
    await closeAndCheckEof(mq, peer, received)
  } finally {
    await mq.close()
    await peer.kill()
  }
})

test('a snakeMQ-like Python ssl connector gets a message from a Node TLS listener that requires its certificate', { skip }, async () => {
  await python
  const link = new Link()
  const mq = new Messaging(link, { identity: 'alice' })
  let peer: PythonPeer | undefined
  try {
    const l = await link.listen({ port: 0, tls: { key: nodePair.key, cert: nodePair.cert, ca: ca.cert, requestCert: true } })
    const connect = waitFor<ConnectEvent>(mq, 'connect')
    // The recorded client bytes: PROTOCOL_VERSION and IDENTIFICATION bob, sent as soon as TLS is up.
    peer = new PythonPeer(pythonArgs('connect', session.sent_to_snakemq_hex, l.port))

    const ev = await connect
    assert.equal(ev.ident, 'bob')
    assert.equal(ev.connection.direction, 'inbound')
    assert.equal(ev.connection.encrypted, true)
    assert.equal(ev.connection.peerAuthorized, true)
    assert.equal(ev.certificate?.subject.CN, 'snakemq-python-peer')
    assert.equal(ev.certificate, ev.connection.peerCertificate)
    assert.equal(ev.certificate?.subjectaltname, 'DNS:python-peer, IP Address:127.0.0.1')

    const tlsLine = await peer.next('tls')
    assert.equal(pythonCn(tlsLine.peer_cert), 'snakemq-node-peer', JSON.stringify(tlsLine))
    assert.match(tlsLine.version ?? '', /^TLSv1\.[23]$/)

    // Without EXTENSIONS from bob it is a plain snakeMQ peer: delivered once written.
    const sent = await mq.send('bob', 'hello, snakeMQ, over TLS', { ttl: 30, persistent: true, wait: 'delivered' })
    const received = await peer.next('received')
    const got = frames(received.received_hex ?? '')
    assert.deepEqual(got.slice(0, 3), nodeHandshake(mq))
    assert.equal(got.length, 4, received.received_hex)
    const m = got[3]!
    assert.ok(m.type === FrameType.Message, `got frame type ${m.type}`)
    assert.equal(Buffer.from(m.uuid as Uint8Array).toString('hex'), sent.uuid)
    assert.equal(m.ttl, 30)
    assert.equal(m.flags, FLAG_PERSISTENT)
    assert.equal(Buffer.from(m.data as Uint8Array).toString(), 'hello, snakeMQ, over TLS')

    await closeAndCheckEof(mq, peer, received)
  } finally {
    await mq.close()
    await peer?.kill()
  }
})

test('the Python ssl listener refuses a Node connector with no certificate, or one from another CA (CERT_REQUIRED is real)', { skip }, async (t) => {
  await python
  for (const [what, client, reason] of [
    ['no certificate', {}, /PEER_DID_NOT_RETURN_A_CERTIFICATE/],
    ['a certificate from another CA', { cert: strangerPair.cert, key: strangerPair.key }, /CERTIFICATE_VERIFY_FAILED/]
  ] as const) {
    const peer = new PythonPeer(pythonArgs('listen', session.received_from_snakemq_hex))
    const link = new Link()
    link.on('error', () => {})
    const mq = new Messaging(link, { identity: 'bob' })
    let identified = false
    mq.on('connect', () => { identified = true })
    try {
      const port = await listening(peer)
      link.connect({ port, tls: { ca: ca.cert, ...client }, reconnect: false })
      const { code, stderr } = await peer.status()
      assert.equal(code, 2, `${what}: ${stderr}`)
      t.diagnostic(`${what}: ${stderr.trim()}`)
      assert.match(stderr, /SSL/, what)
      assert.match(stderr, reason, what)
      assert.equal(identified, false, what)
    } finally {
      await mq.close()
      await peer.kill()
    }
  }
})
