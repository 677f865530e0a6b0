// `npm run demo`: three short scenes on loopback, told as a story.
//
// 1. The tutorial's scene, played by three `smq peer` processes. Bob listens and
//    connects to Jack, Alice connects to both, Jack listens and connects to Bob.
//    Bob says "hello" to Alice (TTL 600 s, as in the tutorial), Alice echoes it
//    back and greets Jack, Jack greets Bob.
// 2. Nothing lost in a crash: Alice, with a LevelDB store (`--store`, a temp
//    directory), queues three persistent messages for Carol, who is not running,
//    and is killed with SIGKILL. Carol starts, Alice restarts from the same store
//    and delivers them.
// 3. RPC, in this process: Bob serves an object "calc", Alice calls it through a
//    typed proxy and catches the error one of its methods throws on Bob's side.
//
// Every `smq peer` prints its events as JSON lines; this script tells them as a
// story and ends once every scene is over (exit 0), or with exit 1 and the reason
// when something fails or does not happen in time.
import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Link, Messaging, RpcClient, RpcRemoteError, RpcServer } from '../src/index.ts'

const SMQ = fileURLToPath(new URL('../bin/smq.js', import.meta.url))
/** Each peer gives up after this long; generous, for a loaded machine. A normal run takes a second or two. */
const PEER_TIMEOUT_S = 60
/** The longest wait for one step of scenes 2 and 3 (a peer starting, queueing, finishing, an RPC call). */
const STEP_TIMEOUT_S = 30
const started = performance.now()

interface Event { event: string, [field: string]: unknown }

/** A step that did not happen: the demo stops its peers and exits 1 with this message. */
class DemoFailure extends Error {}

/** Two distinct free ports: bob and jack must know each other's port before either starts. */
async function freePorts (n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, async () => {
    const server = createServer()
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve) })
    return server
  }))
  const ports = servers.map((s) => (s.address() as AddressInfo).port)
  await Promise.all(servers.map(async (s) => { await new Promise((resolve) => s.close(resolve)) }))
  return ports
}

/** The text of every message received so far, by UUID, to tell a delivered message by its text. */
const texts = new Map<string, string>()

function say (who: string, line: string): void {
  const t = ((performance.now() - started) / 1000).toFixed(2).padStart(5)
  console.log(`${t}s  ${who.padEnd(6)} ${line}`)
}

function decode (e: Event): string {
  if (typeof e.data_hex === 'string') return JSON.stringify(Buffer.from(e.data_hex, 'hex').toString('utf8'))
  return `${String(e.len)} bytes`
}

let duplicateNoted = false

interface Run {
  name: string
  child: ChildProcess
  exit: Promise<number | null>
  done: Event | null
  stderr: string
  /** What this peer sends itself, to tell a delivered message by its recipient. */
  sends?: { to: string, text: string }
  /** Set for a peer restarted from its store: its start line says so, its done line counts what it delivered. */
  restarted?: boolean
  /** Added to its start, queued and recv lines. */
  notes?: { start?: string, queued?: string, recv?: string }
  /** Messages received and delivered, as its events tell. */
  received: number
  delivered: number
  /** Called with each event, then with null once the process has ended. */
  watchers: Set<(e: Event | null) => void>
}

/** Every peer process not ended yet: stopped with SIGKILL when the demo fails or is interrupted. */
const live = new Set<Run>()

function killAll (): void {
  for (const r of live) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL')
}

function tell (run: Run, e: Event): void {
  const who = run.name
  switch (e.event) {
    case 'start': {
      const listen = (e.listen as string[]).map((a) => `listens on ${a}`)
      const connect = (e.connect as string[]).map((a) => `connects to ${a}`)
      const what = [...listen, ...connect].join(', ')
      say(who, `${run.restarted === true ? 'restarted from its store' : 'starts'} (pid ${String(e.pid)})${what !== '' ? `: ${what}` : ''}${run.notes?.start ?? ''}`)
      return
    }
    case 'connect': say(who, `is connected to ${String(e.ident)}`); return
    case 'disconnect': say(who, `lost the connection to ${String(e.ident)}`); return
    case 'recv': {
      run.received++
      texts.set(e.uuid as string, decode(e))
      const ttl = typeof e.ttl === 'number' ? `TTL ${e.ttl} s` : 'no TTL'
      say(who, `got ${decode(e)} from ${String(e.from)} (${ttl}${run.notes?.recv ?? ''})`)
      return
    }
    case 'queued': say(who, `queued ${String(e.count)} message(s) for ${String(e.to)}${run.notes?.queued ?? ''}`); return
    case 'delivered': {
      run.delivered++
      // The receiver's recv line, from another process, may not have come in yet.
      const own = run.sends
      const text = texts.get(e.uuid as string) ?? (own !== undefined && own.to === e.to ? own.text : 'its echo')
      say(who, `knows ${text} reached ${String(e.to)} (acknowledged)`)
      return
    }
    case 'drop': say(who, `dropped message ${String(e.uuid).slice(0, 8)} to ${String(e.to)}`); return
    case 'error': {
      const error = String(e.error)
      if (error.startsWith('DuplicateIdentityError')) {
        // Bob and Jack each connect to the other, as in the tutorial; one connection between them is enough.
        if (!duplicateNoted) say(who, 'refuses a second connection with the same peer (bob and jack dial each other; one link is kept)')
        duplicateNoted = true
        return
      }
      if (error.includes('ECONNREFUSED')) { say(who, `${error.replace(/: connect ECONNREFUSED.*/, '')}: not up yet, retrying`); return }
      say(who, `error: ${error}`)
      return
    }
    case 'done': {
      // `sent` counts what this process sent; a restarted peer's messages came from its store.
      const counts = run.restarted === true
        ? `delivered ${run.delivered} message(s) from its store, received ${String(e.received)}`
        : `received ${String(e.received)}, sent ${String(e.sent)}`
      say(who, `is done: ${counts}: ${String(e.reason)}`)
    }
  }
}

function peer (name: string, args: string[], options: Partial<Pick<Run, 'sends' | 'restarted' | 'notes'>> = {}): Run {
  const child = spawn(process.execPath, [SMQ, 'peer', '--ident', name, '--timeout', String(PEER_TIMEOUT_S), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const run: Run = {
    name,
    child,
    exit: new Promise((resolve) => child.once('close', (code) => {
      live.delete(run)
      for (const w of run.watchers) w(null)
      resolve(code)
    })),
    done: null,
    stderr: '',
    received: 0,
    delivered: 0,
    watchers: new Set(),
    ...options
  }
  live.add(run)
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { run.stderr += s })
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let e: Event
    try { e = JSON.parse(line) as Event } catch { say(name, line); return }
    if (e.event === 'done') run.done = e
    tell(run, e)
    for (const w of run.watchers) w(e)
  })
  return run
}

/** How a failed peer ended, for the failure message. */
function ending (r: Run, code: number | null): string {
  let text = `${r.name} exited with ${String(code ?? r.child.signalCode)}${r.done !== null ? `: ${String(r.done.reason)}` : ''}`
  if (r.stderr !== '') text += `\n${r.stderr.trimEnd()}`
  return text
}

/** `promise`, or a DemoFailure naming what did not happen if it takes longer than `seconds`. */
async function within<T> (promise: Promise<T>, what: string, seconds = STEP_TIMEOUT_S): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((resolve, reject) => { timer = setTimeout(() => { reject(new DemoFailure(`${what} did not happen within ${seconds} s`)) }, seconds * 1000) })
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** The first event of `run` that `match` accepts; a DemoFailure if the process ends first or it takes too long. */
async function waitFor (run: Run, match: (e: Event) => boolean, what: string): Promise<Event> {
  let watcher: ((e: Event | null) => void) | undefined
  const found = new Promise<Event>((resolve, reject) => {
    if (!live.has(run)) { reject(new DemoFailure(`${what}: ${run.name} had already ended`)); return }
    watcher = (e) => {
      if (e === null) void run.exit.then((code) => { reject(new DemoFailure(`${what} did not happen: ${ending(run, code)}`)) })
      else if (match(e)) resolve(e)
    }
    run.watchers.add(watcher)
  })
  try {
    return await within(found, what)
  } finally {
    if (watcher !== undefined) run.watchers.delete(watcher)
  }
}

// Scene 1 --------------------------------------------------------------------

async function playTutorial (): Promise<{ runs: Run[], codes: Array<number | null> }> {
  const [bobPort, jackPort] = await freePorts(2) as [number, number]
  const bob = `127.0.0.1:${bobPort}`
  const jack = `127.0.0.1:${jackPort}`
  console.log(`  bob   listens on ${bob} and connects to jack at ${jack}`)
  console.log(`  jack  listens on ${jack} and connects to bob at ${bob}`)
  console.log('  alice connects to both\n')
  const runs = [
    peer('bob', ['--listen', bob, '--connect', jack, '--send-to', 'alice', '--data', 'hello', '--ttl', '600', '--expect', '2'],
      { sends: { to: 'alice', text: '"hello"' } }),
    peer('jack', ['--listen', jack, '--connect', bob, '--send-to', 'bob', '--data', 'hey bob, jack here', '--expect', '1'],
      { sends: { to: 'bob', text: '"hey bob, jack here"' } }),
    peer('alice', ['--connect', bob, '--connect', jack, '--send-to', 'jack', '--data', 'hi jack, alice here', '--echo', '--expect', '1'],
      { sends: { to: 'jack', text: '"hi jack, alice here"' } })
  ]
  // A last resort: the peers' own --timeout ends them long before this.
  const guard = setTimeout(() => { console.log('the peers did not finish; stopping them'); killAll() }, (PEER_TIMEOUT_S + 15) * 1000)
  // A peer that could not bind its port (taken between freePorts() and its start) ends the scene at once.
  for (const r of runs) void r.exit.then(() => { if (portTaken(r)) killAll() })
  const codes = await Promise.all(runs.map(async (r) => await r.exit))
  clearTimeout(guard)
  return { runs, codes }
}

function portTaken (r: Run): boolean {
  return r.done !== null && String(r.done.reason).includes('EADDRINUSE')
}

async function tutorialScene (): Promise<void> {
  console.log('1. The tutorial\'s scene, three smq peers on loopback.')
  console.log('bob says "hello" to alice (TTL 600 s), alice echoes it back and greets jack, jack greets bob:')
  for (let attempt = 1; ; attempt++) {
    const { runs, codes } = await playTutorial()
    if (codes.every((c) => c === 0)) {
      console.log(`\nAll three peers got what they expected and exited 0, in ${seconds()} s.`)
      return
    }
    if (runs.some(portTaken) && attempt < 3) {
      console.log('\nA port was taken by another program in the meantime; once more with new ports:')
      continue
    }
    throw new DemoFailure(runs.flatMap((r, i) => codes[i] === 0 ? [] : [ending(r, codes[i]!)]).join('\n'))
  }
}

// Scene 2 --------------------------------------------------------------------

const PARCEL = 'a parcel for carol'
const PARCELS = 3
/** The store of scene 2, removed at the end (and on Ctrl-C). */
let storeDir: string | null = null

async function persistenceScene (): Promise<void> {
  console.log('\n2. Nothing lost in a crash: persistent messages in a LevelDB store.')
  console.log(`alice queues ${PARCELS} persistent messages for carol, who is not running, and is killed; carol starts, alice restarts from its store:\n`)
  const store = storeDir = await mkdtemp(join(tmpdir(), 'smq-demo-store-'))
  try {
    // No address for carol: the messages can only wait in the store.
    const first = peer('alice', ['--store', store, '--send-to', 'carol', '--persistent', '--count', String(PARCELS), '--data', PARCEL], {
      notes: { start: ` with a store in ${store}, and no address for carol`, queued: ', persistent: each one in the store before send() resolved' }
    })
    const queued = await waitFor(first, (e) => e.event === 'queued', `alice queueing ${PARCELS} messages`)
    if (queued.count !== PARCELS) throw new DemoFailure(`alice queued ${String(queued.count)} messages, not ${PARCELS}`)
    // send() resolved for each persistent message only once it was in the store (the queued event comes
    // after the last one resolved): a crash now loses nothing.
    first.child.kill('SIGKILL')
    await within(first.exit, 'alice ending after SIGKILL')
    say('alice', `crashed (SIGKILL) with ${PARCELS} persistent messages queued for carol`)
    const carol = peer('carol', ['--listen', '127.0.0.1:0', '--expect', String(PARCELS)], { notes: { recv: ', sent before the crash' } })
    const start = await waitFor(carol, (e) => e.event === 'start', 'carol starting to listen')
    const address = (start.listen as string[])[0]!
    const second = peer('alice', ['--store', store, '--connect', address], { restarted: true, sends: { to: 'carol', text: JSON.stringify(PARCEL) } })
    const codes = await within(Promise.all([carol.exit, second.exit]), 'carol and the restarted alice finishing').catch((err: unknown) => {
      const running = [carol, second].filter((r) => live.has(r)).map((r) => r.name).join(' and ')
      throw err instanceof DemoFailure && running !== '' ? new DemoFailure(`${err.message} (${running} still running)`) : err
    })
    const failed = [carol, second].flatMap((r, i) => codes[i] === 0 ? [] : [ending(r, codes[i]!)])
    if (failed.length > 0) throw new DemoFailure(failed.join('\n'))
    if (carol.received !== PARCELS || second.delivered !== PARCELS) {
      throw new DemoFailure(`carol received ${carol.received} and alice saw ${second.delivered} delivered, not ${PARCELS} each`)
    }
    console.log(`\ncarol got all ${PARCELS} messages alice had queued before its crash; both exited 0, at ${seconds()} s.`)
  } finally {
    killAll()
    await Promise.all([...live].map(async (r) => await r.exit))
    await rm(store, { recursive: true, force: true })
    storeDir = null
  }
}

// Scene 3 --------------------------------------------------------------------

/** What bob's "calc" offers, for the proxy's types. */
interface Calc {
  add (a: number, b: number): number
  divide (a: number, b: number): number
}

async function rpcScene (): Promise<void> {
  console.log('\n3. RPC in this process: bob serves an object "calc", alice calls it through a typed proxy.\n')
  const bobLink = new Link()
  const bobMq = new Messaging(bobLink, { identity: 'bob' })
  const aliceLink = new Link()
  const aliceMq = new Messaging(aliceLink, { identity: 'alice' })
  try {
    const listener = await bobLink.listen({ host: '127.0.0.1', port: 0 })
    const server = new RpcServer(bobMq)
    server.register('calc', {
      add (a: number, b: number): number {
        say('bob', `runs calc.add(${a}, ${b})`)
        return a + b
      },
      divide (a: number, b: number): number {
        say('bob', `runs calc.divide(${a}, ${b})`)
        if (b === 0) throw Object.assign(new RangeError('division by zero'), { code: 'E_DIV_ZERO' })
        return a / b
      }
    } satisfies Calc)
    say('bob', `serves "calc" (add, divide) on 127.0.0.1:${listener.port}`)
    aliceMq.on('connect', ({ ident }) => { say('alice', `is connected to ${ident}`) })
    aliceLink.connect({ host: '127.0.0.1', port: listener.port })
    // A call waits for bob to be connected; the timeout only guards against a hang.
    const client = new RpcClient(aliceMq, { timeout: STEP_TIMEOUT_S * 1000 })
    const calc = client.proxy<Calc>('bob', 'calc')
    say('alice', 'calls await calc.add(2, 3)')
    const sum = await calc.add(2, 3)
    say('alice', `got calc.add(2, 3) = ${sum}`)
    say('alice', 'calls await calc.divide(1, 0)')
    try {
      const q = await calc.divide(1, 0)
      throw new DemoFailure(`calc.divide(1, 0) returned ${q} instead of failing`)
    } catch (err) {
      if (!(err instanceof RpcRemoteError)) throw err
      const where = err.remoteStack?.split('\n')[1]?.trim().replace(/\(.*[/\\]/, '(')
      say('alice', `caught the remote ${err.remoteName}: ${err.message} (code ${String(err.code)})${where !== undefined ? `, thrown on bob ${where}` : ''}`)
    }
    await client.close()
    await server.close()
  } finally {
    await within(Promise.all([aliceMq.close(), bobMq.close()]), 'closing the RPC scene\'s peers')
  }
  console.log(`\nBoth calls answered, the error transferred with its remote stack, at ${seconds()} s.`)
}

// ----------------------------------------------------------------------------

function seconds (): string {
  return ((performance.now() - started) / 1000).toFixed(1)
}

async function main (): Promise<number> {
  process.once('SIGINT', () => {
    killAll()
    if (storeDir !== null) rmSync(storeDir, { recursive: true, force: true })
    process.exit(130)
  })
  try {
    await tutorialScene()
    await persistenceScene()
    await within(rpcScene(), 'the RPC scene')
  } catch (err) {
    killAll()
    console.log(`\nThe demo failed: ${err instanceof DemoFailure ? err.message : String((err as Error).stack ?? err)}`)
    return 1
  }
  console.log(`\nAll three scenes played, in ${seconds()} s.`)
  return 0
}

process.exitCode = await main()
