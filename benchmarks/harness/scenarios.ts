// The scenarios: their sizes (full and --quick), what they report, and how one run of
// one implementation is carried out with child processes.
import { HOST, type Impl } from './types.ts'
import { RPC_RUNS, type RpcDriveResult } from './rpc-driver.ts'
import { failureOf, session, type SessionOptions } from './spawn.ts'

export type ScenarioId = 's1' | 's2' | 's3a' | 's3b' | 's4' | 'memory'
export const SCENARIO_IDS: readonly ScenarioId[] = ['s1', 's2', 's3a', 's3b', 's4', 'memory']

export interface MetricDef {
  key: string
  label: string
  higherIsBetter: boolean
  digits: number
}

export type Metrics = Record<string, number>

export interface RunContext {
  impl: Impl
  implFile: string
  quick: boolean
  timeoutMs: number
  profileDir?: string | undefined
  nodeArgs?: string[] | undefined
  /** e.g. s1-raw_net-run1, names CPU profiles */
  tag: string
}

const sessionOf = (ctx: RunContext): SessionOptions =>
  ({ implFile: ctx.implFile, quick: ctx.quick, timeoutMs: ctx.timeoutMs, profileDir: ctx.profileDir, tag: ctx.tag, nodeArgs: ctx.nodeArgs })

export interface ScenarioDef {
  id: ScenarioId
  title: string
  params(quick: boolean): Record<string, number>
  describe(p: Record<string, number>): string
  supports(impl: Impl): boolean
  metrics: readonly MetricDef[]
  run(ctx: RunContext, p: Record<string, number>): Promise<Metrics>
}

const n = (x: number): string => x.toLocaleString('en-US')

function need (p: Record<string, number>, key: string): number {
  const v = p[key]
  if (v === undefined) throw new Error(`missing parameter ${key}`)
  return v
}

/** Sender to receiver, `count` messages of `size` bytes. Rates use the receiver's first-to-last interval. */
async function runStream (ctx: RunContext, p: Record<string, number>): Promise<{ perS: number, bytesPerS: number, rssTx: number, rssRx: number }> {
  const count = need(p, 'count')
  const size = need(p, 'size')
  return await session(sessionOf(ctx), async (h) => {
    const rx = h.spawn('streamReceiver', { count, size })
    const { port } = await rx.ready
    if (typeof port !== 'number') throw new Error('streamReceiver did not report a port')
    const tx = h.spawn('streamSender', { host: HOST, port, count, size })
    const r = await Promise.race([rx.result, failureOf(tx.result)])
    tx.stop()
    const t = await tx.result
    const d = r.delivery
    if (d === undefined || d.count !== count) throw new Error(`receiver got ${d?.count ?? 0} of ${count} messages`)
    // Between the first and the last delivery, count - 1 messages arrived.
    const perS = (count - 1) / d.firstToLastS
    return { perS, bytesPerS: perS * size, rssTx: t.maxRssMb, rssRx: r.maxRssMb }
  })
}

async function runRpc (ctx: RunContext, p: Record<string, number>): Promise<RpcDriveResult> {
  const size = need(p, 'size')
  return await session(sessionOf(ctx), async (h) => {
    const srv = h.spawn('rpcServer', { size })
    const { port } = await srv.ready
    if (typeof port !== 'number') throw new Error('rpcServer did not report a port')
    const cli = h.spawn('rpcClient', {
      host: HOST, port, size, calls: need(p, 'calls'), inflight: need(p, 'inflight'), warmup: need(p, 'warmup')
    })
    const r = await Promise.race([cli.result, failureOf(srv.result)])
    return r.value as RpcDriveResult
  })
}

function numbers (o: object): Metrics {
  const out: Metrics = {}
  for (const [k, v] of Object.entries(o)) if (typeof v === 'number') out[k] = v
  return out
}

const MB = 1e6

export const SCENARIOS: readonly ScenarioDef[] = [
  {
    id: 's1',
    title: 'S1 small messages',
    params: (q) => ({ count: q ? 50_000 : 200_000, size: 16 }),
    describe: (p) => `${n(need(p, 'count'))} x ${need(p, 'size')} B, one way`,
    supports: (i) => i.streamReceiver !== undefined && i.streamSender !== undefined,
    metrics: [
      { key: 'msgs_per_s', label: 'msgs/s', higherIsBetter: true, digits: 0 },
      { key: 'rss_mb_sender', label: 'sender peak RSS MB', higherIsBetter: false, digits: 1 },
      { key: 'rss_mb_receiver', label: 'receiver peak RSS MB', higherIsBetter: false, digits: 1 }
    ],
    async run (ctx, p) {
      const r = await runStream(ctx, p)
      return { msgs_per_s: r.perS, rss_mb_sender: r.rssTx, rss_mb_receiver: r.rssRx }
    }
  },
  {
    id: 's2',
    title: 'S2 large messages',
    params: (q) => ({ count: q ? 64 : 256, size: 1024 * 1024 }),
    describe: (p) => `${n(need(p, 'count'))} x 1 MiB, one way`,
    supports: (i) => i.streamReceiver !== undefined && i.streamSender !== undefined,
    metrics: [
      { key: 'mb_per_s', label: 'MB/s', higherIsBetter: true, digits: 0 },
      { key: 'rss_mb_sender', label: 'sender peak RSS MB', higherIsBetter: false, digits: 1 },
      { key: 'rss_mb_receiver', label: 'receiver peak RSS MB', higherIsBetter: false, digits: 1 }
    ],
    async run (ctx, p) {
      const r = await runStream(ctx, p)
      return { mb_per_s: r.bytesPerS / MB, rss_mb_sender: r.rssTx, rss_mb_receiver: r.rssRx }
    }
  },
  {
    id: 's3a',
    title: 'S3a sequential RPC',
    params: (q) => ({ ...(q ? RPC_RUNS.quick.sequential : RPC_RUNS.sequential), size: 16 }),
    describe: (p) => `${n(need(p, 'calls'))} calls, 1 in flight`,
    supports: (i) => i.rpcServer !== undefined && i.rpcConnect !== undefined,
    metrics: [
      { key: 'calls_per_s', label: 'calls/s', higherIsBetter: true, digits: 0 },
      { key: 'p50_us', label: 'p50 us', higherIsBetter: false, digits: 0 },
      { key: 'p99_us', label: 'p99 us', higherIsBetter: false, digits: 0 }
    ],
    async run (ctx, p) { return numbers(await runRpc(ctx, p)) }
  },
  {
    id: 's3b',
    title: 'S3b pipelined RPC',
    params: (q) => ({ ...(q ? RPC_RUNS.quick.inflight : RPC_RUNS.inflight), size: 16 }),
    describe: (p) => `${n(need(p, 'calls'))} calls, ${need(p, 'inflight')} in flight`,
    supports: (i) => i.rpcServer !== undefined && i.rpcConnect !== undefined,
    metrics: [
      { key: 'calls_per_s', label: 'calls/s', higherIsBetter: true, digits: 0 }
    ],
    async run (ctx, p) { return numbers(await runRpc(ctx, p)) }
  },
  {
    id: 's4',
    title: 'S4 persistent queue',
    params: (q) => ({ count: q ? 5_000 : 20_000, size: 16 }),
    describe: (p) => `${n(need(p, 'count'))} x ${need(p, 'size')} B persisted, receiver absent`,
    supports: (i) => i.s4 !== undefined,
    metrics: [
      { key: 'enqueue_per_s', label: 'enqueues/s', higherIsBetter: true, digits: 0 },
      { key: 'drain_s', label: 'drain s', higherIsBetter: false, digits: 3 }
    ],
    async run (ctx, p) {
      const impl = ctx.impl
      if (impl.s4 === undefined) throw new Error('no s4')
      return numbers(await session(sessionOf(ctx),
        (h) => impl.s4!(h, { count: need(p, 'count'), size: need(p, 'size') })))
    }
  },
  {
    id: 'memory',
    title: 'Memory per queued message',
    params: (q) => ({ queued: q ? 200_000 : 1_000_000, size: 16 }),
    describe: (p) => `${n(need(p, 'queued'))} x ${need(p, 'size')} B queued in memory`,
    supports: (i) => i.memory !== undefined,
    metrics: [
      { key: 'bytes_per_queued_msg', label: 'RSS bytes/msg', higherIsBetter: false, digits: 0 },
      { key: 'heap_bytes_per_queued_msg', label: 'of which JS heap', higherIsBetter: false, digits: 0 },
      { key: 'bytes_per_queued_msg_shared_payload', label: 'RSS bytes/msg, one payload', higherIsBetter: false, digits: 0 }
    ],
    async run (ctx, p) {
      const impl = ctx.impl
      if (impl.memory === undefined) throw new Error('no memory')
      return numbers(await session(sessionOf(ctx),
        (h) => impl.memory!(h, { queued: need(p, 'queued'), size: need(p, 'size') })))
    }
  }
]
