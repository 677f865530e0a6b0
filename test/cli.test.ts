// The `smq` command as a user runs it: real processes through bin/smq.js, real
// sockets on 127.0.0.1, every stdout line parsed as the JSON it promises to be.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { connect, createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Link, Messaging } from '../src/index.ts'
import { LogWatch } from './helpers/util.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SMQ = join(ROOT, 'bin', 'smq.js')

interface Event { event: string, [field: string]: unknown }

const running = new Set<ChildProcess>()
after(() => { for (const child of running) child.kill('SIGKILL') })

/** One `smq` process: its events as they come, and how it ended. */
class Smq {
  readonly child: ChildProcess
  readonly events: Event[] = []
  /** When each event arrived (performance.now()), index for index. */
  readonly times: number[] = []
  /** stdout lines that were not JSON objects. */
  readonly junk: string[] = []
  stderr = ''
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  private readonly waiters = new Set<() => void>()
  private closed = false

  constructor (args: string[], command: string[] = [SMQ]) {
    const child = spawn(process.execPath, [...command, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    running.add(child)
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.stderr += s; this.wakeAll() })
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const e = JSON.parse(line) as unknown
        if (typeof e === 'object' && e !== null && typeof (e as Event).event === 'string') {
          this.events.push(e as Event)
          this.times.push(performance.now())
        } else this.junk.push(line)
      } catch {
        this.junk.push(line)
      }
      this.wakeAll()
    })
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        running.delete(child)
        this.closed = true
        this.wakeAll()
        resolve({ code, signal })
      })
    })
  }

  private wakeAll (): void { for (const w of this.waiters) w() }

  /** The first event (already seen or still to come) that `match` accepts; rejects if the process ends first. */
  async next (match: (e: Event) => boolean, what = 'event'): Promise<Event> {
    while (true) {
      const found = this.events.find(match)
      if (found !== undefined) return found
      if (this.closed) throw new Error(`smq ended without the ${what}; stdout: ${JSON.stringify(this.events)}, stderr: ${this.stderr}`)
      await new Promise<void>((resolve) => {
        const w = (): void => { this.waiters.delete(w); resolve() }
        this.waiters.add(w)
      })
    }
  }

  async started (): Promise<Event> { return await this.next((e) => e.event === 'start', 'start event') }

  /** The port of its first --listen, from the start event. */
  async port (): Promise<number> {
    const start = await this.started()
    const addr = (start.listen as string[])[0]!
    return Number(addr.slice(addr.lastIndexOf(':') + 1))
  }

  all (event: string): Event[] { return this.events.filter((e) => e.event === event) }

  /** The stderr lines so far. */
  get notes (): string[] { return this.stderr.split('\n').filter((l) => l !== '') }

  /** The first stderr line (already seen or still to come) that `re` matches; rejects if the process ends first. */
  async note (re: RegExp): Promise<RegExpMatchArray> {
    while (true) {
      const found = this.notes.map((l) => re.exec(l)).find((m) => m !== null)
      if (found !== undefined) return found
      if (this.closed) throw new Error(`smq ended without printing ${String(re)} on stderr; stderr: ${this.stderr}`)
      await new Promise<void>((resolve) => {
        const w = (): void => { this.waiters.delete(w); resolve() }
        this.waiters.add(w)
      })
    }
  }

  /** When `e` (one of this.events) arrived. */
  timeOf (e: Event): number { return this.times[this.events.indexOf(e)]! }

  /**
   * Waits for the exit and checks the output's shape: JSON only, start first (if
   * any), done last, its rate what its counts and elapsed time make. `done` comes
   * without `elapsed` and `rate`, which `timing` holds.
   */
  async result (): Promise<{ code: number | null, done: Event, timing: { elapsed: number, rate: number } }> {
    const { code } = await this.exited
    assert.deepEqual(this.junk, [], 'every stdout line is a JSON object with an event')
    const last = this.events.at(-1)
    assert.equal(last?.event, 'done', `done is the last line; stderr: ${this.stderr}`)
    assert.equal(this.all('done').length, 1)
    if (this.all('start').length > 0) assert.equal(this.events[0]!.event, 'start', 'start is the first line')
    const { elapsed, rate, ...done } = last
    assert.ok(typeof elapsed === 'number' && elapsed >= 0 && typeof rate === 'number', JSON.stringify(last))
    // elapsed is rounded to the millisecond, rate (received + delivered per second) to a whole number.
    const n = (done.received as number) + (done.delivered as number)
    if (elapsed > 0.001) assert.ok(rate >= n / (elapsed + 0.0005) - 0.5 && rate <= n / (elapsed - 0.0005) + 0.5, `rate ${rate} for ${n} in ${elapsed} s`)
    return { code, done: done as Event, timing: { elapsed, rate } }
  }
}

const smq = (...args: string[]): Smq => new Smq(args)

/** The payload rule, written out again independently of src/cli. */
function payload (i: number, size: number): Buffer {
  const full = Buffer.alloc(4 + Math.max(0, size))
  full.writeUInt32BE(i, 0)
  for (let j = 0; j < size; j++) full[4 + j] = (i + j) % 256
  return full.subarray(0, size)
}
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

test('two smq peers exchange 1,000 messages and echo all of them back', async (t) => {
  const t0 = performance.now()
  const bob = smq('peer', '--ident', 'bob', '--listen', '0', '--echo', '--expect', '1000', '--timeout', '90')
  const port = await bob.port()
  const alice = smq('peer', '--ident', 'alice', '--connect', `127.0.0.1:${port}`, '--send-to', 'bob', '--count', '1000',
    '--size', '100', '--expect', '1000', '--timeout', '90')
  const [a, b] = await Promise.all([alice.result(), bob.result()])
  t.diagnostic(`1,000 messages there and back, two processes started: ${Math.round(performance.now() - t0)} ms`)
  assert.equal(a.code, 0, `alice: ${JSON.stringify(a.done)} ${alice.stderr}`)
  assert.equal(b.code, 0, `bob: ${JSON.stringify(b.done)} ${bob.stderr}`)
  assert.deepEqual(a.done, { event: 'done', ok: true, received: 1000, sent: 1000, delivered: 1000, reason: 'all expectations met' })
  assert.deepEqual(b.done, { event: 'done', ok: true, received: 1000, sent: 1000, delivered: 1000, reason: 'all expectations met' })

  const start = await alice.started()
  assert.deepEqual(start, { event: 'start', ident: 'alice', pid: alice.child.pid, listen: [], connect: [`127.0.0.1:${port}`] })
  assert.deepEqual((await bob.started()).listen, [`127.0.0.1:${port}`])
  const queued = alice.all('queued')
  assert.equal(queued.length, 1)
  assert.equal(queued[0]!.to, 'bob')
  assert.equal(queued[0]!.count, 1000)
  assert.equal(typeof queued[0]!.seconds, 'number')
  assert.ok(alice.all('connect').some((e) => e.ident === 'bob'))
  assert.ok(bob.all('connect').some((e) => e.ident === 'alice'))

  const expected = Array.from({ length: 1000 }, (_, i) => sha256(payload(i, 100))).sort()
  const sent = alice.all('delivered')
  const atBob = bob.all('recv')
  assert.equal(atBob.length, 1000)
  for (const r of atBob) {
    assert.equal(r.from, 'alice')
    assert.equal(r.len, 100)
    assert.equal(r.flags, 0)
    assert.equal(r.data_hex, undefined, 'no data_hex beyond 64 bytes')
    assert.ok(typeof r.ttl === 'number' && r.ttl >= 590 && r.ttl <= 600, `default TTL 600, got ${String(r.ttl)}`)
    assert.match(r.uuid as string, /^[0-9a-f]{32}$/)
  }
  assert.deepEqual(atBob.map((r) => r.sha256).sort(), expected, 'bob got every generated payload once')
  assert.deepEqual(sent.map((e) => e.uuid).sort(), atBob.map((r) => r.uuid).sort(), 'alice saw each of them delivered')
  assert.ok(sent.every((e) => e.to === 'bob'))

  const echoes = alice.all('recv')
  assert.equal(echoes.length, 1000)
  assert.deepEqual(echoes.map((r) => r.sha256).sort(), expected, 'every echo carries the same data')
  assert.ok(echoes.every((r) => r.from === 'bob' && r.len === 100 && r.flags === 0))
  const echoUuids = new Set(echoes.map((r) => r.uuid))
  assert.equal(echoUuids.size, 1000)
  for (const r of atBob) assert.ok(!echoUuids.has(r.uuid), 'an echo has a new UUID')
  assert.deepEqual(bob.all('delivered').map((e) => e.uuid).sort(), [...echoUuids].sort(), 'bob saw every echo delivered')
})

test('recv prints data_hex up to 64 bytes and sha256 beyond; echoes keep TTL and flags', async () => {
  const bob = smq('peer', '--ident', 'bob', '--listen', '0', '--echo', '--expect', '9', '--timeout', '90')
  const at = `127.0.0.1:${await bob.port()}`
  const common = ['--connect', at, '--send-to', 'bob', '--timeout', '90']
  const alice = smq('peer', '--ident', 'alice', ...common, '--size', '64', '--count', '3', '--ttl', '-1', '--persistent', '--expect', '3')
  const carol = smq('peer', '--ident', 'carol', ...common, '--size', '65', '--count', '1', '--expect', '1')
  const dave = smq('peer', '--ident', 'dave', ...common, '--data', 'hello, bob', '--count', '2', '--ttl', '30', '--expect', '2')
  const eve = smq('peer', '--ident', 'eve', ...common, '--size', '2', '--count', '2', '--expect', '2')
  const erin = smq('peer', '--ident', 'erin', ...common, '--size', '0', '--expect', '1')
  const results = await Promise.all([bob, alice, carol, dave, eve, erin].map(async (p) => await p.result()))
  for (const [i, r] of results.entries()) assert.equal(r.code, 0, `peer ${i}: ${JSON.stringify(r.done)}`)

  const hexes = (p: Smq): unknown[] => p.all('recv').map((r) => r.data_hex)
  const from = (who: string): Event[] => bob.all('recv').filter((r) => r.from === who)

  assert.deepEqual(from('alice').map((r) => r.data_hex), [0, 1, 2].map((i) => payload(i, 64).toString('hex')))
  assert.ok(from('alice').every((r) => r.ttl === null && r.flags === 1 && r.len === 64 && r.sha256 === undefined))
  assert.deepEqual(hexes(alice), [0, 1, 2].map((i) => payload(i, 64).toString('hex')), 'echoes carry the same data')
  assert.ok(alice.all('recv').every((r) => r.ttl === null && r.flags === 1), 'no TTL and the persistent flag come back with the echo')

  const big = from('carol')[0]!
  assert.equal(big.data_hex, undefined)
  assert.equal(big.sha256, sha256(payload(0, 65)))
  assert.equal(big.len, 65)
  assert.equal(carol.all('recv')[0]!.sha256, sha256(payload(0, 65)))

  assert.deepEqual(from('dave').map((r) => r.data_hex), [Buffer.from('hello, bob').toString('hex'), Buffer.from('hello, bob').toString('hex')])
  for (const r of from('dave')) assert.ok(typeof r.ttl === 'number' && r.ttl >= 28 && r.ttl <= 30)
  for (const r of dave.all('recv')) assert.ok(typeof r.ttl === 'number' && r.ttl >= 27 && r.ttl <= 30, 'the echo goes back with the TTL it came with')

  assert.deepEqual(from('eve').map((r) => r.data_hex), ['0000', '0000'].map((_, i) => payload(i, 2).toString('hex')))
  assert.deepEqual(from('erin').map((r) => [r.data_hex, r.len]), [['', 0]])
})

test('two smq peer --quiet processes exchanging 500 messages print only their start and done lines, with rate and elapsed time', async () => {
  const bob = smq('peer', '--ident', 'bob', '--listen', '0', '--echo', '--expect', '500', '--timeout', '60', '--quiet')
  const port = await bob.port()
  const alice = smq('peer', '--ident', 'alice', '--connect', `127.0.0.1:${port}`, '--send-to', 'bob', '--count', '500', '--size', '100',
    '--expect', '500', '--timeout', '60', '--quiet')
  const [a, b] = await Promise.all([alice.result(), bob.result()])
  assert.equal(a.code, 0, alice.stderr)
  assert.equal(b.code, 0, bob.stderr)
  assert.deepEqual(alice.events.map((e) => e.event), ['start', 'done'])
  assert.deepEqual(bob.events.map((e) => e.event), ['start', 'done'])
  assert.deepEqual(a.done, { event: 'done', ok: true, received: 500, sent: 500, delivered: 500, reason: 'all expectations met' })
  assert.deepEqual(b.done, { event: 'done', ok: true, received: 500, sent: 500, delivered: 500, reason: 'all expectations met' })
  for (const { timing } of [a, b]) assert.ok(timing.elapsed > 0 && timing.rate > 0, JSON.stringify(timing))
  assert.deepEqual([alice.stderr, bob.stderr], ['', ''], 'nothing went wrong, so nothing on stderr')
})

const PROGRESS = /^smq: progress (\d+\.\d) s: sent (\d+), delivered (\d+), received (\d+), (\d+) msg\/s, queued (\d+)$/

test('--progress prints a line a second on stderr with the counts, the rate and the queue', async () => {
  const bob = smq('peer', '--ident', 'bob', '--listen', '0', '--expect', '40', '--timeout', '60', '--progress')
  // 40 kB at 16 kB/s: about 2.5 s, two or three progress lines with the transfer under way.
  const alice = smq('peer', '--ident', 'alice', '--connect', `127.0.0.1:${await bob.port()}`, '--send-to', 'bob', '--count', '40',
    '--size', '1000', '--throttle', '16000', '--timeout', '60', '--progress', '--quiet')
  const [a, b] = await Promise.all([alice.result(), bob.result()])
  assert.equal(a.code, 0, alice.stderr)
  assert.equal(b.code, 0, bob.stderr)
  assert.equal(bob.all('recv').length, 40, 'without --quiet stdout keeps its events')
  const parse = (p: Smq, timing: { elapsed: number }): number[][] => {
    const lines = p.notes.map((l) => PROGRESS.exec(l))
    assert.ok(lines.every((m) => m !== null), p.stderr)
    const rows = lines.map((m) => m!.slice(1).map(Number))
    assert.ok(rows.length >= 1 && rows.length <= Math.ceil(timing.elapsed), `${rows.length} lines in ${timing.elapsed} s`)
    for (let i = 1; i < rows.length; i++) {
      assert.ok(rows[i]![0]! > rows[i - 1]![0]!, 'the time goes up')
      for (const col of [1, 2, 3]) assert.ok(rows[i]![col]! >= rows[i - 1]![col]!, 'counts only grow')
    }
    return rows
  }
  const atBob = parse(bob, b.timing)
  assert.ok(atBob.every(([, sent, delivered, received]) => sent === 0 && delivered === 0 && received! <= 40))
  assert.ok(atBob.some(([, , , received, rate]) => received! > 0 && rate! > 0), `bob's lines show messages arriving: ${bob.stderr}`)
  const atAlice = parse(alice, a.timing)
  assert.ok(atAlice.some(([, sent, delivered, , , queued]) => sent === 40 && delivered! < 40 && queued! > 0), `alice's lines show the queue: ${alice.stderr}`)
})

/** A port on 127.0.0.1 that nothing listens on (it was bound a moment ago, then let go). */
/**
 * A port nothing listens on, and that no other test can take meanwhile: the
 * local end of an open connection (connecting to it is refused). `release()`
 * frees it for a test that then listens on it: the other end closes first, so
 * the closed connection's TIME_WAIT is on that end's port, not on this one.
 */
async function closedPort (): Promise<{ port: number, release: () => Promise<void> }> {
  const server = createServer()
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const socket = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port })
  socket.on('error', () => {})
  const [[accepted]] = await Promise.all([once(server, 'connection') as Promise<[Socket]>, once(socket, 'connect')])
  accepted.on('error', () => {})
  const port = socket.localPort!
  const release = async (): Promise<void> => {
    const closed = once(socket, 'close')
    accepted.end()
    await closed
    server.close()
    await once(server, 'close')
  }
  return { port, release }
}

test('a peer that cannot connect says so on stderr at the first failure and at the end, not at every attempt', async () => {
  const { port, release } = await closedPort()
  const p = smq('peer', '--ident', 'hopeful', '--connect', `127.0.0.1:${port}`, '--timeout', '2', '--quiet')
  const r = await p.result()
  await release()
  assert.equal(r.code, 0, 'no expectations, so the timeout is no failure')
  assert.deepEqual(p.events.map((e) => e.event), ['start', 'done'])
  const notes = p.notes
  assert.equal(notes.length, 2, p.stderr)
  assert.match(notes[0]!, new RegExp(`^smq: cannot connect to 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}; retrying in \\d+\\.\\d s$`))
  const last = new RegExp(`^smq: could not connect to 127\\.0\\.0\\.1:${port} in (\\d+) attempts over 2\\.\\d s: connect ECONNREFUSED`).exec(notes[1]!)
  assert.ok(last !== null, notes[1])
  assert.ok(Number(last[1]) >= 3, `${last[1]} attempts in 2 s, two lines`)
})

test('a peer that keeps failing to connect says so again every 10 s, and says when it connects at last', async () => {
  const { port, release } = await closedPort()
  const alice = smq('peer', '--ident', 'alice', '--connect', `127.0.0.1:${port}`, '--send-to', 'bob', '--data', 'at last', '--timeout', '40', '--quiet')
  const t0 = performance.now()
  await alice.note(/^smq: cannot connect to /)
  const again = await alice.note(/^smq: still cannot connect to 127\.0\.0\.1:\d+ after (\d+) attempts in (\d+\.\d) s: connect ECONNREFUSED/)
  assert.ok(Number(again[2]) >= 10 && performance.now() - t0 >= 9_900, `the reminder came after ${again[2]} s`)
  assert.equal(alice.notes.length, 2, `one line for the first failure, one 10 s later: ${alice.stderr}`)
  await release()
  const bob = smq('peer', '--ident', 'bob', '--listen', String(port), '--expect', '1', '--timeout', '60', '--quiet')
  const back = await alice.note(/^smq: connected to 127\.0\.0\.1:\d+ after (\d+) failed attempts in (\d+\.\d) s$/)
  assert.ok(Number(back[1]) >= Number(again[1]), "the failed attempts since the reminder are counted")
  const [a, b] = await Promise.all([alice.result(), bob.result()])
  assert.equal(a.code, 0, alice.stderr)
  assert.equal(b.code, 0, bob.stderr)
  assert.equal(alice.notes.length, 3, alice.stderr)
})

test('usage errors exit 2 with a message on stderr and nothing on stdout', async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /command is missing/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['peer'], /--ident NAME is required/],
    [['peer', '--ident', 'a', '--bogus'], /Unknown option '--bogus'/],
    [['peer', '--ident', 'a', 'extra'], /unexpected argument "extra"/],
    [['peer', '--ident', 'a', '--listen', 'x'], /--listen "x": the port/],
    [['peer', '--ident', 'a', '--listen', '70000'], /--listen "70000": the port/],
    [['peer', '--ident', 'a', '--connect', 'host:0'], /--connect "host:0": the port/],
    [['peer', '--ident', 'a', '--send-to', 'b', '--size', '5', '--data', 'x'], /either --size or --data/],
    [['peer', '--ident', 'a', '--send-to', 'b', '--count', '-1'], /--count must be a whole number/],
    [['peer', '--ident', 'a', '--send-to', 'b', '--ttl', 'soon'], /--ttl must be a number/],
    [['peer', '--ident', 'a', '--count', '3'], /--count applies to the messages of --send-to/],
    [['peer', '--ident', 'a', '--expect', '1.5'], /--expect must be a whole number/],
    [['peer', '--ident', 'a', '--timeout', '0'], /--timeout must be more than 0/],
    [['peer', '--ident', 'a', '--keepalive', '-2'], /--keepalive must be more than 0/],
    [['peer', '--ident', 'x'.repeat(51)], /--ident must be 1 to 50/],
    [['peer', '--ident', 'a', '--tls-cert', 'a.crt'], /--tls-cert and --tls-key go together/],
    [['peer', '--ident', 'a', '--tls-identity'], /--tls-identity needs --tls-ca/],
    [['peer', '--ident', 'a', '--tls-ca', '/nonexistent/ca.crt'], /--tls-ca: cannot read \/nonexistent\/ca.crt/],
    [['peer', '--ident', 'a', '--throttle', '0'], /--throttle must be more than 0 bytes per second/]
  ]
  await Promise.all(cases.map(async ([args, message]) => {
    const p = smq(...args)
    const { code } = await p.exited
    assert.equal(code, 2, `smq ${args.join(' ')}`)
    assert.match(p.stderr, message)
    assert.match(p.stderr, /^smq: /)
    assert.deepEqual([p.events, p.junk], [[], []], 'stdout stays empty')
  }))
})

test('--help explains the command and every flag of peer', async () => {
  const top = smq('--help')
  const peer = smq('peer', '--help')
  assert.equal((await top.exited).code, 0)
  assert.equal((await peer.exited).code, 0)
  const text = peer.junk.join('\n')
  for (const flag of ['--ident', '--listen', '--connect', '--send-to', '--count', '--size', '--data', '--ttl', '--persistent',
    '--store', '--expect', '--echo', '--timeout', '--keepalive', '--tls-cert', '--tls-key', '--tls-ca', '--tls-identity', '--throttle',
    '--quiet', '--progress']) {
    assert.match(text, new RegExp(`^ {2}(-\\w, )?${flag} `, 'm'), `peer --help explains ${flag}`)
  }
  assert.match(text, /"elapsed"/)
  assert.match(text, /With --quiet only start and done are printed/)
  assert.match(text, /--keepalive SECONDS .*\n.*\(default 10, the\n/, 'the keepalive default is the library\'s, as the keepalive test checks')
  assert.match(text, /e\.g\./)
  assert.match(top.junk.join('\n'), /smq peer --ident bob --listen 4000 --echo/)
})

test('--timeout ends with exit 1 while an expectation is unmet, and with 0 when there is none', async () => {
  const waiting = smq('peer', '--ident', 'lonely', '--listen', '0', '--expect', '1', '--timeout', '0.5')
  const sending = smq('peer', '--ident', 'hopeful', '--connect', '127.0.0.1:1', '--send-to', 'nobody', '--count', '2', '--timeout', '1')
  const idle = smq('peer', '--ident', 'idle', '--timeout', '0.3')
  const [w, s, i] = await Promise.all([waiting.result(), sending.result(), idle.result()])
  assert.equal(w.code, 1)
  assert.deepEqual(w.done, { event: 'done', ok: false, received: 0, sent: 0, delivered: 0, reason: 'timeout: received 0 of 1' })
  assert.equal(s.code, 1)
  assert.equal(s.done.ok, false)
  assert.match(s.done.reason as string, /^timeout: 2 not delivered/)
  assert.equal(s.done.sent, 2)
  assert.ok(sending.all('error').some((e) => /ECONNREFUSED/.test(e.error as string)), 'a refused connection is reported')
  assert.equal(i.code, 0)
  assert.deepEqual(i.done, { event: 'done', ok: true, received: 0, sent: 0, delivered: 0, reason: 'timeout: no expectations' })
})

test('--keepalive SECONDS pings a silent connection after SECONDS; without it, after the library\'s 10 s', async () => {
  const quick = smq('peer', '--ident', 'quick', '--listen', '0', '--keepalive', '1', '--timeout', '30', '--quiet')
  const usual = smq('peer', '--ident', 'usual', '--listen', '0', '--timeout', '30', '--quiet')
  const [quickPort, usualPort] = await Promise.all([quick.port(), usual.port()])
  /** A peer that never pings (keepalive: false) and answers PINGs: how long after its handshake the first one comes, in seconds. */
  const firstPing = async (port: number, ident: string): Promise<number> => {
    const watch = new LogWatch()
    const link = new Link()
    const mq = new Messaging(link, { identity: ident, keepalive: false, logger: watch.logger })
    try {
      link.connect({ host: '127.0.0.1', port })
      await watch.until((m) => m === 'peer connected')
      const t0 = performance.now()
      await watch.until((m) => m === 'got PING, answering PONG', 0, 20_000)
      return (performance.now() - t0) / 1000
    } finally {
      await mq.close()
    }
  }
  const [afterQuick, afterUsual] = await Promise.all([firstPing(quickPort, 'silent-1'), firstPing(usualPort, 'silent-2')])
  quick.child.kill('SIGTERM')
  usual.child.kill('SIGTERM')
  await Promise.all([quick.exited, usual.exited])
  assert.ok(afterQuick > 0.5 && afterQuick < 3, `--keepalive 1: the first PING after ${afterQuick} s`)
  assert.ok(afterUsual > 8 && afterUsual < 14, `no --keepalive: the first PING after ${afterUsual} s`)
})

test('SIGTERM ends a peer with a done line', async () => {
  const p = smq('peer', '--ident', 'patient', '--listen', '0', '--expect', '1')
  await p.started()
  p.child.kill('SIGTERM')
  const { code, done } = await p.result()
  assert.equal(code, 1)
  assert.equal(done.reason, 'interrupted by SIGTERM: received 0 of 1')
})

test('messages left in --store are sent by the next run and count as messages to deliver', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'smq-cli-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const first = smq('peer', '--ident', 'alice', '--store', dir, '--send-to', 'bob', '--count', '5', '--size', '8', '--persistent', '--timeout', '0.5')
  const r1 = await first.result()
  assert.equal(r1.code, 1, 'bob never came: not delivered')
  assert.match(r1.done.reason as string, /5 not delivered/)

  const bob = smq('peer', '--ident', 'bob', '--listen', '0', '--expect', '5', '--timeout', '60')
  const second = smq('peer', '--ident', 'alice', '--store', dir, '--connect', `127.0.0.1:${await bob.port()}`, '--timeout', '60')
  const [r2, rb] = await Promise.all([second.result(), bob.result()])
  assert.equal(r2.code, 0, JSON.stringify(r2.done))
  assert.deepEqual(r2.done, { event: 'done', ok: true, received: 0, sent: 0, delivered: 5, reason: 'all expectations met' })
  assert.equal(second.all('delivered').length, 5)
  assert.equal(rb.code, 0)
  assert.deepEqual(bob.all('recv').map((r) => [r.data_hex, r.flags]), [0, 1, 2, 3, 4].map((i) => [payload(i, 8).toString('hex'), 1]))
})

/** A CA and certificates for the given names (subject CN), as PEM files in `dir`; false without openssl. */
function makeCertificates (dir: string, names: string[]): boolean {
  const openssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }
  const key = (file: string): void => { openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file) }
  try {
    key('ca.key')
    openssl('req', '-x509', '-new', '-key', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=smq test CA')
    for (const name of names) {
      key(`${name}.key`)
      openssl('req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`)
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2')
    }
    return true
  } catch {
    return false
  }
}

test('--tls-* flags: peers talk over mutual TLS, and --tls-identity refuses a name the certificate does not carry', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'smq-cli-tls-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  assert.ok(makeCertificates(dir, ['bob', 'alice']), 'the TLS CLI test needs the openssl command line (Debian package openssl)')
  const tls = (name: string): string[] => ['--tls-cert', join(dir, `${name}.crt`), '--tls-key', join(dir, `${name}.key`), '--tls-ca', join(dir, 'ca.crt')]
  const bob = smq('peer', '--ident', 'bob', '--listen', '0', ...tls('bob'), '--tls-identity', '--expect', '1', '--timeout', '60')
  const at = `127.0.0.1:${await bob.port()}`
  const mallory = smq('peer', '--ident', 'mallory', '--connect', at, ...tls('alice'), '--send-to', 'bob', '--data', 'it is me, alice', '--timeout', '60')
  await bob.next((e) => e.event === 'error' && /IdentityMismatchError/.test(e.error as string), 'refusal of mallory')
  mallory.child.kill('SIGTERM')
  const m = await mallory.result()
  assert.equal(m.code, 1)
  assert.equal(mallory.all('delivered').length, 0)
  const alice = smq('peer', '--ident', 'alice', '--connect', at, ...tls('alice'), '--send-to', 'bob', '--data', 'alice here', '--timeout', '60')
  const [a, b] = await Promise.all([alice.result(), bob.result()])
  assert.equal(a.code, 0, JSON.stringify(a.done))
  assert.equal(b.code, 0, JSON.stringify(b.done))
  assert.deepEqual(bob.all('recv').map((r) => [r.from, r.data_hex]), [['alice', Buffer.from('alice here').toString('hex')]])
  assert.ok(!bob.all('connect').some((e) => e.ident === 'mallory'))
})

test('--throttle limits the bytes a peer writes per second', async (t) => {
  const bob = smq('peer', '--ident', 'bob', '--listen', '0', '--expect', '20', '--timeout', '60')
  const alice = smq('peer', '--ident', 'alice', '--connect', `127.0.0.1:${await bob.port()}`, '--send-to', 'bob', '--count', '20',
    '--size', '5000', '--throttle', '50000', '--timeout', '60')
  const [a, b] = await Promise.all([alice.result(), bob.result()])
  assert.equal(a.code, 0, JSON.stringify(a.done))
  assert.equal(b.code, 0, JSON.stringify(b.done))
  // 100 kB at 50 kB/s: about 2 s. Unthrottled it takes a few milliseconds; a busy machine only makes it slower.
  const recv = bob.all('recv')
  const ms = bob.timeOf(recv.at(-1)!) - bob.timeOf(bob.all('connect')[0]!)
  t.diagnostic(`100 kB at --throttle 50000: ${Math.round(ms)} ms`)
  assert.ok(ms >= 1500, `took ${ms} ms`)
})

test('npm run demo plays its three scenes (tutorial, crash and restart from a store, RPC) and exits 0 by itself', async (t) => {
  const t0 = performance.now()
  const demo = new Smq([join(ROOT, 'examples', 'demo.ts')], ['--import', 'tsx'])
  const { code } = await demo.exited
  t.diagnostic(`demo: ${Math.round(performance.now() - t0)} ms`)
  const out = demo.junk.join('\n')
  assert.equal(code, 0, out + demo.stderr)
  for (const line of ['alice  got "hello" from bob', 'bob    got "hello" from alice', 'bob    got "hey bob, jack here" from jack',
    'jack   got "hi jack, alice here" from alice', 'bob    is connected to jack', 'alice  is connected to jack', 'All three peers',
    // Persistence: queued, crashed, restarted from the store, all delivered.
    'alice  queued 3 message(s) for carol', 'alice  crashed (SIGKILL) with 3 persistent messages queued for carol',
    'alice  restarted from its store', 'alice  is done: delivered 3 message(s) from its store, received 0: all expectations met',
    'carol  is done: received 3', 'carol got all 3 messages',
    // RPC: a result and a remote error.
    'alice  got calc.add(2, 3) = 5', 'alice  caught the remote RangeError: division by zero (code E_DIV_ZERO), thrown on bob at',
    'All three scenes played']) {
    assert.ok(out.includes(line), `the demo tells: ${line}\n${out}`)
  }
  const parcels = demo.junk.filter((l) => l.includes('carol  got "a parcel for carol" from alice') && l.includes('sent before the crash'))
  assert.equal(parcels.length, 3, out)
  // The crash comes after the messages were queued, and before alice restarts.
  const order = ['alice  queued 3', 'alice  crashed', 'carol  starts', 'alice  restarted', 'carol  got', 'alice  got calc.add'].map((s) => out.indexOf(s))
  assert.deepEqual(order, [...order].sort((a, b) => a - b), out)
  // The temporary store is gone.
  const store = /with a store in (\S+),/.exec(out)?.[1]
  assert.ok(store !== undefined, out)
  assert.ok(!existsSync(store), `the demo removed ${store}`)
})
