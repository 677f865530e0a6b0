// S4 on its own: persistent queues against the in-memory path, in one run.
//
//   npx tsx benchmarks/persist.ts [--messages 20000] [--runs 3] [--no-sync]
//
// For each run, in fresh child processes (benchmarks/impl/snakemq-s4.ts):
// - persistent: `messages` persistent 16-byte sends to an absent receiver, all in
//   flight at once, into a LevelStore; the process exits; a new one opens the store
//   and drains it to a receiver;
// - persistent-sync: the same with LevelStore.open(dir, { sync: true });
// - memory: the same sends, not persistent, then drained by the same process.
// Prints the medians as a table (goals from issue 3: at least 100,000 enqueues/s,
// at most 0.5 s to drain 20,000 after a restart).
import { availableParallelism, cpus } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BENCH_DIR, session } from './harness/spawn.ts'
import { runS4, type S4Figures, type S4Mode } from './impl/snakemq-s4.ts'

const { values: opt } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    runs: { type: 'string', default: '3' },
    'no-sync': { type: 'boolean', default: false }
  },
  strict: true
})
const count = Number(opt.messages)
const runs = Number(opt.runs)
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(runs) || runs < 1) {
  console.error('usage: npx tsx benchmarks/persist.ts [--messages N] [--runs N] [--no-sync]')
  process.exit(2)
}
const modes: S4Mode[] = opt['no-sync'] ? ['memory', 'persistent'] : ['memory', 'persistent', 'persistent-sync']
const implFile = join(BENCH_DIR, 'impl', 'snakemq-s4.ts')

const results = new Map<S4Mode, S4Figures[]>(modes.map((m) => [m, []]))
const started = performance.now()
for (let run = 1; run <= runs; run++) {
  for (const mode of modes) {
    process.stderr.write(`run ${run}/${runs}: ${mode} ... `)
    const f = await session({ implFile, quick: false, timeoutMs: 120_000 }, async (h) => await runS4(h, { count, size: 16 }, mode))
    results.get(mode)!.push(f)
    process.stderr.write(`${Math.round(f.enqueuePerS).toLocaleString('en-US')} / ${Math.round(f.warmEnqueuePerS).toLocaleString('en-US')} enqueues/s (cold / warm), drained in ${f.drainS.toFixed(3)} s\n`)
  }
}

function median (xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

const fmt = (x: number, digits = 0): string => Number.isNaN(x) ? '-' : x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const rows: string[][] = [['path', 'enqueues/s cold', 'enqueues/s warm', 'LevelDB batches', 'drain s', 'load ms', 'restart to drained s']]
for (const mode of modes) {
  const fs = results.get(mode)!
  const m = (key: keyof S4Figures): number => median(fs.map((f) => f[key] as number))
  rows.push([
    mode === 'memory' ? 'in memory (not persistent)' : mode === 'persistent' ? 'persistent (LevelStore)' : 'persistent (LevelStore, sync: true)',
    fmt(m('enqueuePerS')), fmt(m('warmEnqueuePerS')), fmt(m('batches')), fmt(m('drainS'), 3), fmt(m('loadMs'), 1), fmt(m('restartToDrainedS'), 3)
  ])
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
const line = (r: string[]): string => r.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join('  ')
console.log(`S4: ${count.toLocaleString('en-US')} persistent 16-byte messages, receiver absent, all sends in flight; medians of ${runs} run(s)`)
console.log(line(rows[0]!))
console.log(widths.map((w) => '-'.repeat(w)).join('  '))
for (const r of rows.slice(1)) console.log(line(r))
const p = results.get('persistent')!
const enq = median(p.map((f) => f.enqueuePerS))
const warm = median(p.map((f) => f.warmEnqueuePerS))
const drain = median(p.map((f) => f.drainS))
console.log('')
console.log(`goal: persistent enqueue >= 100,000/s: cold ${fmt(enq)} ${enq >= 100_000 ? 'met' : 'NOT met'}, warm ${fmt(warm)} ${warm >= 100_000 ? 'met' : 'NOT met'}`)
console.log(`goal: drain of ${count.toLocaleString('en-US')} after a restart <= 0.5 s: ${fmt(drain, 3)} s ${drain <= 0.5 ? 'met' : 'NOT met'}`)
console.log('')
console.log('drain s: persistent, from the restarted process opening its store (open and load included; Node and tsx start-up not) to the')
console.log('  receiver getting the last message; in memory, from the connect to the last message. restart to drained: from the')
console.log('  restarted process\'s start, start-up included. enqueues/s: first send() to the last one resolving (persistent: in LevelDB);')
console.log('  cold: the first sends of a fresh process; warm: the same again in that process, into a fresh Messaging and store.')
console.log(`node ${process.version}, ${availableParallelism()} cpus (${cpus()[0]?.model ?? '?'}); ${((performance.now() - started) / 1000).toFixed(1)} s`)
