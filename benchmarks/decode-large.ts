// What the packet decoder costs for a large packet arriving in socket-sized
// chunks: 1 MiB payloads in 64 KiB chunks, as S2's receiver gets them, and 3 MiB
// ones (assembled once half is in). To compare two commits, run it in a worktree
// of each, alternated: the figures move with the machine.
//
//   npx tsx benchmarks/decode-large.ts
import { PacketDecoder, encodePacketBatch } from '../src/transforms/framing.ts'

function perPacket (size: number, rounds: number): number[] {
  const wire = Buffer.concat(encodePacketBatch([Buffer.alloc(size, 7)]))
  const chunks: Buffer[] = []
  for (let at = 0; at < wire.length; at += 65_536) chunks.push(Buffer.from(wire.subarray(at, Math.min(wire.length, at + 65_536))))
  const d = new PacketDecoder()
  const run = (n: number): number => {
    const t0 = performance.now()
    let got = 0
    for (let i = 0; i < n; i++) for (const c of chunks) got += d.push(c).length
    if (got !== n) throw new Error(`decoded ${got} packets of ${n}`)
    return ((performance.now() - t0) * 1000) / n
  }
  run(50)
  return Array.from({ length: 3 }, () => run(rounds))
}

for (const [label, size, rounds] of [['1 MiB', 1024 * 1024, 500], ['3 MiB', 3 * 1024 * 1024, 150]] as const) {
  console.log(`${label} packets in 64 KiB chunks: ${perPacket(size, rounds).map((us) => us.toFixed(0)).join(', ')} us a packet`)
}
