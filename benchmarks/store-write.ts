// Queue-store speed: persistent enqueues of 16-byte messages with many write()
// calls in flight (the shape of a burst of `send(..., { persistent: true })`),
// and load() of what was written, for LevelStore against MemoryStore in one run.
// "burst": every write() issued in one loop, then awaited. "trickle": 100 write()
// calls per event-loop turn, the way sends arriving from sockets would come, so
// writes keep joining the batch after the one in flight.
//
//   npx tsx benchmarks/store-write.ts [messages=20000] [rounds=5]
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelStore } from '../src/store/level-node.ts'
import { MemoryStore } from '../src/store/memory.ts'
import type { QueueStore, StoredMessage } from '../src/store/types.ts'

const count = Number(process.argv[2] ?? 20_000)
const rounds = Number(process.argv[3] ?? 5)
const PEERS = 4

function messages (n: number): StoredMessage[] {
  const data = new Uint8Array(16).fill(0x61)
  const out: StoredMessage[] = []
  for (let i = 0; i < n; i++) {
    const uuid = new Uint8Array(16)
    new DataView(uuid.buffer).setUint32(12, i)
    out.push({ peer: `peer-${i % PEERS}`, seq: Math.floor(i / PEERS), uuid, expiry: Infinity, flags: 1, data })
  }
  return out
}

interface Figures { putsPerSecond: number, loadMs: number, batches: number }
type Mode = 'burst' | 'trickle'
const TRICKLE_PER_TURN = 100

/** One write() per message, issued as `mode` says, then awaited; then load() in a freshly opened store. */
async function round (name: string, mode: Mode, open: () => Promise<QueueStore>, reopen: (s: QueueStore) => Promise<QueueStore>): Promise<Figures> {
  const msgs = messages(count)
  const store = await open()
  const batchesBefore = store instanceof LevelStore ? store.batchesWritten : 0
  const t0 = performance.now()
  const pending: Array<Promise<void>> = []
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i]
    if (m === undefined) break
    if (mode === 'trickle' && i > 0 && i % TRICKLE_PER_TURN === 0) await new Promise((resolve) => setImmediate(resolve))
    pending.push(store.write({ put: [m] }))
  }
  await Promise.all(pending)
  const writeMs = performance.now() - t0
  const batches = store instanceof LevelStore ? store.batchesWritten - batchesBefore : NaN
  const loader = await reopen(store)
  const t1 = performance.now()
  const contents = await loader.load()
  const loadMs = performance.now() - t1
  if (contents.messages.length !== count) throw new Error(`${name}: loaded ${contents.messages.length} of ${count}`)
  await loader.close()
  return { putsPerSecond: count / (writeMs / 1000), loadMs, batches }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}

async function bench (name: string, mode: Mode, open: () => Promise<QueueStore>, reopen: (s: QueueStore) => Promise<QueueStore>): Promise<void> {
  const figures: Figures[] = []
  for (let r = 0; r < rounds; r++) figures.push(await round(name, mode, open, reopen))
  const puts = figures.map((f) => f.putsPerSecond)
  const loads = figures.map((f) => f.loadMs)
  const batches = median(figures.map((f) => f.batches))
  console.log(`${(name + ', ' + mode).padEnd(30)} ${Math.round(median(puts)).toLocaleString('en').padStart(10)} puts/s (min ${Math.round(Math.min(...puts)).toLocaleString('en')}, max ${Math.round(Math.max(...puts)).toLocaleString('en')})` +
    `   load ${median(loads).toFixed(1)} ms (max ${Math.max(...loads).toFixed(1)})` + (Number.isNaN(batches) ? '' : `   LevelDB batches ${batches}`))
}

const dirs: string[] = []
async function freshDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-bench-'))
  dirs.push(dir)
  return dir
}

async function reopenLevel (s: QueueStore, sync: boolean): Promise<QueueStore> {
  const dir = (s as LevelStore).directory
  await s.close()
  return await LevelStore.open(dir, { sync })
}

console.log(`${count.toLocaleString('en')} messages of 16 bytes to ${PEERS} peers, one write() each, all in flight; median of ${rounds} rounds (Node ${process.version})`)
try {
  for (const mode of ['burst', 'trickle'] as const) {
    await bench('MemoryStore', mode, async () => new MemoryStore(), async (s) => s)
    await bench('LevelStore', mode, async () => await LevelStore.open(await freshDir()), async (s) => await reopenLevel(s, false))
    await bench('LevelStore sync: true', mode, async () => await LevelStore.open(await freshDir(), { sync: true }), async (s) => await reopenLevel(s, true))
  }
} finally {
  await Promise.all(dirs.map(async (d) => await rm(d, { recursive: true, force: true })))
}
