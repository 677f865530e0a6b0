// Where S4's drain goes: a child process fills a fresh LevelStore with 20,000
// awaited persistent sends to an absent bob and is killed with SIGKILL; bob
// listens here; a second child opens the same store, connects and drains. Prints
// the time of each step from that child's `LevelStore.open()`: the open, ready(),
// the connection, and bob's 1st, 4,000th, ... 20,000th message. Under tsx (the
// library's TypeScript), so absolute figures are above `npm run bench`'s.
//
//   npx tsx benchmarks/s4-timeline.ts                     # default options
//   npx tsx benchmarks/s4-timeline.ts --window 16384      # persistentWindow.messages for the restarted sender
import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Link, LevelStore, Messaging } from '../src/index.ts'

const COUNT = 20_000
const self = fileURLToPath(import.meta.url)
const { values: opt } = parseArgs({ options: { role: { type: 'string', default: 'main' }, dir: { type: 'string' }, port: { type: 'string' }, window: { type: 'string' } } })
const now = (): number => performance.timeOrigin + performance.now()
const payload = (i: number): Buffer => { const b = Buffer.alloc(16); b.writeUInt32BE(i, 4); return b }

async function child (args: string[], onMessage: (m: { what: string, at: number }) => void = () => {}): Promise<number | null> {
  const c = fork(self, args, { execArgv: ['--import', 'tsx'] })
  c.on('message', onMessage)
  return await new Promise((resolve) => c.on('exit', (code) => { resolve(code) }))
}

if (opt.role === 'fill') {
  const store = await LevelStore.open(opt.dir!)
  const mq = new Messaging(new Link(), { identity: 'alice', store })
  await mq.ready()
  for (let i = 0; i < COUNT; i++) await mq.send('bob', payload(i), { ttl: 600, persistent: true })
  process.kill(process.pid, 'SIGKILL')
} else if (opt.role === 'restart') {
  const mark = (what: string): void => { process.send!({ what, at: now() }) }
  mark('open')
  const store = await LevelStore.open(opt.dir!)
  mark('opened')
  const link = new Link()
  link.connect({ host: '127.0.0.1', port: Number(opt.port) })
  const window = opt.window === undefined ? {} : { persistentWindow: { messages: Number(opt.window), bytes: 16 * 1024 * 1024 } }
  const mq = new Messaging(link, { identity: 'alice', store, ...window })
  mq.on('connect', () => { mark('connected') })
  await mq.ready()
  mark('ready')
  await mq.drain()
  mark('drained')
  await mq.close()
} else {
  const dir = mkdtempSync(join(tmpdir(), 's4-timeline-'))
  try {
    await child(['--role', 'fill', '--dir', dir])
    const link = new Link()
    const listener = await link.listen({ host: '127.0.0.1', port: 0 })
    const bob = new Messaging(link, { identity: 'bob' })
    const marks: Array<[string, number]> = []
    const restarted = child(['--role', 'restart', '--dir', dir, '--port', String(listener.port), ...(opt.window !== undefined ? ['--window', opt.window] : [])], (m) => marks.push([m.what, m.at]))
    const seen = new Set<number>()
    for await (const m of bob.messages()) {
      seen.add(Buffer.from(m.data).readUInt32BE(4))
      if (seen.size === 1 || seen.size % 4000 === 0) marks.push([`bob's message ${seen.size}`, now()])
      if (seen.size === COUNT) break
    }
    if ((await restarted) !== 0) throw new Error('the restarted sender failed')
    const t0 = marks.find(([w]) => w === 'open')![1]
    for (const [what, at] of marks.sort((a, b) => a[1] - b[1])) console.log(`${what.padEnd(20)} ${(at - t0).toFixed(1).padStart(7)} ms`)
    await bob.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
