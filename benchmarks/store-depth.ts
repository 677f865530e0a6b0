// What the store costs when a queue is deep, and the floor under a loop of
// `await send(..., { persistent: true })`:
//
// - "round trip": one write awaited before the next, N times, for LevelDB's own
//   db.put(), a one-operation db.batch() (what a LevelStore batch is), and
//   LevelStore.write() of one message (its group commit included);
// - a LevelStore holding `depth` 16-byte messages for one peer: the time to open
//   it, summary(), read(peer, seq, 1000) at its head, middle and tail, and, for
//   comparison, load() of all of it (what a restart did before summary()).
//
// Medians of `rounds` repetitions (the round trips: of rounds runs of N each).
//
//   npx tsx benchmarks/store-depth.ts [depth=1000000] [roundTrips=20000] [rounds=5] [dir]
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { LevelStore } from '../src/store/level-node.ts'
import type { StoredMessage } from '../src/store/types.ts'

const depth = Number(process.argv[2] ?? 1_000_000)
const roundTrips = Number(process.argv[3] ?? 20_000)
const rounds = Number(process.argv[4] ?? 5)
const base = process.argv[5] ?? tmpdir()
const PEER = 'receiver'
const DATA = new Uint8Array(16).fill(0x61)

function message (seq: number): StoredMessage {
  const uuid = new Uint8Array(16)
  new DataView(uuid.buffer).setUint32(12, seq)
  return { peer: PEER, seq, uuid, expiry: Infinity, flags: 1, data: DATA }
}

function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]!
}

async function timed (fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now()
  await fn()
  return performance.now() - t
}

const root = await mkdtemp(join(base, 'snakemq-store-depth-'))
const results: Record<string, unknown> = { depth, roundTrips, rounds, node: process.version }
try {
  // ---- round trips, one write awaited at a time ---------------------------------
  const value = new Uint8Array(16 + 12 + 16)
  const perWrite = { put: [] as number[], batch: [] as number[], storeWrite: [] as number[] }
  for (let r = 0; r < rounds; r++) {
    const db = new Level<string, Uint8Array>(join(root, `raw-${r}`), { valueEncoding: 'view' })
    await db.open()
    perWrite.put.push(await timed(async () => {
      for (let i = 0; i < roundTrips; i++) await db.put(`m${i.toString(16).padStart(14, '0')}`, value)
    }) * 1000 / roundTrips)
    perWrite.batch.push(await timed(async () => {
      for (let i = 0; i < roundTrips; i++) await db.batch().put(`n${i.toString(16).padStart(14, '0')}`, value).write()
    }) * 1000 / roundTrips)
    await db.close()
    const store = await LevelStore.open(join(root, `store-${r}`))
    perWrite.storeWrite.push(await timed(async () => {
      for (let i = 0; i < roundTrips; i++) await store.write({ put: [message(i)] })
    }) * 1000 / roundTrips)
    await store.close()
  }
  results.usPerAwaitedWrite = {
    levelPut: Number(median(perWrite.put).toFixed(1)),
    levelBatch: Number(median(perWrite.batch).toFixed(1)),
    levelStoreWrite: Number(median(perWrite.storeWrite).toFixed(1))
  }

  // ---- a deep queue -------------------------------------------------------------
  const dir = join(root, 'deep')
  let store = await LevelStore.open(dir)
  const fill = await timed(async () => {
    const step = 10_000
    for (let seq = 0; seq < depth; seq += step) {
      const put: StoredMessage[] = []
      for (let i = seq; i < Math.min(depth, seq + step); i++) put.push(message(i))
      await store.write({ put })
    }
  })
  await store.close()
  results.fillSeconds = Number((fill / 1000).toFixed(1))

  const opens: number[] = []
  const summaries: number[] = []
  const reads = { head: [] as number[], middle: [] as number[], tail: [] as number[] }
  for (let r = 0; r < rounds; r++) {
    opens.push(await timed(async () => { store = await LevelStore.open(dir) }))
    let summary!: Awaited<ReturnType<LevelStore['summary']>>
    summaries.push(await timed(async () => { summary = await store.summary() }))
    const queue = summary.queues[0]
    if (queue?.count !== depth || queue.nextSeq !== depth) throw new Error(`summary says ${JSON.stringify(summary.queues)}`)
    for (const [where, from] of [['head', 0], ['middle', depth >> 1], ['tail', depth - 1000]] as const) {
      let got: StoredMessage[] = []
      reads[where].push(await timed(async () => { got = await store.read(PEER, from, 1000) }))
      if (got.length !== 1000 || got[0]?.seq !== from) throw new Error(`read(${from}) gave ${got.length}`)
    }
    await store.close()
  }
  results.msOpen = Number(median(opens).toFixed(2))
  results.msSummary = Number(median(summaries).toFixed(2))
  results.msRead1000 = {
    head: Number(median(reads.head).toFixed(2)),
    middle: Number(median(reads.middle).toFixed(2)),
    tail: Number(median(reads.tail).toFixed(2))
  }

  store = await LevelStore.open(dir)
  global.gc?.()
  const heapBefore = process.memoryUsage()
  let loaded = 0
  const load = await timed(async () => { loaded = (await store.load()).messages.length })
  const heapAfter = process.memoryUsage()
  await store.close()
  if (loaded !== depth) throw new Error(`load() gave ${loaded}`)
  results.loadForComparison = {
    seconds: Number((load / 1000).toFixed(2)),
    rssGrowthMB: Math.round((heapAfter.rss - heapBefore.rss) / 1e6)
  }
} finally {
  await rm(root, { recursive: true, force: true })
}
console.log(JSON.stringify(results, null, 1))
