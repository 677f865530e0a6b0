// The duplicate filter's cost: admit() of new UUIDs into windows that start empty
// and grow (a peer that sends a burst), admit() of UUIDs already seen (a
// redelivery), and what a window holds after its first UUID (an idle peer that
// sent one message). Medians of `rounds` runs; single process, so run it alone.
//
//   npx tsx benchmarks/dedup.ts [uuids=1000000] [rounds=7]
import { DedupWindow } from '../src/messaging/dedup.ts'

const uuids = Number(process.argv[2] ?? 1_000_000)
const rounds = Number(process.argv[3] ?? 7)
const WINDOW = 65_536

// UUIDs where they lie in packets: 16 bytes at offset 4 of a 20-byte record.
const packets = new Uint8Array(uuids * 20)
globalThis.crypto.getRandomValues(packets.subarray(0, Math.min(packets.length, 65_536)))
for (let i = 65_536; i < packets.length; i += 65_536) globalThis.crypto.getRandomValues(packets.subarray(i, Math.min(packets.length, i + 65_536)))

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]!
}

const fresh: number[] = []
const seen: number[] = []
for (let r = 0; r < rounds; r++) {
  const w = new DedupWindow(WINDOW)
  let t = process.hrtime.bigint()
  for (let i = 0; i < uuids; i++) w.admit(packets, i * 20 + 4)
  fresh.push(Number(process.hrtime.bigint() - t) / uuids)
  // The last WINDOW are remembered: admit them again.
  t = process.hrtime.bigint()
  let dups = 0
  for (let i = uuids - WINDOW; i < uuids; i++) if (w.admit(packets, i * 20 + 4) < 0) dups++
  seen.push(Number(process.hrtime.bigint() - t) / WINDOW)
  if (dups !== WINDOW) throw new Error(`only ${dups} of ${WINDOW} duplicates recognised`)
}
const one = new DedupWindow(WINDOW)
const before = (one as unknown as { bytes?: number }).bytes
one.admit(packets, 4)
const after = (one as unknown as { bytes?: number }).bytes
console.log(JSON.stringify({
  uuids, window: WINDOW, rounds,
  nsPerNewAdmit: Number(median(fresh).toFixed(1)),
  nsPerDuplicateAdmit: Number(median(seen).toFixed(1)),
  bytesEmpty: before ?? null,
  bytesAfterOne: after ?? null
}))
