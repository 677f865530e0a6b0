// Logging: what a developer debugging at 3 a.m. gets. An injected logger sees
// every component's lines; the lines name connections, peers and frame types,
// and never carry message data. The `debug` namespaces are silent by default and
// switched on by DEBUG=snakemq:* (or a finer namespace).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Writable } from 'node:stream'
import { pino, type Logger as Pino } from 'pino'
import { LevelStore, Link, Messaging, pinoLogger, type LogFields, type Logger } from '../src/index.ts'
import { RawPeer, connected, waitFor } from './helpers/util.ts'

interface Line { component: string, level: string, message: string, fields: LogFields }

/** A logger per component, all writing into one list. */
function capture (): { lines: Line[], logger: (component: string) => Logger, text: () => string } {
  const lines: Line[] = []
  const logger = (component: string): Logger => {
    const at = (level: string) => (message: string, fields: LogFields = {}): void => { lines.push({ component, level, message, fields }) }
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
  }
  const text = (): string => lines.map((l) => `${l.component} ${l.level} ${l.message} ${JSON.stringify(l.fields, (_k, v: unknown) => v instanceof Error ? `${v.name}: ${v.message}` : v)}`).join('\n')
  return { lines, logger, text }
}

function find (lines: Line[], component: string, message: string | RegExp): Line[] {
  return lines.filter((l) => l.component === component && (typeof message === 'string' ? l.message === message : message.test(l.message)))
}

const SECRET = 'secret-payload-7f3a'

test('an injected logger gets the lines of Link, Messaging and LevelStore, with connection ids, peers and frame types, never message data', async () => {
  const { lines, logger, text } = capture()
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-logging-'))
  const store = await LevelStore.open(dir, { logger: logger('store') })
  const linkA = new Link({ logger: logger('linkA') })
  const a = new Messaging(linkA, { identity: 'alice', store, logger: logger('alice'), keepalive: { interval: 30, wait: 2000 } })
  const listener = await linkA.listen({ port: 0 })
  const linkB = new Link({ logger: logger('linkB') })
  const b = new Messaging(linkB, { identity: 'bob', logger: logger('bob') })
  try {
    linkB.connect({ port: listener.port, reconnect: { minDelay: 20, maxDelay: 100 } })
    await Promise.all([connected(a, 'bob'), connected(b, 'alice')])
    const got = (async () => { for await (const m of a.messages()) return Buffer.from(m.data).toString() })()
    await b.send('alice', SECRET, { wait: 'delivered' })
    assert.equal(await got, SECRET)
    await a.send('bob', `${SECRET}-persistent`, { persistent: true, ttl: 60 })
    await b.send('carol', `${SECRET}-dropped`, { ttl: 0 }).catch(() => {})
    // Keepalive: alice pings an idle bob, who answers.
    while (find(lines, 'alice', 'got PONG').length === 0) await new Promise((resolve) => setTimeout(resolve, 5))

    const [aliceConn] = find(lines, 'alice', 'peer connected')
    const conn = aliceConn?.fields.conn
    assert.match(String(conn), /^c\d+$/)
    assert.equal(aliceConn?.fields.peer, 'bob')
    // The link says where the connection came from; messaging says who it is.
    assert.ok(find(lines, 'linkA', 'connection up').some((l) => l.fields.conn === conn && l.fields.direction === 'inbound'))
    assert.ok(find(lines, 'linkB', 'connecting').some((l) => l.fields.port === listener.port && l.fields.attempt === 1))
    assert.equal(find(lines, 'linkA', 'listening')[0]?.fields.port, listener.port)
    // The handshake, step by step, at debug level.
    assert.ok(find(lines, 'alice', 'sending handshake').some((l) => l.level === 'debug' && l.fields.frames === 'PROTOCOL_VERSION,EXTENSIONS,IDENTIFICATION'))
    for (const step of ['got PROTOCOL_VERSION', 'got EXTENSIONS', 'got IDENTIFICATION']) {
      assert.ok(find(lines, 'alice', step).some((l) => l.level === 'debug' && l.fields.conn === conn), step)
    }
    assert.ok(find(lines, 'alice', 'idle, sending PING').length > 0)
    assert.ok(find(lines, 'bob', 'got PING, answering PONG').some((l) => l.fields.peer === 'alice'))
    assert.ok(find(lines, 'alice', 'got PONG').some((l) => l.fields.peer === 'bob'))
    // Drops say to whom, which message and why.
    assert.ok(find(lines, 'bob', 'message dropped').some((l) => l.fields.to === 'carol' && l.fields.reason === 'not-connected' && typeof l.fields.uuid === 'string'))
    assert.ok(find(lines, 'store', 'queue store opened').some((l) => l.fields.directory === store.directory))

    // A connection lost: the connector says when it tries again.
    for (const c of linkA.connectionsOpen) c.close()
    await waitFor(b, 'disconnect')
    await connected(b, 'alice')
    assert.ok(find(lines, 'linkB', 'connection lost, reconnecting').some((l) => typeof l.fields.retryIn === 'number'))
    assert.ok(find(lines, 'bob', 'peer disconnected').some((l) => l.fields.peer === 'alice'))
    assert.ok(find(lines, 'linkB', 'connecting').length >= 2)
  } finally {
    await a.close()
    await b.close()
    await rm(dir, { recursive: true, force: true })
  }
  assert.ok(find(lines, 'store', 'queue store closed').length === 1)
  assert.ok(!text().includes(SECRET), 'no log line carries message data')
})

test('frames of a type this side does not know are skipped and logged with their type and size', async () => {
  const { lines, logger } = capture()
  const link = new Link()
  const mq = new Messaging(link, { identity: 'alice', logger: logger('alice') })
  const listener = await link.listen({ port: 0 })
  const raw = await RawPeer.connect(listener.port)
  try {
    const identify = Buffer.from('raw-peer')
    raw.write('000000050000000001') // PROTOCOL_VERSION 1
    raw.write(Buffer.concat([Buffer.from([0, 0, 0, 1 + identify.length, 2]), identify])) // IDENTIFICATION
    raw.write('0000000363abcd') // type 99 with a 2-byte body
    raw.write('00000001' + '04') // then a PING: once it is answered, the frame before it was read
    await connected(mq, 'raw-peer')
    await raw.bytes(1) // the handshake reply
    while (find(lines, 'alice', 'got PING, answering PONG').length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    const [line] = find(lines, 'alice', 'ignored a frame of unknown type')
    assert.equal(line?.fields.type, 99)
    assert.equal(line?.fields.bytes, 3)
    assert.equal(line?.fields.peer, 'raw-peer')
    assert.equal(mq.isConnected('raw-peer'), true, 'the connection stays up')
  } finally {
    raw.destroy()
    await mq.close()
  }
})

test('a refused handshake is a warning naming the connection and the reason', async () => {
  const { lines, logger } = capture()
  const link = new Link()
  const mq = new Messaging(link, { identity: 'alice', logger: logger('alice'), handshakeTimeout: 50 })
  const listener = await link.listen({ port: 0 })
  const raw = await RawPeer.connect(listener.port)
  try {
    await raw.closed
    const [line] = find(lines, 'alice', 'closing connection')
    assert.equal(line?.level, 'warn')
    assert.match(String(line?.fields.conn), /^c\d+$/)
    assert.equal((line?.fields.error as Error).name, 'HandshakeTimeoutError')
  } finally {
    await mq.close()
  }
})

const SIMPLE_PEERS = fileURLToPath(new URL('../examples/simple-peers.ts', import.meta.url))

async function run (file: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  return { code, stdout, stderr }
}

test('the debug namespaces are silent by default and speak with DEBUG=snakemq:*', async () => {
  const quiet = await run(SIMPLE_PEERS, { DEBUG: '' })
  assert.equal(quiet.code, 0, quiet.stderr)
  assert.equal(quiet.stderr, '')

  const loud = await run(SIMPLE_PEERS, { DEBUG: 'snakemq:*', DEBUG_COLORS: '0' })
  assert.equal(loud.code, 0, loud.stderr)
  const lines = loud.stderr.split('\n').filter((l) => l !== '')
  assert.ok(lines.some((l) => /snakemq:link info connection up conn=c\d+ direction=(in|out)bound/.test(l)))
  assert.ok(lines.some((l) => /snakemq:messaging info peer connected conn=c\d+ peer=(alice|bob|jack)/.test(l)))
  assert.ok(lines.some((l) => /snakemq:messaging debug got IDENTIFICATION conn=c\d+ peer=/.test(l)))
  // Bob and jack dial each other: which connection goes, and why, is in the lines.
  assert.ok(lines.some((l) => /snakemq:link info connection closed conn=c\d+ error=RedundantConnectionError/.test(l)))
  for (const data of ['hello', 'jack here', 'alice here']) {
    assert.ok(!lines.some((l) => l.includes(`"${data}`) || l.includes(data + '"')), `no line carries ${JSON.stringify(data)}`)
  }

  const linkOnly = await run(SIMPLE_PEERS, { DEBUG: 'snakemq:link', DEBUG_COLORS: '0' })
  assert.equal(linkOnly.code, 0, linkOnly.stderr)
  assert.ok(linkOnly.stderr.includes('snakemq:link'))
  assert.ok(!linkOnly.stderr.includes('snakemq:messaging'))
})

/** A real pino logger writing JSON lines into a list, at every level. */
function pinoInto (options: { errorKey?: string } = {}): { log: Pino, records: () => Array<Record<string, unknown>> } {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _enc, done) { text += chunk.toString('utf8'); done() } })
  const log = pino({ level: 'debug', base: null, ...options }, stream)
  return { log, records: () => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) }
}

test('pinoLogger writes each level to pino with the fields as properties and an error under err, stack and all', () => {
  const { log, records } = pinoInto()
  const logger = pinoLogger(log)
  const error = Object.assign(new RangeError('out of range'), { code: 'E_RANGE' })
  logger.debug('a debug line', { conn: 'c1', peer: 'bob' })
  logger.info('an info line')
  logger.warn('a warning', { conn: 'c2', error })
  logger.error('an error', { error, attempt: 3 })
  const [debug, info, warn, err] = records()
  assert.equal(records().length, 4)
  assert.deepEqual([debug?.level, info?.level, warn?.level, err?.level], [20, 30, 40, 50], "pino's numbers for debug, info, warn, error")
  assert.deepEqual([debug?.msg, info?.msg, warn?.msg, err?.msg], ['a debug line', 'an info line', 'a warning', 'an error'])
  assert.equal(debug?.conn, 'c1')
  assert.equal(debug?.peer, 'bob')
  assert.equal(err?.attempt, 3)
  for (const r of [warn, err]) {
    const e = r?.err as Record<string, unknown>
    assert.equal(e.type, 'RangeError')
    assert.equal(e.message, 'out of range')
    assert.equal(e.code, 'E_RANGE')
    assert.match(String(e.stack), /RangeError: out of range\n\s+at /)
    assert.equal(r?.error, undefined, 'the error is moved, not copied')
  }
  // pino's errorKey option has its counterpart.
  const other = pinoInto({ errorKey: 'error' })
  pinoLogger(other.log, { errorKey: 'error' }).warn('kept', { error })
  const kept = other.records()[0]?.error as Record<string, unknown>
  assert.deepEqual([kept.type, kept.message], ['RangeError', 'out of range'])
})

test('pinoLogger routes a Messaging peer\'s lines into pino, named by a child logger', async () => {
  const { log, records } = pinoInto()
  const linkA = new Link({ logger: pinoLogger(log.child({ component: 'link' })) })
  const a = new Messaging(linkA, { identity: 'alice', logger: pinoLogger(log.child({ component: 'messaging', peer: 'alice' })) })
  const listener = await linkA.listen({ port: 0 })
  const linkB = new Link()
  const b = new Messaging(linkB, { identity: 'bob' })
  try {
    linkB.connect({ port: listener.port })
    await connected(a, 'bob')
  } finally {
    await a.close()
    await b.close()
  }
  const lines = records()
  const up = lines.find((r) => r.component === 'link' && r.msg === 'connection up')
  assert.match(String(up?.conn), /^c\d+$/)
  assert.equal(up?.direction, 'inbound')
  assert.equal(up?.level, 30)
  const peer = lines.find((r) => r.component === 'messaging' && r.msg === 'peer connected')
  assert.equal(peer?.conn, up?.conn, 'the connection id ties the two components together')
  assert.ok(lines.some((r) => r.component === 'messaging' && r.level === 20 && r.msg === 'got IDENTIFICATION'))
})
