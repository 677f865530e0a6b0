// npm run bench -- --mode tuned [--quick] [--json FILE] [--only s1,s3a] [--impl raw_net,zeromq] [--runs N] [--timeout SEC]
//
// Runs each scenario `runs` times per implementation (implementations interleaved
// within a run, so drift in a noisy machine hits all of them alike), prints a table
// of medians with ratios against raw_net, and optionally writes them as JSON.
// Progress goes to stderr, the table to stdout. Everything stays on 127.0.0.1.
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, totalmem, platform, release } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { BASELINE, IMPLEMENTATIONS } from './impl/index.ts'
import { SCENARIOS, SCENARIO_IDS, type Metrics, type MetricDef, type ScenarioId } from './harness/scenarios.ts'
import { BENCH_DIR, session } from './harness/spawn.ts'
import type { Impl } from './harness/types.ts'

const USAGE = `usage: npm run bench -- --mode tuned [options]
  --quick            fewer messages and one run per scenario (under a minute)
  --json FILE        also write the medians as JSON
  --only LIST        scenarios, comma-separated: ${SCENARIO_IDS.join(',')}
  --impl LIST        implementations, comma-separated: ${IMPLEMENTATIONS.map((i) => i.name).join(',')}
  --runs N           runs per scenario and implementation (default 3, --quick 1)
  --timeout SEC      kill a run's children after SEC seconds (default 120, --quick 30)
  --profile DIR      write a CPU profile of every child to DIR (node --cpu-prof; open in Chrome DevTools)
  --node-args ARGS   extra node flags for every child, space-separated: --node-args=--trace-gc`

function fail (msg: string): never {
  console.error(`${msg}\n${USAGE}`)
  process.exit(2)
}

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    only: { type: 'string' },
    impl: { type: 'string' },
    runs: { type: 'string' },
    timeout: { type: 'string' },
    profile: { type: 'string' },
    'node-args': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false }
  },
  strict: true
})
if (opt.help) { console.log(USAGE); process.exit(0) }

function list<T extends string> (arg: string | undefined, known: readonly T[], what: string): T[] {
  if (arg === undefined) return [...known]
  const picked = arg.split(',').map((s) => s.trim()).filter((s) => s !== '')
  for (const p of picked) if (!(known as readonly string[]).includes(p)) fail(`unknown ${what}: ${p}`)
  return known.filter((k) => picked.includes(k))
}

const quick = opt.quick
const runs = opt.runs === undefined ? (quick ? 1 : 3) : Number(opt.runs)
if (!Number.isInteger(runs) || runs < 1) fail('--runs must be a positive integer')
const timeoutS = opt.timeout === undefined ? (quick ? 30 : 120) : Number(opt.timeout)
if (!(timeoutS > 0)) fail('--timeout must be a positive number of seconds')
const profileDir = opt.profile === undefined ? undefined : resolve(process.env.INIT_CWD ?? process.cwd(), opt.profile)
if (profileDir !== undefined) await mkdir(profileDir, { recursive: true })
const nodeArgs = (opt['node-args'] ?? '').split(' ').filter((a) => a !== '')
const scenarioIds = list(opt.only, SCENARIO_IDS, 'scenario')
const implNames = list(opt.impl, IMPLEMENTATIONS.map((i) => i.name), 'implementation')

const log = (s: string): void => { process.stderr.write(`${s}\n`) }

interface Loaded { name: string, file: string, impl: Impl }
const loaded: Loaded[] = []
const skipped: Record<string, string> = {}
for (const entry of IMPLEMENTATIONS.filter((e) => implNames.includes(e.name))) {
  const file = join(BENCH_DIR, 'impl', entry.file)
  if (!existsSync(file)) { skipped[entry.name] = `benchmarks/impl/${entry.file} does not exist yet`; continue }
  try {
    const mod = await import(pathToFileURL(file).href) as { default?: Impl }
    if (mod.default === undefined) { skipped[entry.name] = `benchmarks/impl/${entry.file} has no default export`; continue }
    const why = await mod.default.unavailable?.()
    if (why !== undefined) { skipped[entry.name] = why; continue }
    loaded.push({ name: entry.name, file, impl: mod.default })
  } catch (err) {
    skipped[entry.name] = `benchmarks/impl/${entry.file} failed to load: ${err instanceof Error ? err.message : String(err)}`
  }
}
for (const [name, why] of Object.entries(skipped)) log(`skipping ${name}: ${why}`)
if (loaded.length === 0) fail('no implementation to run')

const machine = {
  nproc: availableParallelism(),
  cpu: cpus()[0]?.model ?? 'unknown',
  mem_gb: Math.round(totalmem() / 1e9),
  os: `${platform()} ${release()}`,
  node: process.version
}
log(`node ${machine.node}, ${machine.nproc} cpus (${machine.cpu}), ${machine.os}; ${quick ? 'quick, ' : ''}${runs} run(s)`)

// A child that loads tsx and an implementation module and does nothing: the floor under every RSS figure.
let idleRss: number | undefined
try {
  idleRss = await session({ implFile: loaded[0]!.file, quick, timeoutMs: 30_000 }, async (h) => (await h.spawn('idle', {}).result).maxRssMb)
} catch (err) {
  log(`idle child failed: ${err instanceof Error ? err.message : String(err)}`)
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

type Table = Partial<Record<ScenarioId, Record<string, Metrics>>>
const medians: Table = {}
const perRun: Partial<Record<ScenarioId, Record<string, Metrics[]>>> = {}
const errors: string[] = []
const params: Partial<Record<ScenarioId, Record<string, number>>> = {}

function fmt (v: number | undefined, digits: number): string {
  if (v === undefined || !Number.isFinite(v)) return '-'
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

const started = Date.now()
for (const sc of SCENARIOS.filter((s) => scenarioIds.includes(s.id))) {
  const impls = loaded.filter((l) => sc.supports(l.impl))
  if (impls.length === 0) { log(`${sc.id}: no selected implementation provides it`); continue }
  const p = sc.params(quick)
  params[sc.id] = p
  const runsOf: Record<string, Metrics[]> = {}
  for (let run = 1; run <= runs; run++) {
    for (const l of impls) {
      const tag = `${sc.id} ${l.name} run ${run}/${runs}`
      try {
        const m = await sc.run({ impl: l.impl, implFile: l.file, quick, timeoutMs: timeoutS * 1000, profileDir, nodeArgs, tag: `${sc.id}-${l.name}-run${run}` }, p)
        ;(runsOf[l.name] ??= []).push(m)
        log(`${tag}: ${sc.metrics.map((d) => `${fmt(m[d.key], d.digits)} ${d.label}`).join(', ')}`)
      } catch (err) {
        const msg = `${tag}: ${err instanceof Error ? err.message : String(err)}`
        errors.push(msg)
        log(msg)
      }
    }
  }
  perRun[sc.id] = runsOf
  const out: Record<string, Metrics> = {}
  for (const [name, ms] of Object.entries(runsOf)) {
    const agg: Metrics = {}
    for (const key of new Set(ms.flatMap((m) => Object.keys(m)))) {
      const xs = ms.map((m) => m[key]).filter((x): x is number => x !== undefined && Number.isFinite(x))
      if (xs.length > 0) agg[key] = median(xs)
    }
    out[name] = agg
  }
  medians[sc.id] = out
}

// The table: one row per scenario and metric, one column per implementation, with the ratio to raw_net.
const names = loaded.map((l) => l.name)
const header = ['scenario', 'metric', ...names]
const rows: string[][] = []
for (const sc of SCENARIOS) {
  const res = medians[sc.id]
  if (res === undefined) continue
  const p = params[sc.id] ?? {}
  sc.metrics.forEach((d: MetricDef, i) => {
    const base = res[BASELINE]?.[d.key]
    const cells = names.map((name) => {
      const v = res[name]?.[d.key]
      if (v === undefined) return name in res ? '-' : ''
      const ratio = name !== BASELINE && base !== undefined && base > 0 ? ` (${(v / base).toFixed(2)}x)` : ''
      return fmt(v, d.digits) + ratio
    })
    rows.push([i === 0 ? `${sc.title}` : i === 1 ? `  ${sc.describe(p)}` : '', d.label + (d.higherIsBetter ? '' : ' (lower better)'), ...cells])
  })
}
const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)))
const line = (r: string[]): string => r.map((s, c) => (c < 2 ? s.padEnd(widths[c]!) : s.padStart(widths[c]!))).join('  ').trimEnd()
console.log('')
console.log(line(header))
console.log(widths.map((w) => '-'.repeat(w)).join('  '))
for (const r of rows) console.log(line(r))
console.log('')
console.log(`medians of ${runs} run(s); ratios are against ${BASELINE}; rates over the receiver's first-to-last message; MB = 1e6 bytes`)

// snakemq against every reference, next to issue 6's goals.
const goalRows = goalTable(medians)
if (goalRows.length > 0) {
  console.log('')
  const gh = ['snakemq', 'vs raw_net', 'vs raw_net_simple', 'vs zeromq', 'goal (issue 6)', 'met']
  const gw = gh.map((h, c) => Math.max(h.length, ...goalRows.map((r) => (r[c] ?? '').length)))
  const gl = (r: string[]): string => r.map((x, c) => (c === 0 || c >= 4 ? x.padEnd(gw[c]!) : x.padStart(gw[c]!))).join('  ').trimEnd()
  console.log(gl(gh))
  console.log(gw.map((w) => '-'.repeat(w)).join('  '))
  for (const r of goalRows) console.log(gl(r))
}
if (idleRss !== undefined) console.log(`an idle child (node + tsx + the implementation module) peaks at ${fmt(idleRss, 1)} MB RSS`)
console.log(`node ${machine.node}, ${machine.nproc} cpus (${machine.cpu}), ${machine.os}; ${((Date.now() - started) / 1000).toFixed(1)} s`)
for (const [name, why] of Object.entries(skipped)) console.log(`skipped ${name}: ${why}`)
for (const e of errors) console.log(`error: ${e}`)

if (opt.json !== undefined) {
  const file = resolve(process.env.INIT_CWD ?? process.cwd(), opt.json)
  const doc = {
    ...medians,
    meta: {
      date: new Date().toISOString(),
      command: ['npm', 'run', 'bench', '--', '--mode', 'tuned', ...process.argv.slice(2)].join(' '),
      quick,
      runs,
      machine,
      params,
      rss_mb_idle_child: idleRss ?? null,
      skipped,
      errors,
      goals: goalRows.map(([what, vsRaw, vsSimple, vsZmq, goal, met]) => ({ what, vs_raw_net: vsRaw, vs_raw_net_simple: vsSimple, vs_zeromq: vsZmq, goal, met })),
      per_run: perRun
    }
  }
  await mkdir(dirname(file), { recursive: true })
  const tidy = (_k: string, v: unknown): unknown => typeof v === 'number' && !Number.isInteger(v) ? (Math.abs(v) >= 1000 ? Math.round(v) : Number(v.toPrecision(4))) : v
  await writeFile(file, JSON.stringify(doc, tidy, 2) + '\n')
  log(`wrote ${file}`)
}
process.exitCode = errors.length > 0 ? 1 : 0

/**
 * Rows of the goals table: snakemq's ratio to each reference (for latencies,
 * snakemq / reference, so lower is better there) and whether issue 6's goal is met.
 * The raw goals are checked against both raw references: issue 6 calibrated them
 * with a writer like raw_net_simple; raw_net is the batched ceiling.
 */
function goalTable (res: Table): string[][] {
  const rows: string[][] = []
  const get = (sc: ScenarioId, impl: string, key: string): number | undefined => res[sc]?.[impl]?.[key]
  const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || !(b > 0) ? undefined : a / b
  const x = (r: number | undefined): string => r === undefined ? '' : `${r.toFixed(2)}x`
  const yes = (ok: boolean | undefined): string => ok === undefined ? '' : ok ? 'yes' : 'no'
  const names = ['vs raw_net', 'vs raw_net_simple', 'vs zeromq']
  const verdict = (oks: Array<boolean | undefined>): string =>
    oks.map((o, i) => o === undefined ? '' : `${names[i]}: ${yes(o)}`).filter((t) => t !== '').join(', ')
  const rel = (sc: ScenarioId, key: string, label: string, goal: string, check: (vsRaw: number | undefined, vsSimple: number | undefined, vsZmq: number | undefined) => Array<boolean | undefined>): void => {
    const s = get(sc, 'snakemq', key)
    if (s === undefined) return
    const r = [ratio(s, get(sc, 'raw_net', key)), ratio(s, get(sc, 'raw_net_simple', key)), ratio(s, get(sc, 'zeromq', key))] as const
    rows.push([label, x(r[0]), x(r[1]), x(r[2]), goal, verdict(check(...r))])
  }
  const atLeast = (r: number | undefined, v: number): boolean | undefined => r === undefined ? undefined : r >= v
  const atMost = (r: number | undefined, v: number): boolean | undefined => r === undefined ? undefined : r <= v
  rel('s1', 'msgs_per_s', 'S1 msgs/s', '>= 0.6x raw, >= 2x zeromq', (a, b, z) => [atLeast(a, 0.6), atLeast(b, 0.6), atLeast(z, 2)])
  rel('s2', 'mb_per_s', 'S2 MB/s', '>= 0.9x raw', (a, b) => [atLeast(a, 0.9), atLeast(b, 0.9)])
  rel('s3a', 'p50_us', 'S3a p50 (snakemq / ref)', '<= 1.5x raw', (a, b) => [atMost(a, 1.5), atMost(b, 1.5)])
  rel('s3b', 'calls_per_s', 'S3b calls/s', '>= 0.6x raw', (a, b) => [atLeast(a, 0.6), atLeast(b, 0.6)])
  const enq = get('s4', 'snakemq', 'enqueue_per_s')
  if (enq !== undefined) rows.push(['S4 enqueues/s', '', '', '', `>= 100,000 (${fmt(enq, 0)})`, yes(enq >= 100_000)])
  const drain = get('s4', 'snakemq', 'drain_s')
  if (drain !== undefined) rows.push(['S4 drain s', '', '', '', `<= 0.5 (${fmt(drain, 3)})`, yes(drain <= 0.5)])
  const mem = get('memory', 'snakemq', 'bytes_per_queued_msg')
  if (mem !== undefined) rows.push(['Memory B/msg', '', '', '', `<= 200 (${fmt(mem, 0)})`, yes(mem <= 200)])
  return rows
}
