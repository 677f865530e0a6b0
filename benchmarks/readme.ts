// npm run bench [-- --scenario S1,S3a] [--impl snakemq,raw_net] [--runs N] [--json FILE] [--quick]
//
// The default mode of `npm run bench` (issue 19): this library used exactly as
// README.md teaches it, beside the raw node:net program and the zeromq.js 6
// program an application writes by hand (benchmarks/impl/readme/). Every
// measurement is two fresh child processes on 127.0.0.1. A rate runs from the
// sender's first send to the receiver's last message, both read on the wall
// clock that all processes share; the receiver checks that every message
// arrived exactly once. Runs are interleaved (run 1 of every scenario and
// implementation, then run 2, ...), so drift on a noisy machine hits all alike;
// the table shows medians, each ratio computed within a run, and the goals of
// issue 19. Progress goes to stderr, the table to stdout, the figures to JSON.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, platform, release, tmpdir, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { BENCH_DIR, compileBenchmarks, failureOf, withProcs, type Proc, type ProcSpec } from './harness/proc.ts'
import { FLOOR_KINDS } from './impl/readme/floor.ts'

const IMPLS = [
  { name: 'snakemq', title: 'this library', file: 'impl/readme/snakemq.ts' },
  { name: 'raw_net', title: 'raw node:net', file: 'impl/readme/raw-net.ts' },
  { name: 'zeromq', title: 'zeromq.js', file: 'impl/readme/zeromq.ts' }
] as const
type ImplName = typeof IMPLS[number]['name']
/** Who a figure is of: a program, or a floor (S1's README shape without a transport, S4's LevelDB). */
type Who = ImplName | 'level' | 'floor'

const SCENARIOS = ['S1', 'S2', 'S3a', 'S3b', 'S4'] as const
type ScenarioId = typeof SCENARIOS[number]

const USAGE = `usage: npm run bench -- [options]            (the default mode; --mode tuned for the older harness)
  --scenario LIST    comma-separated, of ${SCENARIOS.join(',')} (default all)
  --impl LIST        comma-separated, of ${IMPLS.map((i) => i.name).join(',')} (default all)
  --runs N           runs of everything, interleaved (default 3, --quick 1)
  --quick            a tenth of the messages and one run: a smoke test
  --times N          N times the messages and calls of every scenario: a longer run, most of it
                     past the JIT's warm-up (not the sizes of issue 19; the output says so)
  --tenths           for S1, S2 and S3b, the sender's (client's) CPU per message (call) and its
                     rate over each tenth of the run in turn (the JIT's warm-up shows in the first ones)
  --batch            S1 and S2: this library's receiver reads messages({ batch: true }), arrays of
                     the messages that arrived together (not the README's program; the output says so)
  --json FILE        where the figures go (default benchmarks/results-readme.json after a full
                     run; none by default with --quick, --scenario or --impl)
  --no-json          write no JSON
  --markdown         also print the table as Markdown (as README.md shows it)
  --timeout SEC      kill a measurement's processes after SEC seconds (default 120)
  --profile DIR      a CPU profile of every child process into DIR (node --cpu-prof)
  --node-args ARGS   extra node flags for every child, space-separated: --node-args=--trace-gc
  --tsx              run the programs and the library's TypeScript under tsx, as this mode did
                     until 2026-12-03; by default they are compiled with tsc first (into
                     .bench-tmp/compiled) and run by node, as an application is deployed`

function fail (msg: string): never {
  console.error(`${msg}\n${USAGE}`)
  process.exit(2)
}

const { values: opt } = parseArgs({
  options: {
    scenario: { type: 'string' },
    impl: { type: 'string' },
    runs: { type: 'string' },
    quick: { type: 'boolean', default: false },
    times: { type: 'string' },
    tenths: { type: 'boolean', default: false },
    batch: { type: 'boolean', default: false },
    json: { type: 'string' },
    markdown: { type: 'boolean', default: false },
    'no-json': { type: 'boolean', default: false },
    timeout: { type: 'string' },
    profile: { type: 'string' },
    'node-args': { type: 'string' },
    tsx: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false }
  },
  strict: true
})
if (opt.help) { console.log(USAGE); process.exit(0) }

function pick<T extends string> (arg: string | undefined, known: readonly T[], what: string): T[] {
  if (arg === undefined) return [...known]
  const want = arg.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '')
  for (const w of want) if (!known.some((k) => k.toLowerCase() === w)) fail(`unknown ${what}: ${w}`)
  return known.filter((k) => want.includes(k.toLowerCase()))
}

const quick = opt.quick
const runs = opt.runs === undefined ? (quick ? 1 : 3) : Number(opt.runs)
if (!Number.isInteger(runs) || runs < 1) fail('--runs must be a positive integer')
const timeoutMs = (opt.timeout === undefined ? 120 : Number(opt.timeout)) * 1000
if (!(timeoutMs > 0)) fail('--timeout must be a positive number of seconds')
const scenarios = pick(opt.scenario, SCENARIOS, 'scenario')
const implNames = pick(opt.impl, IMPLS.map((i) => i.name), 'implementation')
const impls = IMPLS.filter((i) => implNames.includes(i.name))
const cwd = process.env.INIT_CWD ?? process.cwd()
const partial = quick || opt.batch || opt.times !== undefined || opt.scenario !== undefined || opt.impl !== undefined
const jsonFile = opt['no-json'] || (partial && opt.json === undefined) ? undefined : resolve(cwd, opt.json ?? join(BENCH_DIR, 'results-readme.json'))
const profileDir = opt.profile === undefined ? undefined : resolve(cwd, opt.profile)
const extraNodeArgs = (opt['node-args'] ?? '').split(' ').filter((a) => a !== '')
const times = opt.times === undefined ? 1 : Number(opt.times)
if (!(times >= 1) || !Number.isInteger(times)) fail(`--times must be a whole number >= 1, got ${opt.times}`)
if (quick && times !== 1) fail('--quick and --times do not go together')
/** A scenario's count, as issue 19 gives it: a tenth with --quick, `times` as many with --times. */
const sized = (n: number): number => (quick ? n / 10 : n * times)

/** The sizes, as issue 19 gives them. */
const PARAMS = {
  S1: { count: sized(200_000), size: 16 },
  S2: { count: quick ? 64 : 256 * times, size: 1 << 20 },
  S3a: { mode: 'seq', calls: sized(5_000), inFlight: 1, size: 16 },
  S3b: { mode: 'inflight', calls: sized(20_000), inFlight: 100, size: 16 },
  S4: { count: sized(20_000), size: 16, floorCount: sized(10_000) }
} as const

const log = (s: string): void => { process.stderr.write(`${s}\n`) }

type Figures = Record<string, number>
/** figures[scenario][impl] = one Figures per run that succeeded (undefined for a failed run). */
const perRun: Partial<Record<ScenarioId, Partial<Record<Who, Array<Figures | undefined>>>>> = {}
const errors: string[] = []
let profileSeq = 0

function nodeArgsFor (tag: string): string[] {
  if (profileDir === undefined) return extraNodeArgs
  return [...extraNodeArgs, '--cpu-prof', `--cpu-prof-dir=${join(profileDir, `${tag}-${++profileSeq}`)}`]
}

const compiled = !opt.tsx
const spec = (file: string, role: string, args: Record<string, unknown>): ProcSpec => ({ file, role, args, compiled })
const n = (r: Record<string, unknown>, key: string): number => {
  const v = r[key]
  if (typeof v !== 'number') throw new Error(`a child did not report ${key}`)
  return v
}

/** With --tenths: a child's CPU per step and its rate over each tenth of the run (impl/readme/common.ts, Tenths). */
function logTenths (tag: string, steps: string, cpuLabel: string, rateLabel: string, tenths: unknown): void {
  if (!Array.isArray(tenths)) return
  const t = tenths as Array<{ cpu_us: number, per_s: number }>
  log(`${tag}, each tenth of the ${steps} in turn: ${cpuLabel} ${t.map((x) => x.cpu_us.toFixed(2)).join(' ')}; ${rateLabel} ${t.map((x) => fmt(x.per_s, 0)).join(' ')}`)
}

/** S1, S2: one sender, one receiver. */
async function stream (file: string, p: { count: number, size: number }, tag: string): Promise<Figures> {
  return await withProcs(timeoutMs, nodeArgsFor(tag), async (start) => {
    const rx = start(spec(file, 'receiver', { count: p.count, ...(opt.batch ? { batch: true } : {}) }))
    const { port } = await rx.ready
    const tx = start(spec(file, 'sender', { port, count: p.count, size: p.size }))
    const [r, t] = await Promise.all([Promise.race([rx.result, failureOf(tx.result)]), tx.result])
    const s = (n(r, 'lastAt') - n(t, 'firstAt')) / 1000
    if (opt.tenths) logTenths(tag, 'messages', 'sender CPU us/msg', 'sends/s', t.tenths)
    return {
      msgs_per_s: p.count / s,
      mb_per_s: (p.count * p.size) / 1e6 / s,
      seconds: s,
      // CPU each side used (all its threads), from its first message to its last (the sender's: to the end of its drain), per message.
      cpu_us_per_msg_sender: (n(t, 'cpuMs') * 1000) / p.count,
      cpu_us_per_msg_receiver: (n(r, 'cpuMs') * 1000) / p.count,
      rss_mb_sender: n(t, 'maxRssMb'),
      rss_mb_receiver: n(r, 'maxRssMb'),
      // This library's sender only: what its queue held, sampled every 1,024 sends.
      ...(typeof t.queuedMax === 'number' ? { queued_max: t.queuedMax, queued_mean: n(t, 'queuedMean') } : {})
    }
  })
}

/** S3a, S3b: an echo server and a client that drives the calls. */
async function rpc (file: string, p: Record<string, unknown>, tag: string): Promise<Figures> {
  return await withProcs(timeoutMs, nodeArgsFor(tag), async (start) => {
    const srv = start(spec(file, 'echoServer', {}))
    const { port } = await srv.ready
    const cli = start(spec(file, 'rpcClient', { ...p, port }))
    const r = await Promise.race([cli.result, failureOf(srv.result)])
    const out: Figures = {}
    for (const k of ['p50_us', 'p99_us', 'calls_per_s', 'cpu_us_per_call_client']) if (typeof r[k] === 'number') out[k] = r[k]
    // The server's CPU from its ready() to the stop, which comes once the client is done: the warm-up call and the calls.
    srv.stop()
    out.cpu_us_per_call_server = (n(await srv.result, 'cpuMs') * 1000) / (n(p, 'calls') + 1)
    if (opt.tenths) logTenths(tag, 'calls', 'client CPU us/call', 'calls/s', r.tenths)
    return out
  })
}

/**
 * S4: awaited persistent sends to an absent bob in one process, killed with
 * SIGKILL; then bob listens, a fresh process opens the same store and connects,
 * and the time runs from its LevelStore.open() to bob's last message.
 */
async function s4 (file: string, p: typeof PARAMS.S4, tag: string): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-bench-s4-'))
  try {
    return await withProcs(timeoutMs, nodeArgsFor(tag), async (start) => {
      const fill = start(spec(file, 'persistentSender', { dir, count: p.count, size: p.size }))
      const f = await fill.result
      fill.kill('SIGKILL')
      await fill.exited
      const rx = start(spec(file, 'receiver', { count: p.count }))
      const { port } = await rx.ready
      const tx: Proc = start(spec(file, 'restartedSender', { dir, port }))
      const [r, t] = await Promise.all([Promise.race([rx.result, failureOf(tx.result)]), tx.result])
      if (n(t, 'queuedAtReady') !== p.count) throw new Error(`the restarted sender found ${n(t, 'queuedAtReady')} of ${p.count} queued`)
      return {
        sends_per_s: n(f, 'sends_per_s'),
        drain_s: (n(r, 'lastAt') - n(t, 'openAt')) / 1000,
        drain_from_process_start_s: (n(r, 'lastAt') - n(t, 'startAt')) / 1000,
        open_to_ready_ms: n(t, 'readyAt') - n(t, 'openAt'),
        journal_replayed: n(t, 'replayed')
      }
    })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The floor under S4: level's own awaited put and batch, in a child like the others. */
async function levelFloor (p: typeof PARAMS.S4, tag: string): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-bench-level-'))
  try {
    return await withProcs(timeoutMs, nodeArgsFor(tag), async (start) => {
      const r = await start(spec('impl/readme/snakemq.ts', 'levelFloor', { dir, count: p.floorCount })).result
      return { put_us: n(r, 'put_us'), batch_us: n(r, 'batch_us'), batch2_us: n(r, 'batch2_us') }
    })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * The floor under S1: the README's per-message shape with no transport
 * (impl/readme/floor.ts), each kind in a fresh process, cold like S1.
 */
async function s1Floor (p: typeof PARAMS.S1, tag: string): Promise<Figures> {
  const out: Figures = {}
  for (const kind of FLOOR_KINDS) {
    out[`${kind}_us`] = await withProcs(timeoutMs, nodeArgsFor(`${tag}-${kind}`), async (start) =>
      n(await start(spec('impl/readme/floor.ts', 'shape', { kind, count: p.count, size: p.size })).result, 'cpu_us_per_msg'))
  }
  return out
}

function record (sc: ScenarioId, who: Who, run: number, f: Figures | undefined): void {
  const list = ((perRun[sc] ??= {})[who] ??= [])
  list[run] = f
}

const fmt = (v: number | undefined, digits = 0): string =>
  v === undefined || !Number.isFinite(v) ? '-' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

async function measure (sc: ScenarioId, who: Who, run: number, body: (tag: string) => Promise<Figures>): Promise<void> {
  const tag = `${sc}-${who}-run${run + 1}`
  try {
    const f = await body(tag)
    record(sc, who, run, f)
    log(`${sc} ${who} run ${run + 1}/${runs}: ${Object.entries(f).map(([k, v]) => `${k} ${fmt(v, v < 10 ? 3 : 0)}`).join(', ')}`)
  } catch (err) {
    record(sc, who, run, undefined)
    const msg = `${sc} ${who} run ${run + 1}: ${err instanceof Error ? err.message : String(err)}`
    errors.push(msg.split('\n')[0]!)
    log(msg)
  }
}

const machine = { nproc: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown', mem_gb: Math.round(totalmem() / 1e9), os: `${platform()} ${release()}`, node: process.version }
log(`node ${machine.node}, ${machine.nproc} cpus (${machine.cpu}), ${machine.os}; ${runs} run(s)${quick ? ', quick' : ''}`)
if (profileDir !== undefined) await mkdir(profileDir, { recursive: true })
if (compiled) {
  log('compiling the programs and the library with tsc (benchmarks/tsconfig.compiled.json); --tsx runs them under tsx instead')
  compileBenchmarks()
}
const started = Date.now()

for (let run = 0; run < runs; run++) {
  for (const sc of scenarios) {
    if (sc === 'S4') {
      if (impls.some((i) => i.name === 'snakemq')) await measure(sc, 'snakemq', run, (tag) => s4('impl/readme/snakemq.ts', PARAMS.S4, tag))
      await measure(sc, 'level', run, (tag) => levelFloor(PARAMS.S4, tag))
      continue
    }
    for (const impl of impls) {
      await measure(sc, impl.name, run, (tag) => sc === 'S1' || sc === 'S2'
        ? stream(impl.file, PARAMS[sc], tag)
        : rpc(impl.file, PARAMS[sc], tag))
    }
    if (sc === 'S1' && impls.some((i) => i.name === 'snakemq')) await measure(sc, 'floor', run, (tag) => s1Floor(PARAMS.S1, tag))
  }
}

// ---- the table ----

const median = (xs: number[]): number | undefined => {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const values = (sc: ScenarioId, who: Who, key: string): number[] =>
  (perRun[sc]?.[who] ?? []).map((f) => f?.[key]).filter((v): v is number => v !== undefined && Number.isFinite(v))
const med = (sc: ScenarioId, who: Who, key: string): number | undefined => median(values(sc, who, key))
/** The library's figure over the reference's, run by run (only runs where both succeeded). */
function ratios (sc: ScenarioId, ref: ImplName, key: string): number[] {
  const a = perRun[sc]?.snakemq ?? []
  const b = perRun[sc]?.[ref] ?? []
  const out: number[] = []
  for (let i = 0; i < runs; i++) {
    const x = a[i]?.[key]
    const y = b[i]?.[key]
    if (x !== undefined && y !== undefined && y > 0) out.push(x / y)
  }
  return out
}
function ratioCell (sc: ScenarioId, ref: ImplName, key: string): string {
  const rs = ratios(sc, ref, key)
  const m = median(rs)
  if (m === undefined) return ''
  const lo = Math.min(...rs)
  const hi = Math.max(...rs)
  return rs.length > 1 ? `${m.toFixed(2)}x (${lo.toFixed(2)}-${hi.toFixed(2)})` : `${m.toFixed(2)}x`
}

interface Row { scenario: string, lib: string, raw: string, zmq: string, vsRaw: string, vsZmq: string, goal: string, met: string }
const rows: Row[] = []
const json: Record<string, unknown> = {}
const unitDigits = (v: number | undefined): number => v !== undefined && v < 100 ? 1 : 0
const k = (v: number | undefined): string => v === undefined ? '-' : v >= 10_000 ? `${fmt(v / 1000, 1)}k` : fmt(v, unitDigits(v))

function rateRow (sc: ScenarioId, label: string, key: string, unit: string, goal: string, check: (vsRaw?: number, vsZmq?: number) => boolean | undefined): void {
  if (!scenarios.includes(sc)) return
  const lib = med(sc, 'snakemq', key)
  const raw = med(sc, 'raw_net', key)
  const zmq = med(sc, 'zeromq', key)
  const vr = median(ratios(sc, 'raw_net', key))
  const vz = median(ratios(sc, 'zeromq', key))
  const ok = check(vr, vz)
  rows.push({ scenario: label, lib: k(lib) + unit, raw: k(raw) + unit, zmq: k(zmq) + unit, vsRaw: ratioCell(sc, 'raw_net', key), vsZmq: ratioCell(sc, 'zeromq', key), goal, met: ok === undefined ? '' : ok ? 'yes' : 'no' })
  json[sc] = { key, snakemq: lib, raw_net: raw, zeromq: zmq, vs_raw_net: vr, vs_zeromq: vz, vs_raw_net_runs: ratios(sc, 'raw_net', key), vs_zeromq_runs: ratios(sc, 'zeromq', key), goal, met: ok }
}
const atLeast = (r: number | undefined, v: number): boolean | undefined => r === undefined ? undefined : r >= v
const atMost = (r: number | undefined, v: number): boolean | undefined => r === undefined ? undefined : r <= v
const both = (a: boolean | undefined, b: boolean | undefined): boolean | undefined => a === undefined ? b : b === undefined ? a : a && b

rateRow('S1', `S1 ${fmt(PARAMS.S1.count)} x 16 B, msgs/s`, 'msgs_per_s', '', '>= 1.0x raw, >= 3x zmq', (r, z) => both(atLeast(r, 1), atLeast(z, 3)))
if (scenarios.includes('S1') && perRun.S1?.floor !== undefined) {
  const f = (key: string): number | undefined => med('S1', 'floor', key)
  const rawTx = med('S1', 'raw_net', 'cpu_us_per_msg_sender')
  const rawRx = med('S1', 'raw_net', 'cpu_us_per_msg_receiver')
  // Raw node:net's time per message (1 / its rate) less the floor of a for-await receiver, run by run: what a
  // library's receiver, on a core of its own and busy all the time, has per message for its transport, framing,
  // protocol and queues if it is to keep raw's rate.
  const left: number[] = []
  for (let i = 0; i < runs; i++) {
    const r = perRun.S1?.raw_net?.[i]?.msgs_per_s
    const it = perRun.S1?.floor?.[i]?.iterate_us
    if (r !== undefined && it !== undefined) left.push(1e6 / r - it)
  }
  const l = median(left)
  rows.push({
    scenario: 'S1 floor, no transport, CPU/msg: await send, payload; for await+Set, Set',
    lib: `${fmt(f('send_us'), 3)}, ${fmt(f('payload_us'), 3)}; ${fmt(f('iterate_us'), 3)}, ${fmt(f('set_us'), 3)} us`,
    raw: rawTx === undefined ? '' : `CPU ${fmt(rawTx, 3)}; ${fmt(rawRx, 3)} us`,
    zmq: '',
    vsRaw: l === undefined ? '' : `${fmt(l, 3)} us left at raw's rate`,
    vsZmq: '',
    goal: '',
    met: ''
  })
  json.S1_floor = { send_us: f('send_us'), payload_us: f('payload_us'), iterate_us: f('iterate_us'), set_us: f('set_us'), raw_net_cpu_us_per_msg_sender: rawTx, raw_net_cpu_us_per_msg_receiver: rawRx, us_per_msg_at_raw_rate_beyond_iterate_floor: l }
}
rateRow('S2', `S2 ${PARAMS.S2.count} x 1 MiB, MB/s`, 'mb_per_s', '', '>= 1.0x raw', (r) => atLeast(r, 1))
rateRow('S3a', `S3a ${fmt(PARAMS.S3a.calls)} sequential RPC calls, p50 us`, 'p50_us', ' us', '<= 1.5x raw', (r) => atMost(r, 1.5))
rateRow('S3b', `S3b ${fmt(PARAMS.S3b.calls)} RPC calls, 100 in flight, calls/s`, 'calls_per_s', '', '>= 1.0x raw', (r) => atLeast(r, 1))
if (scenarios.includes('S4')) {
  const sends = med('S4', 'snakemq', 'sends_per_s')
  const drain = med('S4', 'snakemq', 'drain_s')
  const fromStart = med('S4', 'snakemq', 'drain_from_process_start_s')
  const put = med('S4', 'level', 'put_us')
  const batch = med('S4', 'level', 'batch_us')
  const batch2 = med('S4', 'level', 'batch2_us')
  // The library's awaited send against one awaited 2-put LevelDB batch (what a send writes), run by run.
  const vsFloor: number[] = []
  for (let i = 0; i < runs; i++) {
    const s = perRun.S4?.snakemq?.[i]?.sends_per_s
    const b = perRun.S4?.level?.[i]?.batch2_us
    if (s !== undefined && b !== undefined) vsFloor.push(s / (1e6 / b))
  }
  const vf = median(vsFloor)
  if (sends !== undefined) {
    rows.push({ scenario: `S4 await send(.., { persistent: true }) x ${fmt(PARAMS.S4.count)}, sends/s`, lib: k(sends), raw: '', zmq: '', vsRaw: vf === undefined ? '' : `${vf.toFixed(2)}x the level floor`, vsZmq: '', goal: '>= 50,000', met: sends >= 50_000 ? 'yes' : 'no' })
  }
  if (drain !== undefined) {
    rows.push({ scenario: `S4 drain of those after SIGKILL and restart, s`, lib: `${fmt(drain, 3)} s`, raw: '', zmq: '', vsRaw: `${fmt(fromStart, 3)} s from process start`, vsZmq: '', goal: '<= 0.3 s (keep)', met: drain <= 0.3 ? 'yes' : 'no' })
  }
  if (put !== undefined) {
    rows.push({ scenario: 'S4 floor: level awaited put / batch(1) / batch(2 puts), per op', lib: `${fmt(put, 1)} / ${fmt(batch, 1)} / ${fmt(batch2, 1)} us`, raw: '', zmq: '', vsRaw: `${k(batch2 === undefined ? undefined : 1e6 / batch2)} ops/s (2 puts)`, vsZmq: '', goal: '', met: '' })
  }
  json.S4 = { sends_per_s: sends, drain_s: drain, drain_from_process_start_s: fromStart, open_to_ready_ms: med('S4', 'snakemq', 'open_to_ready_ms'), vs_level_batch2_floor: vf, level_put_us: put, level_batch_us: batch, level_batch2_us: batch2, goal: { sends_per_s: 50_000, drain_s: 0.3 } }
}

const head: Row = { scenario: 'scenario', lib: 'this library', raw: 'raw node:net', zmq: 'zeromq.js', vsRaw: 'ratio vs raw', vsZmq: 'ratio vs zmq', goal: 'goal', met: 'met' }
const cols = Object.keys(head) as Array<keyof Row>
const widths = cols.map((c) => Math.max(...[head, ...rows].map((r) => r[c].length)))
const line = (r: Row): string => cols.map((c, i) => (i === 0 || i >= 6 ? r[c].padEnd(widths[i]!) : r[c].padStart(widths[i]!))).join(' | ').trimEnd()
console.log('')
console.log(line(head))
console.log(widths.map((w) => '-'.repeat(w)).join('-|-'))
for (const r of rows) console.log(line(r))
if (opt.markdown) {
  console.log('')
  const cells = (r: Row): string[] => cols.slice(0, 7).map((c) => r[c])
  console.log(`| ${cells(head).join(' | ')} |`)
  console.log(`|${cols.slice(0, 7).map(() => '---').join('|')}|`)
  for (const r of rows) console.log(`| ${cells(r).join(' | ')} |`)
}
console.log('')
console.log(`medians of ${runs} run(s), all interleaved; a ratio is the library's figure over the reference's in the same run, median (min-max) over runs;`)
console.log('for p50 lower is better (the ratio is library / raw); rates from the sender\'s first send to the receiver\'s last message; MB = 1e6 bytes')
if (opt.batch) console.log('--batch: this library\'s S1 and S2 receiver reads messages({ batch: true }), not the README\'s per-message loop; not the issue\'s programs')
if (times !== 1) console.log(`--times ${times}: ${times} times the messages and calls of issue 19's sizes, so most of each run is past the JIT's warm-up; not the issue's scenarios`)
console.log(compiled ? 'every program and the library compiled by tsc and run by node (as deployed)' : 'every program and the library\'s TypeScript run under tsx (--tsx)')
console.log(`node ${machine.node}, ${machine.nproc} cpus (${machine.cpu}), ${machine.os}; ${((Date.now() - started) / 1000).toFixed(0)} s`)
for (const e of errors) console.log(`error: ${e}`)

if (jsonFile !== undefined) {
  const doc = {
    table: json,
    meta: { date: new Date().toISOString(), command: ['npm', 'run', 'bench', '--', ...process.argv.slice(2)].join(' ').trimEnd(), runs, quick, compiled, machine, params: PARAMS, errors },
    per_run: perRun
  }
  const tidy = (_k: string, v: unknown): unknown => typeof v === 'number' && !Number.isInteger(v) ? (Math.abs(v) >= 1000 ? Math.round(v) : Number(v.toPrecision(4))) : v
  await mkdir(dirname(jsonFile), { recursive: true })
  await writeFile(jsonFile, JSON.stringify(doc, tidy, 2) + '\n')
  log(`wrote ${jsonFile}`)
}
process.exitCode = errors.length > 0 ? 1 : 0
