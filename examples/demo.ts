// `npm run demo`: the tutorial's scene, played by three `smq peer` processes on
// loopback. Bob listens and connects to Jack, Alice connects to both, Jack
// listens and connects to Bob. Bob says "hello" to Alice (TTL 600 s, as in the
// tutorial), Alice echoes it back and greets Jack, Jack greets Bob. Every peer
// prints its events as JSON lines; this script tells them as a story and ends
// once all three peers are done.
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const SMQ = fileURLToPath(new URL('../bin/smq.js', import.meta.url))
/** Each peer gives up after this long; generous, for a loaded machine. A normal run takes a second or two. */
const PEER_TIMEOUT_S = 60
const started = performance.now()

interface Event { event: string, [field: string]: unknown }

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

function tell (who: string, e: Event): void {
  switch (e.event) {
    case 'start': {
      const listen = (e.listen as string[]).map((a) => `listens on ${a}`)
      const connect = (e.connect as string[]).map((a) => `connects to ${a}`)
      say(who, `starts (pid ${String(e.pid)}): ${[...listen, ...connect].join(', ')}`)
      return
    }
    case 'connect': say(who, `is connected to ${String(e.ident)}`); return
    case 'disconnect': say(who, `lost the connection to ${String(e.ident)}`); return
    case 'recv': {
      texts.set(e.uuid as string, decode(e))
      const ttl = typeof e.ttl === 'number' ? `TTL ${e.ttl} s` : 'no TTL'
      say(who, `got ${decode(e)} from ${String(e.from)} (${ttl})`)
      return
    }
    case 'queued': say(who, `queued ${String(e.count)} message(s) for ${String(e.to)}`); return
    case 'delivered': {
      // The receiver's recv line, from another process, may not have come in yet.
      const own = greetings.get(who)
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
    case 'done':
      say(who, `is done: received ${String(e.received)}, sent ${String(e.sent)}: ${String(e.reason)}`)
  }
}

interface Run { name: string, child: ChildProcess, exit: Promise<number | null>, done: Event | null, stderr: string }

function peer (name: string, args: string[]): Run {
  const child = spawn(process.execPath, [SMQ, 'peer', '--ident', name, '--timeout', String(PEER_TIMEOUT_S), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const run: Run = {
    name,
    child,
    exit: new Promise((resolve) => child.once('close', (code) => { resolve(code) })),
    done: null,
    stderr: ''
  }
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { run.stderr += s })
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let e: Event
    try { e = JSON.parse(line) as Event } catch { say(name, line); return }
    if (e.event === 'done') run.done = e
    tell(name, e)
  })
  return run
}

/** What each peer sends, to tell a delivered message by its recipient. */
const greetings = new Map<string, { to: string, text: string }>()

async function playScene (): Promise<{ runs: Run[], codes: Array<number | null> }> {
  const [bobPort, jackPort] = await freePorts(2) as [number, number]
  const bob = `127.0.0.1:${bobPort}`
  const jack = `127.0.0.1:${jackPort}`
  console.log(`  bob   listens on ${bob} and connects to jack at ${jack}`)
  console.log(`  jack  listens on ${jack} and connects to bob at ${bob}`)
  console.log('  alice connects to both\n')
  const runs = [
    peer('bob', ['--listen', bob, '--connect', jack, '--send-to', 'alice', '--data', 'hello', '--ttl', '600', '--expect', '2']),
    peer('jack', ['--listen', jack, '--connect', bob, '--send-to', 'bob', '--data', 'hey bob, jack here', '--expect', '1']),
    peer('alice', ['--connect', bob, '--connect', jack, '--send-to', 'jack', '--data', 'hi jack, alice here', '--echo', '--expect', '1'])
  ]
  const kill = (): void => { for (const r of runs) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL') }
  const onSigint = (): void => { kill(); process.exit(130) }
  process.once('SIGINT', onSigint)
  // A last resort: the peers' own --timeout ends them long before this.
  const guard = setTimeout(() => { console.log('the peers did not finish; stopping them'); kill() }, (PEER_TIMEOUT_S + 15) * 1000)
  // A peer that could not bind its port (taken between freePorts() and its start) ends the scene at once.
  for (const r of runs) void r.exit.then(() => { if (portTaken(r)) kill() })
  const codes = await Promise.all(runs.map(async (r) => await r.exit))
  clearTimeout(guard)
  process.off('SIGINT', onSigint)
  return { runs, codes }
}

function portTaken (r: Run): boolean {
  return r.done !== null && String(r.done.reason).includes('EADDRINUSE')
}

async function main (): Promise<number> {
  greetings.set('bob', { to: 'alice', text: '"hello"' })
  greetings.set('jack', { to: 'bob', text: '"hey bob, jack here"' })
  greetings.set('alice', { to: 'jack', text: '"hi jack, alice here"' })
  console.log('The tutorial\'s scene, three smq peers on loopback.')
  console.log('bob says "hello" to alice (TTL 600 s), alice echoes it back and greets jack, jack greets bob:')
  for (let attempt = 1; ; attempt++) {
    const { runs, codes } = await playScene()
    const seconds = ((performance.now() - started) / 1000).toFixed(1)
    if (codes.every((c) => c === 0)) {
      console.log(`\nAll three peers got what they expected and exited 0, in ${seconds} s.`)
      return 0
    }
    if (runs.some(portTaken) && attempt < 3) {
      console.log('\nA port was taken by another program in the meantime; once more with new ports:')
      continue
    }
    runs.forEach((r, i) => {
      if (codes[i] === 0) return
      console.log(`\n${r.name} exited with ${String(codes[i] ?? r.child.signalCode)}${r.done !== null ? `: ${String(r.done.reason)}` : ''}`)
      if (r.stderr !== '') console.log(r.stderr.trimEnd())
    })
    return 1
  }
}

process.exitCode = await main()
