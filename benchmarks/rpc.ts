// RPC against the floor, in the same run: snakemq's RpcClient/RpcServer over one
// Link and Messaging per side, against two raw node:net id-echoes (the tuned,
// batching benchmarks/impl/raw-net.ts and the one-write-per-message
// benchmarks/impl/raw-net-simple.ts), all between two processes on 127.0.0.1,
// driven by the same code (benchmarks/harness/rpc-driver.ts):
//
//   - sequential: 5,000 calls (1,000 with --quick) one at a time after 20,000 (200)
//     warm-up calls, each timed: p50, p99, calls/s;
//   - in flight: 50,000 calls (5,000) with 100 in flight after 20,000 (500) warm-up
//     calls: calls/s. (The counts are RPC_RUNS in harness/rpc-driver.ts, shared with
//     `npm run bench`; --warmup N sets both warm-ups, e.g. 2000 for the figures of
//     the issue-4 work before the warm-up was lengthened.)
//
// The CPU rows add up both processes' user and system time per call: on a busy
// machine they vary less than the times do.
//
// The snakemq_messaging column is a bare request/reply over Messaging (no RPC
// layer): the difference between it and snakemq_rpc is what RPC itself costs.
// Every implementation is the harness's (benchmarks/impl/), as in `npm run bench`'s S3.
//
// Goals (issue 4): sequential p50 at most 1.5x raw, in-flight rate at least 0.6x raw.
//
//   npx tsx benchmarks/rpc.ts [--quick] [--runs N] [--profile DIR] 
//                              [--impl raw_net,raw_net_simple,snakemq_messaging,snakemq_rpc] [--only seq,par]
//                              [--node-args="--flag ..."]   (extra node flags for the children)
//                              [--scale N]   (N times as many calls, for steady-state profiles)
//                              [--warmup N]  (warm-up calls, both modes)
//
// The implementations alternate within each run; the table shows medians. With
// --profile every child writes a V8 CPU profile to DIR (read one with
// `npx tsx benchmarks/profile-top.ts FILE`).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { driveRpc, RPC_RUNS, type RpcDriveArgs, type RpcDriveResult } from './harness/rpc-driver.ts'
import { HOST, type Impl, type RoleControl } from './harness/types.ts'

const SELF = fileURLToPath(import.meta.url)
const REPO = resolve(SELF, '..', '..')

type ImplName = 'raw_net' | 'raw_net_simple' | 'snakemq_messaging' | 'snakemq_rpc'
type Figures = Record<'p50' | 'p99' | 'seq' | 'par' | 'seqCpu' | 'parCpu', number[]>
interface ChildSpec { impl: ImplName, role: 'server' | 'client', args: Record<string, number> }
type FromChild =
  | { type: 'ready', port: number }
  | { type: 'result', result: RpcDriveResult, cpuUs: number }
  | { type: 'cpu', cpuUs: number }
  | { type: 'error', message: string }

/** CPU time (user + system) this process used so far, in µs. */
function cpuUs (): number {
  const u = process.cpuUsage()
  return u.user + u.system
}

/** CPU of a server from when it said ready. */
let readyCpu = 0

// ---- children ---------------------------------------------------------------

/** Resolves when the parent says stop (or goes away). */
function stopSignal (): AbortSignal {
  const ac = new AbortController()
  process.on('message', (m: unknown) => { if (m === 'stop') ac.abort() })
  process.on('disconnect', () => { ac.abort() })
  return ac.signal
}

/** Sends to the parent; resolves once the message is handed over (so exiting right after loses nothing). */
async function tell (m: FromChild): Promise<void> {
  if (m.type === 'ready') readyCpu = cpuUs()
  await new Promise<void>((resolve) => {
    if (process.send === undefined || !process.connected) { resolve(); return }
    process.send(m, undefined, {}, () => { resolve() })
  })
}

async function implOf (impl: ImplName): Promise<Impl> {
  switch (impl) {
    case 'raw_net': return (await import('./impl/raw-net.ts')).default
    case 'raw_net_simple': return (await import('./impl/raw-net-simple.ts')).default
    case 'snakemq_messaging': return (await import('./impl/snakemq-messaging.ts')).default
    case 'snakemq_rpc': return (await import('./impl/snakemq.ts')).default
  }
}

async function child (spec: ChildSpec): Promise<void> {
  const stop = stopSignal()
  const impl = await implOf(spec.impl)
  if (spec.role === 'server') {
    const ctl = { ready: (info?: { port?: number }) => { void tell({ type: 'ready', port: info!.port! }) }, stop } as unknown as RoleControl
    await impl.rpcServer!({ size: spec.args.size! }, ctl)
    await tell({ type: 'cpu', cpuUs: cpuUs() - readyCpu })
    return
  }
  const conn = await impl.rpcConnect!({ host: HOST, port: spec.args.port!, size: spec.args.size! })
  try {
    const before = cpuUs()
    const result = await driveRpc(conn, spec.args as unknown as RpcDriveArgs)
    await tell({ type: 'result', result, cpuUs: cpuUs() - before })
  } finally {
    await conn.close()
  }
}

// ---- parent -----------------------------------------------------------------

interface Handle { ready: Promise<number>, result: Promise<RpcDriveResult>, cpuUs: Promise<number>, stop (): void, exited: Promise<void> }

function start (spec: ChildSpec, nodeArgs: string[]): Handle {
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', SELF, '--child', JSON.stringify(spec)], {
    cwd: REPO, stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  let onReady!: (port: number) => void
  let onResult!: (r: RpcDriveResult) => void
  let onFail!: (e: Error) => void
  const ready = new Promise<number>((resolve, reject) => { onReady = resolve; onFail = reject })
  const failResult = onFail
  const result = new Promise<RpcDriveResult>((resolve, reject) => {
    onResult = resolve
    onFail = (e) => { failResult(e); reject(e) }
  })
  let onCpu!: (us: number) => void
  const cpu = new Promise<number>((resolve) => { onCpu = resolve })
  ready.catch(() => {})
  result.catch(() => {})
  proc.on('message', (m: FromChild) => {
    if (m.type === 'ready') onReady(m.port)
    else if (m.type === 'result') { onCpu(m.cpuUs); onResult(m.result) } else if (m.type === 'cpu') onCpu(m.cpuUs)
    else onFail(new Error(`${spec.impl} ${spec.role}: ${m.message}`))
  })
  const exited = once(proc, 'exit').then(([code, signal]) => {
    onFail(new Error(`${spec.impl} ${spec.role} exited (${String(signal ?? code)}) before reporting`))
    onCpu(NaN)
  })
  return {
    ready,
    result,
    cpuUs: cpu,
    exited,
    stop () { if (proc.connected) proc.send('stop') }
  }
}

interface Measured extends RpcDriveResult {
  /** CPU time per call (warm-up calls included) of the client and of the server, µs. */
  clientCpu: number
  serverCpu: number
}

async function measure (impl: ImplName, args: Omit<RpcDriveArgs, 'size'>, nodeArgs: string[]): Promise<Measured> {
  const size = 16
  const server = start({ impl, role: 'server', args: { size } }, nodeArgs)
  let result: RpcDriveResult
  let clientCpu: number
  try {
    const port = await server.ready
    const client = start({ impl, role: 'client', args: { ...args, size, port } }, nodeArgs)
    result = await client.result
    clientCpu = await client.cpuUs
    await client.exited
  } finally {
    server.stop()
    await server.exited
  }
  const calls = args.calls + args.warmup
  return { ...result, clientCpu: clientCpu / calls, serverCpu: (await server.cpuUs) / calls }
}

function median (xs: number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

async function main (): Promise<void> {
  const { values: opt } = parseArgs({
    options: { quick: { type: 'boolean', default: false }, runs: { type: 'string' }, profile: { type: 'string' }, scale: { type: 'string' }, warmup: { type: 'string' }, impl: { type: 'string' }, only: { type: 'string' }, 'node-args': { type: 'string' } },
    strict: true
  })
  const quick = opt.quick
  const runCount = Number(opt.runs ?? (quick ? 1 : 3))
  const nodeArgs = (opt['node-args'] ?? '').split(' ').filter((a) => a !== '')
  if (opt.profile !== undefined) {
    const dir = resolve(process.env.INIT_CWD ?? process.cwd(), opt.profile)
    await mkdir(dir, { recursive: true })
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${dir}`)
  }
  // --scale N: N times the calls (not the warm-up), for profiles of the steady state.
  const scale = Math.max(1, Number(opt.scale ?? 1))
  const runs = quick ? RPC_RUNS.quick : RPC_RUNS
  const warmup = opt.warmup === undefined ? null : Number(opt.warmup)
  const sequential = { ...runs.sequential, calls: runs.sequential.calls * scale, ...(warmup !== null ? { warmup } : {}) }
  const inflight = { ...runs.inflight, calls: runs.inflight.calls * scale, ...(warmup !== null ? { warmup } : {}) }
  const all: ImplName[] = ['raw_net', 'raw_net_simple', 'snakemq_messaging', 'snakemq_rpc']
  const impls = opt.impl === undefined ? all : all.filter((i) => opt.impl!.split(',').includes(i))
  const empty = (): Figures => ({ p50: [], p99: [], seq: [], par: [], seqCpu: [], parCpu: [] })
  const figures: Record<ImplName, Figures> = { raw_net: empty(), raw_net_simple: empty(), snakemq_messaging: empty(), snakemq_rpc: empty() }
  const only = opt.only === undefined ? ['seq', 'par'] : opt.only.split(',')
  for (let run = 1; run <= runCount; run++) {
    for (const impl of impls) {
      if (only.includes('seq')) {
        process.stderr.write(`run ${run}/${runCount} ${impl} sequential...\n`)
        const s = await measure(impl, sequential, nodeArgs)
        figures[impl].p50.push(s.p50_us!)
        figures[impl].p99.push(s.p99_us!)
        figures[impl].seq.push(s.calls_per_s)
        figures[impl].seqCpu.push(s.clientCpu + s.serverCpu)
      }
      if (only.includes('par')) {
        process.stderr.write(`run ${run}/${runCount} ${impl} 100 in flight...\n`)
        const p = await measure(impl, inflight, nodeArgs)
        figures[impl].par.push(p.calls_per_s)
        figures[impl].parCpu.push(p.clientCpu + p.serverCpu)
      }
    }
  }
  const fmt = (n: number): string => n >= 1000 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1)
  const min = (xs: number[]): number => xs.length === 0 ? NaN : Math.min(...xs)
  const max = (xs: number[]): number => xs.length === 0 ? NaN : Math.max(...xs)
  type Pick = (xs: number[]) => number
  /** One table: `lower` picks the figure where lower is better (p50, CPU), `higher` where higher is. */
  const print = (title: string, lower: Pick, higher: Pick): void => {
    const row = (label: string, key: keyof Figures, pick: Pick, goal = ''): string[] => {
      const [a, s, m, b] = all.map((i) => pick(figures[i][key]))
      return [label, fmt(a!), fmt(s!), fmt(m!), fmt(b!), `${(b! / a!).toFixed(2)}x`, `${(b! / s!).toFixed(2)}x`, goal]
    }
    const table = [
      ['', 'raw_net', 'raw_net_simple', 'snakemq_messaging', 'snakemq_rpc', 'rpc/raw_net', 'rpc/simple', 'goal'],
      row('sequential p50 (µs)', 'p50', lower, '<= 1.5x'),
      row('sequential p99 (µs)', 'p99', lower),
      row('sequential calls/s', 'seq', higher),
      row('100 in flight calls/s', 'par', higher, '>= 0.6x'),
      row('CPU µs/call, sequential', 'seqCpu', lower),
      row('CPU µs/call, in flight', 'parCpu', lower)
    ]
    const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)))
    const lines = table.map((r) => r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('  '))
    lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '))
    console.log(`${title}\n\n${lines.join('\n')}\n`)
  }
  console.log(`RPC over loopback, 16-byte payloads, ${runCount} run(s); sequential ${sequential.calls} calls after ${sequential.warmup} warm-up, in flight ${inflight.calls} calls after ${inflight.warmup} warm-up\n`)
  print('medians of the runs:', median, median)
  if (runCount > 1) print('best of the runs (on a busy machine, the closest to what the code costs):', min, max)
  console.log('(CPU: user + system time of client and server together, per call, warm-up included)')
  const rpc = figures.snakemq_rpc
  for (const ref of ['raw_net', 'raw_net_simple'] as const) {
    const raw = figures[ref]
    if (raw.p50.length === 0 && raw.par.length === 0) continue
    const p50Ok = median(rpc.p50) <= 1.5 * median(raw.p50)
    const parOk = median(rpc.par) >= 0.6 * median(raw.par)
    console.log(`goals against ${ref} (medians): p50 ${p50Ok ? 'met' : 'missed'}, in-flight rate ${parOk ? 'met' : 'missed'}`)
  }
}

const childArg = process.argv.indexOf('--child')
if (childArg >= 0) {
  child(JSON.parse(process.argv[childArg + 1] ?? '{}') as ChildSpec).then(() => { process.exit(0) }, async (err: unknown) => {
    await tell({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
    process.exit(1)
  })
} else {
  await main()
}
