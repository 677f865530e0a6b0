// Drives an RpcConnection the same way for every implementation, inside the client
// child: warm-up calls first (not counted), then either one call at a time with each
// round trip timed, or a fixed number of calls kept in flight.
import { hrtime } from 'node:process'
import type { RpcConnection } from './types.ts'

/**
 * The calls S3 makes (`npm run bench` and benchmarks/rpc.ts alike). The warm-ups
 * are long enough for V8 to have compiled the hot paths of every implementation:
 * the goals are about a steady state. With 2,000 warm-up calls (10 to 20 ms) the
 * in-flight figure of a JIT-compiled library mostly measured V8's compiler
 * competing for the machine's two cores, and with 2,000 sequential ones the
 * measured calls still met compilations and collections of the warm-up: calls
 * of 0.5 to 12 ms among the first 3,000 measured, with both processes on one CPU
 * (see benchmarks/PERFORMANCE.md). After 20,000 sequential ones RPC was still
 * getting faster: 14 interleaved pinned pairs gave a median p50 of 17.5 µs after
 * 20,000 and 15.5 after 100,000 (raw's p50 does not move).
 */
export const RPC_RUNS = {
  sequential: { calls: 5_000, warmup: 100_000, inflight: 1 },
  inflight: { calls: 50_000, warmup: 20_000, inflight: 100 },
  quick: {
    sequential: { calls: 1_000, warmup: 200, inflight: 1 },
    inflight: { calls: 5_000, warmup: 500, inflight: 100 }
  }
} as const

export interface RpcDriveArgs {
  calls: number
  inflight: number
  warmup: number
  size: number
}

export interface RpcDriveResult {
  calls_per_s: number
  p50_us?: number
  p99_us?: number
}

/** Nearest-rank percentile of an ascending array. */
export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] ?? Number.NaN
}

/** A fresh request whose first 4 bytes carry `seq`, so a misrouted reply is caught. */
function request (seq: number, size: number, fill: Buffer): Buffer {
  const b = Buffer.allocUnsafe(size)
  fill.copy(b, 0, 0, size)
  b.writeUInt32BE(seq >>> 0, 0)
  return b
}

function check (seq: number, size: number, res: Uint8Array): void {
  if (res.length !== size) throw new Error(`reply ${seq}: ${res.length} bytes, expected ${size}`)
  const got = ((res[0] ?? 0) * 0x1000000) + (((res[1] ?? 0) << 16) | ((res[2] ?? 0) << 8) | (res[3] ?? 0))
  if (got !== seq >>> 0) throw new Error(`reply to call ${seq} carries ${got}`)
}

async function windowed (conn: RpcConnection, from: number, to: number, inflight: number, size: number, fill: Buffer): Promise<void> {
  let next = from
  const worker = async (): Promise<void> => {
    while (next < to) {
      const seq = next++
      check(seq, size, await conn.call(request(seq, size, fill)))
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, inflight) }, worker))
}

export async function driveRpc (conn: RpcConnection, args: RpcDriveArgs): Promise<RpcDriveResult> {
  const size = Math.max(4, args.size)
  const fill = Buffer.alloc(size, 0x61)
  let seq = 0
  if (args.inflight <= 1) {
    for (let i = 0; i < args.warmup; i++, seq++) check(seq, size, await conn.call(request(seq, size, fill)))
    const lat = new Float64Array(args.calls)
    const t0 = hrtime.bigint()
    for (let i = 0; i < args.calls; i++, seq++) {
      const req = request(seq, size, fill)
      const t = hrtime.bigint()
      const res = await conn.call(req)
      lat[i] = Number(hrtime.bigint() - t) / 1e3
      check(seq, size, res)
    }
    const seconds = Number(hrtime.bigint() - t0) / 1e9
    lat.sort()
    return { calls_per_s: args.calls / seconds, p50_us: percentile(lat, 50), p99_us: percentile(lat, 99) }
  }
  await windowed(conn, 0, args.warmup, args.inflight, size, fill)
  const t0 = hrtime.bigint()
  await windowed(conn, args.warmup, args.warmup + args.calls, args.inflight, size, fill)
  const seconds = Number(hrtime.bigint() - t0) / 1e9
  return { calls_per_s: args.calls / seconds }
}
