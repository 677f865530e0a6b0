// npx tsx benchmarks/scale.ts depth|fanin|all [--count N] [--peers 100,1000] [--total N] [--runs N] [--json FILE]
//
// Issue 20's two measurements, with this library used as the README shows it,
// every role in a child process of its own on 127.0.0.1 (impl/scale.ts):
//
// depth: a sender queues `--count` persistent 16-byte messages (default
//   1,000,000) for bob, who is away (sends concurrent, `--in-flight` at a time),
//   closes and exits. bob then listens, and a fresh sender process opens the same
//   LevelStore and connects. Reported: RSS right after ready() and its peak while
//   draining, the time from that process's start to bob's first message, the full
//   drain, and whether every message arrived exactly once.
// fanin: `--peers` peers (default 100 and 1,000), each its own Link and
//   Messaging, send `--total` / peers messages each (default 200,000 in all:
//   100 x 2,000 and 1,000 x 200) with an awaited send, all at once, to bob; the
//   senders live in `--procs` child processes (default 1). Every peer connects
//   from 127.0.0.1, so bob's listener raises maxConnections and
//   maxConnectionsPerAddress (default 1,024 and 128) to the peer count plus 64.
//   The rate runs from the first sender's `go` to bob's last message; the peer
//   counts are interleaved within each run, and the ratio is taken within a run.
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, platform, release, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { failureOf, withProcs, type Proc } from './harness/proc.ts'

const USAGE = `usage: npx tsx benchmarks/scale.ts depth|fanin|all [options]
  --count N        depth: messages queued (default 1,000,000)
  --in-flight N    depth: concurrent sends while filling (default 1,000)
  --peers LIST     fanin: peer counts, comma-separated (default 100,1000; 10000 works too)
  --total N        fanin: messages in all, split evenly over the peers (default 200,000)
  --procs N        fanin: sender processes (default 1)
  --runs N         runs (default: depth 1, fanin 3)
  --timeout SEC    kill a measurement's processes after SEC seconds (default 900)
  --compiled       depth: the restarted sender is a JavaScript program run by node itself, on the
                   library compiled to dist/ (built first with npm run build), as a deployed
                   application is: no tsx compiling TypeScript at its start
  --json FILE      also write the figures as JSON
  --profile DIR    write a CPU profile of every child process to DIR (node --cpu-prof;
                   npx tsx benchmarks/profile-top.ts FILE summarises one)`

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    count: { type: 'string' },
    'in-flight': { type: 'string' },
    peers: { type: 'string' },
    total: { type: 'string' },
    procs: { type: 'string' },
    runs: { type: 'string' },
    timeout: { type: 'string' },
    json: { type: 'string' },
    profile: { type: 'string' },
    compiled: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false }
  },
  strict: true
})
if (opt.help) { console.log(USAGE); process.exit(0) }
const what = positionals[0] ?? 'all'
if (!['depth', 'fanin', 'all'].includes(what) || positionals.length > 1) { console.error(USAGE); process.exit(2) }

function int (v: string | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt
  const x = Number(v.replaceAll(/[_,]/g, ''))
  if (!Number.isInteger(x) || x < 1) { console.error(`${name} must be a positive integer\n${USAGE}`); process.exit(2) }
  return x
}
const count = int(opt.count, 1_000_000, '--count')
const inFlight = int(opt['in-flight'], 1000, '--in-flight')
const peerCounts = (opt.peers ?? '100,1000').split(',').map((p) => int(p.trim(), 0, '--peers'))
const total = int(opt.total, 200_000, '--total')
const procs = int(opt.procs, 1, '--procs')
const timeoutMs = int(opt.timeout, 900, '--timeout') * 1000
// --profile: every child writes a V8 CPU profile there when it exits.
const nodeArgs = opt.profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(opt.profile)}`]
const SIZE = 16
const FILE = 'impl/scale.ts'

const log = (s: string): void => { process.stderr.write(`${s}\n`) }
const fmt = (v: number | undefined, digits = 0): string =>
  v === undefined || !Number.isFinite(v) ? '-' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const n = (r: Record<string, unknown>, key: string): number => {
  const v = r[key]
  if (typeof v !== 'number') throw new Error(`a child did not report ${key}`)
  return v
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
function table (head: string[], rows: string[][]): void {
  const w = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)))
  const line = (r: string[]): string => r.map((x, c) => (c === 0 ? x.padEnd(w[c]!) : x.padStart(w[c]!))).join(' | ')
  console.log(line(head))
  console.log(w.map((x) => '-'.repeat(x)).join('-|-'))
  for (const r of rows) console.log(line(r))
}

const out: Record<string, unknown> = {}
const errors: string[] = []

async function depthRun (): Promise<Record<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-scale-depth-'))
  try {
    return await withProcs(timeoutMs, nodeArgs, async (start) => {
      const fill = start({ file: FILE, role: 'fill', args: { dir, count, size: SIZE, inFlight } })
      const f = await fill.result
      fill.stop()
      await fill.exited
      if (n(f, 'queued') !== count) throw new Error(`the filling sender had ${n(f, 'queued')} of ${count} queued`)
      log(`depth: ${fmt(count)} queued at ${fmt(n(f, 'sends_per_s'))} sends/s (RSS ${fmt(n(f, 'rss_mb_after_fill'))} MB after filling); restarting`)
      const rx = start({ file: FILE, role: 'receiver', args: { count } })
      const { port } = await rx.ready
      const tx: Proc = opt.compiled
        ? start({ file: 'impl/scale-restart.mjs', role: 'restart', args: { dir, port }, plain: true })
        : start({ file: FILE, role: 'restart', args: { dir, port } })
      const [r, t] = await Promise.all([Promise.race([rx.result, failureOf(tx.result)]), tx.result])
      const exact = n(r, 'missing') === 0 && n(r, 'duplicates') === 0 && n(r, 'strays') === 0
      const startAt = n(t, 'startAt')
      return {
        fill_sends_per_s: n(f, 'sends_per_s'),
        queued_at_ready: n(t, 'queuedAtReady'),
        rss_mb_after_ready: n(t, 'rss_mb_after_ready'),
        rss_mb_peak_drain: n(t, 'rss_mb_peak_drain'),
        heap_mb_peak_drain: n(t, 'heap_mb_peak_drain'),
        rss_mb_max_sender: n(t, 'maxRssMb'),
        imported_s: (n(t, 'importedAt') - startAt) / 1000,
        ready_s: (n(t, 'readyAt') - startAt) / 1000,
        first_message_s: (n(r, 'firstAt') - startAt) / 1000,
        drained_s: (n(r, 'lastAt') - startAt) / 1000,
        drain_msgs_per_s: count / ((n(r, 'lastAt') - n(r, 'firstAt')) / 1000),
        missing: n(r, 'missing'),
        duplicates: n(r, 'duplicates'),
        exactly_once: exact ? 1 : 0
      }
    })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function faninRun (peers: number): Promise<Record<string, number>> {
  const per = Math.max(1, Math.floor(total / peers))
  const all = per * peers
  return await withProcs(timeoutMs, nodeArgs, async (start) => {
    const rx = start({ file: FILE, role: 'receiver', args: { count: all, peers } })
    const { port } = await rx.ready
    const nProcs = Math.min(procs, peers)
    const txs: Proc[] = []
    for (let i = 0; i < nProcs; i++) {
      const from = Math.floor((i * peers) / nProcs)
      const to = Math.floor(((i + 1) * peers) / nProcs)
      txs.push(start({ file: FILE, role: 'senders', args: { port, from, to, per, size: SIZE } }))
    }
    const readies = await Promise.race([Promise.all(txs.map((t) => t.ready)), failureOf(rx.result)])
    for (const t of txs) t.signal('go')
    const [r, ts] = await Promise.all([
      Promise.race([rx.result, ...txs.map((t) => failureOf(t.result))]),
      Promise.all(txs.map((t) => t.result))
    ])
    if (n(r, 'missing') !== 0 || n(r, 'duplicates') !== 0 || n(r, 'strays') !== 0) {
      throw new Error(`bob: ${n(r, 'missing')} missing, ${n(r, 'duplicates')} duplicates, ${n(r, 'strays')} strays`)
    }
    const firstAt = Math.min(...ts.map((t) => n(t, 'firstAt')))
    return {
      peers,
      per_peer: per,
      messages: all,
      msgs_per_s: all / ((n(r, 'lastAt') - firstAt) / 1000),
      connect_s: Math.max(...readies.map((x) => n(x, 'connectMs'))) / 1000,
      // CPU per message: the receiver's from its first message to its last, the senders' from go to drained.
      cpu_us_per_msg_receiver: n(r, 'cpuUs') / all,
      cpu_us_per_msg_senders: ts.reduce((sum, t) => sum + n(t, 'cpuUs'), 0) / all,
      rss_mb_receiver: n(r, 'maxRssMb'),
      rss_mb_senders: Math.max(...ts.map((t) => n(t, 'maxRssMb')))
    }
  })
}

const started = Date.now()
log(`node ${process.version}, ${availableParallelism()} cpus (${cpus()[0]?.model ?? '?'}), ${platform()} ${release()}`)

if ((what === 'depth' || what === 'all') && opt.compiled) {
  log('depth --compiled: npm run build')
  const built = spawnSync('npm', ['run', '--silent', 'build'], { cwd: resolve(import.meta.dirname, '..'), stdio: 'inherit' })
  if (built.status !== 0) { console.error('npm run build failed'); process.exit(1) }
}
if (what === 'depth' || what === 'all') {
  const runs = int(opt.runs, 1, '--runs')
  const results: Array<Record<string, number>> = []
  for (let i = 0; i < runs; i++) {
    try {
      const r = await depthRun()
      results.push(r)
      log(`depth run ${i + 1}/${runs}: ${Object.entries(r).map(([k, v]) => `${k} ${fmt(v, v < 100 ? 3 : 0)}`).join(', ')}`)
    } catch (err) {
      errors.push(`depth run ${i + 1}: ${err instanceof Error ? err.message : String(err)}`)
      log(errors.at(-1)!)
    }
  }
  out.depth = { count, runs: results }
  console.log('')
  console.log(`depth: ${fmt(count)} persistent ${SIZE}-byte messages queued for an absent peer, then a fresh sender process on the same LevelStore (issue 20's goals in brackets)`)
  console.log(`times from the restarted process's start: its imports done (Node, ${opt.compiled ? 'the library from dist/' : 'tsx, the library'}), ready(), bob's first and last message`)
  table(['run', 'fill sends/s', 'RSS after ready() [<= 160 MB]', 'peak RSS draining', 'peak JS heap draining', 'imports done', 'ready()', 'first message [<= 0.5 s]', 'all delivered', 'drain msgs/s', 'exactly once'],
    results.map((r, i) => [String(i + 1), fmt(r.fill_sends_per_s), `${fmt(r.rss_mb_after_ready)} MB`, `${fmt(r.rss_mb_peak_drain)} MB`, `${fmt(r.heap_mb_peak_drain)} MB`,
      `${fmt(r.imported_s, 3)} s`, `${fmt(r.ready_s, 3)} s`, `${fmt(r.first_message_s, 3)} s`, `${fmt(r.drained_s, 2)} s`, fmt(r.drain_msgs_per_s),
      r.exactly_once === 1 ? 'yes' : `no: ${r.missing} missing, ${r.duplicates} dup`]))
}

if (what === 'fanin' || what === 'all') {
  const runs = int(opt.runs, 3, '--runs')
  const byPeers = new Map<number, Array<Record<string, number>>>()
  const ratioRuns = new Map<number, number[]>()
  for (let i = 0; i < runs; i++) {
    const thisRun = new Map<number, number>()
    for (const peers of peerCounts) {
      try {
        const r = await faninRun(peers)
        byPeers.set(peers, [...(byPeers.get(peers) ?? []), r])
        thisRun.set(peers, r.msgs_per_s!)
        log(`fanin ${peers} peers run ${i + 1}/${runs}: ${Object.entries(r).map(([k, v]) => `${k} ${fmt(v, v < 100 ? 2 : 0)}`).join(', ')}`)
      } catch (err) {
        errors.push(`fanin ${peers} peers run ${i + 1}: ${err instanceof Error ? err.message : String(err)}`)
        log(errors.at(-1)!)
      }
    }
    const base = thisRun.get(peerCounts[0]!)
    for (const [p, v] of thisRun) if (base !== undefined) ratioRuns.set(p, [...(ratioRuns.get(p) ?? []), v / base])
  }
  out.fanin = { total, procs, runs: Object.fromEntries(byPeers), ratio_runs: Object.fromEntries(ratioRuns) }
  console.log('')
  console.log(`fanin: peers each with its own Link and Messaging, ${fmt(total)} messages of ${SIZE} B in all to one receiver, senders in ${procs} process(es), medians of ${runs} run(s)`)
  table(['peers x messages', 'msgs/s', `ratio to ${peerCounts[0]} peers (per run) [1,000: >= 0.8x]`, 'CPU/msg receiver', 'CPU/msg senders', 'connect all', 'receiver RSS', 'senders RSS'],
    peerCounts.filter((p) => byPeers.has(p)).map((p) => {
      const rs = byPeers.get(p)!
      const ratios = ratioRuns.get(p) ?? []
      return [`${fmt(p)} x ${fmt(rs[0]!.per_peer)}`, fmt(median(rs.map((r) => r.msgs_per_s!))),
        ratios.length === 0 ? '' : `${median(ratios).toFixed(2)}x (${ratios.map((x) => x.toFixed(2)).join(', ')})`,
        `${fmt(median(rs.map((r) => r.cpu_us_per_msg_receiver!)), 2)} us`, `${fmt(median(rs.map((r) => r.cpu_us_per_msg_senders!)), 2)} us`,
        `${fmt(median(rs.map((r) => r.connect_s!)), 2)} s`, `${fmt(median(rs.map((r) => r.rss_mb_receiver!)))} MB`, `${fmt(median(rs.map((r) => r.rss_mb_senders!)))} MB`]
    }))
}

console.log('')
console.log(`node ${process.version}, ${availableParallelism()} cpus, ${platform()} ${release()}; ${((Date.now() - started) / 1000).toFixed(0)} s`)
for (const e of errors) console.log(`error: ${e}`)
if (opt.json !== undefined) {
  const file = resolve(process.env.INIT_CWD ?? process.cwd(), opt.json)
  await writeFile(file, JSON.stringify({ ...out, meta: { date: new Date().toISOString(), command: `npx tsx benchmarks/scale.ts ${process.argv.slice(2).join(' ')}`, errors } }, null, 2) + '\n')
  log(`wrote ${file}`)
}
process.exitCode = errors.length > 0 ? 1 : 0
