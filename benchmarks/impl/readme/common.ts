// What every program of the default mode shares, so that only the transport
// differs between them: the payload (a fresh buffer per message with an 8-byte
// counter in front), the receiver's bookkeeping (each counter into a Set), and
// the RPC call loops and their percentiles.
import { readFileSync } from 'node:fs'

/** Wall-clock ms, shared by every process on the host. */
export const wallNow = (): number => performance.timeOrigin + performance.now()

/**
 * With BENCH_CPU=system in the environment, the CPU figures count kernel time
 * only; with BENCH_CPU=main, only the main thread's (the one that runs
 * JavaScript), leaving out the compiler's and the collector's helper threads.
 */
const cpuKind = process.env.BENCH_CPU
if (cpuKind === 'main' && process.platform !== 'linux') throw new Error('BENCH_CPU=main reads /proc: Linux only')
const mainStat = `/proc/self/task/${process.pid}/stat`
/** The clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux). */
const TICKS_PER_S = 100

/** The main thread's user and system time so far, ms, in /proc's ticks (10 ms): Linux only. */
function mainThreadMs (): number {
  const st = readFileSync(mainStat, 'utf8')
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ')
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS_PER_S
}

/** Under V8's tracing flags (--trace-opt, --trace-deopt), the stream they print to gets markers (see stretchOver). */
const tracing = process.execArgv.some((a) => a.startsWith('--trace-opt') || a.startsWith('--trace-deopt'))

/**
 * Marks the end of the measured stretch (the last message received, the last
 * call answered) in the output V8's tracing writes to, so that
 * benchmarks/jit-summary.ts can tell what the JIT did while measuring from the
 * teardown after it. Nothing without those flags.
 */
export function stretchOver (): void {
  if (tracing) process.stdout.write('[bench] measured stretch over\n')
}

/** CPU time this process has used so far (user and system, all threads; see cpuKind for the others), ms. */
export function cpuMs (): number {
  if (cpuKind === 'main') return mainThreadMs()
  const u = process.cpuUsage()
  return (cpuKind === 'system' ? u.system : u.user + u.system) / 1000
}

/** A fresh `size`-byte buffer with `i` as an 8-byte big-endian counter in front. */
export function payload (i: number, size: number): Buffer {
  const b = Buffer.alloc(size)
  b.writeUInt32BE(Math.floor(i / 0x1_0000_0000), 0)
  b.writeUInt32BE(i >>> 0, 4)
  return b
}

/** The counter `payload()` put in front of `data`. */
export function counterOf (data: Uint8Array): number {
  const hi = ((data[0]! << 24) | (data[1]! << 16) | (data[2]! << 8) | data[3]!) >>> 0
  const lo = ((data[4]! << 24) | (data[5]! << 16) | (data[6]! << 8) | data[7]!) >>> 0
  return hi * 0x1_0000_0000 + lo
}

/** A receiver's record: every counter once, the times of the first and the last message. */
export class Received {
  readonly seen = new Set<number>()
  firstAt = 0
  lastAt = 0
  /** CPU time at the first and the last message (see cpuMs). */
  firstCpu = 0
  lastCpu = 0
  duplicates = 0
  bytes = 0
  constructor (readonly count: number) {}

  /** Records one message; true once `count` distinct counters have arrived. */
  add (data: Uint8Array): boolean {
    if (this.seen.size === 0 && this.duplicates === 0) { this.firstAt = wallNow(); this.firstCpu = cpuMs() }
    const c = counterOf(data)
    if (this.seen.has(c)) this.duplicates++
    else this.seen.add(c)
    this.bytes += data.length
    if (this.seen.size === this.count) { this.lastAt = wallNow(); this.lastCpu = cpuMs(); stretchOver(); return true }
    return false
  }

  /** The figures, after checking every counter in 0..count-1 arrived exactly once. */
  report (): Record<string, unknown> {
    let missing = 0
    for (let i = 0; i < this.count; i++) if (!this.seen.has(i)) missing++
    if (missing > 0 || this.duplicates > 0) throw new Error(`received ${this.seen.size} of ${this.count}: ${missing} missing, ${this.duplicates} duplicates`)
    return { firstAt: this.firstAt, lastAt: this.lastAt, received: this.seen.size, bytes: this.bytes, cpuMs: this.lastCpu - this.firstCpu }
  }
}

/** One tenth of a run, as Tenths reports it. */
export interface Tenth {
  /** CPU per step over that tenth, us. */
  cpu_us: number
  /** Steps per second over it. */
  per_s: number
}

/**
 * CPU and wall time at each tenth of `count` steps (calls completed, messages
 * sent), from its construction: how the cost of a step changes as the JIT warms up.
 */
export class Tenths {
  private readonly every: number
  private readonly marks: Array<[number, number]>
  private done = 0
  constructor (count: number) {
    this.every = Math.max(1, Math.floor(count / 10))
    this.marks = [[cpuMs(), performance.now()]]
  }

  step (): void {
    if (++this.done % this.every === 0) this.marks.push([cpuMs(), performance.now()])
  }

  report (): Tenth[] {
    const out: Tenth[] = []
    for (let i = 1; i < this.marks.length; i++) {
      const [cpu, at] = this.marks[i]!
      const [cpu0, at0] = this.marks[i - 1]!
      out.push({ cpu_us: ((cpu - cpu0) * 1000) / this.every, per_s: this.every / ((at - at0) / 1000) })
    }
    return out
  }
}

export interface CallArgs {
  /** 'seq': one call at a time, each timed; 'inflight': `inFlight` calls outstanding at all times. */
  mode: 'seq' | 'inflight'
  calls: number
  inFlight: number
  size: number
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!

/**
 * One warm-up call, then `calls` calls through `call`, which must resolve with
 * the server's echo of its argument (checked by the counter).
 */
export async function driveCalls (call: (body: Buffer) => Promise<Uint8Array>, a: CallArgs): Promise<Record<string, unknown>> {
  const check = async (i: number): Promise<void> => {
    const reply = await call(payload(i, a.size))
    if (reply.length !== a.size || counterOf(reply) !== i) throw new Error(`call ${i}: the reply is not its echo`)
  }
  await check(0)
  if (a.mode === 'seq') {
    const us: number[] = []
    const t0 = performance.now()
    const cpu0 = cpuMs()
    for (let i = 1; i <= a.calls; i++) {
      const s = performance.now()
      await check(i)
      us.push((performance.now() - s) * 1000)
    }
    const ms = performance.now() - t0
    stretchOver()
    us.sort((x, y) => x - y)
    const cpu = cpuMs() - cpu0
    return { p50_us: percentile(us, 0.5), p99_us: percentile(us, 0.99), calls_per_s: a.calls / (ms / 1000), cpu_us_per_call_client: (cpu * 1000) / a.calls }
  }
  let next = 1
  const t0 = performance.now()
  const cpu0 = cpuMs()
  const tenths = new Tenths(a.calls)
  const worker = async (): Promise<void> => {
    while (next <= a.calls) {
      await check(next++)
      tenths.step()
    }
  }
  await Promise.all(Array.from({ length: a.inFlight }, worker))
  const ms = performance.now() - t0
  stretchOver()
  return { calls_per_s: a.calls / (ms / 1000), cpu_us_per_call_client: ((cpuMs() - cpu0) * 1000) / a.calls, tenths: tenths.report() }
}

export function num (args: Record<string, unknown>, key: string): number {
  const v = args[key]
  if (typeof v !== 'number') throw new Error(`missing numeric argument ${key}`)
  return v
}

export function str (args: Record<string, unknown>, key: string): string {
  const v = args[key]
  if (typeof v !== 'string') throw new Error(`missing string argument ${key}`)
  return v
}

/** Resolves when `signal` aborts. */
export function aborted (signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => { signal.addEventListener('abort', () => { resolve() }, { once: true }) })
}
