// Counts the promises a process makes, where it makes them, and how many of
// them end rejected: to see what a message or a call costs in promises. Load it
// into every child of a benchmark run:
//   npm run bench -- --scenario S3b --impl snakemq --runs 1 --node-args=--import=./benchmarks/promise-count.mjs
// Each process that made at least PROMISE_COUNT_MIN (default 50,000) prints,
// on stderr as it exits, its totals and the ten commonest creation sites (from
// one promise in PROMISE_COUNT_EVERY, default 7, scaled back up).
// Caveats: promise hooks turn off V8's fast path for `await` on a native
// promise, so every await shows up as one extra promise of its own (which a
// run without this file does not make); and the rates of a run with it are
// lower than without. Use its counts, not its rates.
import { inspect } from 'node:util'
import { promiseHooks } from 'node:v8'

const every = Number(process.env.PROMISE_COUNT_EVERY ?? 7)
const min = Number(process.env.PROMISE_COUNT_MIN ?? 50_000)
let made = 0
let settled = 0
let rejected = 0
let inHook = false
const sites = new Map()

const site = () => {
  const lines = (new Error().stack ?? '').split('\n').slice(3, 6)
  return lines.map((l) => l.trim().replace(/\(.*\/(src|benchmarks)\//, '($1/')).join(' < ')
}

promiseHooks.onInit(() => {
  if (inHook) return
  inHook = true
  if (++made % every === 0) {
    const s = site()
    sites.set(s, (sites.get(s) ?? 0) + 1)
  }
  inHook = false
})

promiseHooks.onSettled((p) => {
  if (inHook) return
  inHook = true
  settled++
  if (inspect(p, { depth: 0 }).includes('<rejected>')) rejected++
  inHook = false
})

process.on('exit', () => {
  if (made < min) return
  const top = [...sites].sort((a, b) => b[1] - a[1]).slice(0, 10)
  const lines = top.map(([s, n]) => `  ${String(n * every).padStart(8)}  ${s}`)
  process.stderr.write(`promise-count pid ${process.pid}: ${made} made, ${settled} settled, ${rejected} rejected; commonest creation sites:\n${lines.join('\n')}\n`)
})
