// Summarises what V8's optimizing compiler did in a run, from the output of
// `--trace-opt --trace-deopt` (every child's, as `npm run bench` prints it):
// how many functions TurboFan compiled and the time its compile jobs took, the
// functions that took longest, and the deoptimizations, by reason, with those
// caused by a change V8 had assumed would not happen ("code dependencies": a
// field held for a constant, a map that stopped being stable) apart. Those last
// ones throw away code that was fine and compile it again; they are counted
// apart for the measured stretch and for the teardown after it (drain, close),
// which the benchmark's children mark in the output when V8's tracing is on.
//
//   npm run bench -- --scenario S1 --impl snakemq --runs 1 "--node-args=--trace-opt --trace-deopt" > /tmp/jit.txt 2>&1
//   npx tsx benchmarks/jit-summary.ts /tmp/jit.txt [--top 15] [--only src/]
//
// The compile times are those V8 prints (wall time of each job's phases on its
// thread), so on a busy machine they include waiting for a core.
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'

const { values: opt, positionals } = parseArgs({
  options: { top: { type: 'string', default: '15' }, only: { type: 'string' } },
  allowPositionals: true
})
const file = positionals[0]
if (file === undefined) { console.error('usage: npx tsx benchmarks/jit-summary.ts TRACE.txt [--top N] [--only PATH-PART]'); process.exit(2) }
const lines = (await readFile(file, 'utf8')).split('\n')
const top = Number(opt.top)

interface Job { name: string, ms: number }
const jobs: Job[] = []
const deopts = new Map<string, number>()
const dependents = new Map<string, number>()
let dependentTotal = 0
// When tracing, harness/proc-child.ts marks each child's start and impl/readme/common.ts the end of the
// measured stretch (the last message received, the last call answered): what comes after a run's first
// end, until the next start, is teardown (drain, close), which no rate counts.
let measuring = true
const afterwards = new Map<string, number>()
let afterwardsTotal = 0
for (const line of lines) {
  if (line.startsWith('[bench] ')) {
    if (line.endsWith(' started')) measuring = true
    else if (line === '[bench] measured stretch over') measuring = false
    continue
  }
  // [completed compiling 0x... <JSFunction name (sfi = 0x...)> (target TURBOFAN) - took 0.016, 2.102, 0.023 ms]
  const c = /^\[completed compiling .*?<JSFunction (\S*) .*?took ([\d.]+), ([\d.]+), ([\d.]+) ms/.exec(line)
  if (c !== null) {
    jobs.push({ name: c[1]!, ms: Number(c[2]) + Number(c[3]) + Number(c[4]) })
    continue
  }
  const d = /^\[bailout \(kind: ([^,]+), reason: ([^)]+)\): begin\. deoptimizing \S+ <JSFunction (\S*)/.exec(line)
  if (d !== null) {
    const key = `${d[3]}: ${d[2]} (${d[1]})`
    deopts.set(key, (deopts.get(key) ?? 0) + 1)
    continue
  }
  const m = /^\[marking dependent code \S+ <Code \w+> \(\S+ <SharedFunctionInfo ([^>]*)>\).*reason: ([^\]]+)\]/.exec(line)
  if (m !== null) {
    const key = `${m[1]}: ${m[2]}`
    if (measuring) {
      dependentTotal++
      dependents.set(key, (dependents.get(key) ?? 0) + 1)
    } else {
      afterwardsTotal++
      afterwards.set(key, (afterwards.get(key) ?? 0) + 1)
    }
  }
}
const only = opt.only
const total = jobs.reduce((s, j) => s + j.ms, 0)
console.log(`TurboFan: ${jobs.length} compile jobs, ${total.toFixed(1)} ms in all`)
const byName = new Map<string, { ms: number, n: number }>()
for (const j of jobs) {
  const e = byName.get(j.name) ?? { ms: 0, n: 0 }
  e.ms += j.ms
  e.n++
  byName.set(j.name, e)
}
for (const [name, e] of [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) {
  console.log(`  ${e.ms.toFixed(1).padStart(7)} ms  ${String(e.n).padStart(2)}x  ${name}`)
}
const list = (title: string, m: Map<string, number>, count: number): void => {
  console.log(`${title}: ${count}`)
  for (const [k, n] of [...m].sort((a, b) => b[1] - a[1])) if (only === undefined || k.includes(only)) console.log(`  ${String(n).padStart(3)}  ${k}`)
}
list('deoptimizations (bailouts)', deopts, [...deopts.values()].reduce((s, n) => s + n, 0))
list('optimized code thrown away for a broken assumption (marking dependent code), while measuring', dependents, dependentTotal)
list('the same after a run\'s first measured stretch was over (drain, close: no rate counts it)', afterwards, afterwardsTotal)
