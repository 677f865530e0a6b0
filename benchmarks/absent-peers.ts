// What peers that were only addressed, never connected, leave behind: `calls`
// RPC calls (format native, 5 ms timeout), each to a peer of its own name that
// never comes, in batches of 1,000; then, after a GC, the heap plus array
// buffers against the same before the first batch, per call, and how many peers
// stats() still lists. With `ttl`, sends with a 10 ms TTL instead of calls.
//
//   node --expose-gc --import tsx benchmarks/absent-peers.ts [calls=50000] [rpc|ttl]
import { Link, Messaging, RpcClient } from '../src/index.ts'
import { held } from './harness/held.ts'

const calls = Number(process.argv[2] ?? 50_000)
const mode = process.argv[3] ?? 'rpc'

const mq = new Messaging(new Link(), { identity: 'caller' })
const client = new RpcClient(mq, { format: 'native' })
let expired = 0
let allExpired: () => void = () => {}
mq.on('drop', () => { if (++expired === calls) allExpired() })

async function batch (from: number, n: number): Promise<void> {
  const body = new Uint8Array(200)
  if (mode === 'ttl') {
    await Promise.all(Array.from({ length: n }, (_, i) => mq.send(`absent-${from + i}`, body, { ttl: 0.01 })))
  } else {
    await Promise.all(Array.from({ length: n }, async (_, i) => client.call(`absent-${from + i}`, 'svc', 'm', [body], { timeout: 5 }).catch(() => {})))
  }
}

const before = held()
const done = new Promise<void>((resolve) => { allExpired = resolve })
for (let i = 0; i < calls; i += 1000) await batch(i, Math.min(1000, calls - i))
if (mode === 'ttl') await done
const after = held()
console.log(JSON.stringify({
  mode,
  calls,
  bytesPerCall: Math.round((after - before) / calls),
  peersListed: Object.keys(mq.stats().peers).length,
  queued: mq.queued()
}))
await client.close()
await mq.close()
