// Summarises a V8 CPU profile (`npm run bench -- --profile DIR` writes one per child)
// as text: the functions with the most self time, and (with --total) the most
// inclusive time, so a profile can be read and quoted without DevTools. With
// --from, only a window: from the first sample with that function on its stack,
// for --ms milliseconds (the first calls of a run, say, while the JIT warms up).
//
//   npx tsx benchmarks/profile-top.ts FILE.cpuprofile [--top 25] [--total] [--from NAME [--ms 100]]
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

const { values: opt, positionals } = parseArgs({
  options: {
    top: { type: 'string', default: '25' },
    total: { type: 'boolean', default: false },
    from: { type: 'string' },
    ms: { type: 'string', default: '100' }
  },
  allowPositionals: true
})
const file = positionals[0]
if (file === undefined) { console.error('usage: npx tsx benchmarks/profile-top.ts FILE.cpuprofile [--top N] [--total] [--from NAME [--ms N]]'); process.exit(2) }
const prof = JSON.parse(await readFile(file, 'utf8')) as Profile
const top = Number(opt.top)

const byId = new Map<number, ProfileNode>()
for (const n of prof.nodes) byId.set(n.id, n)
const parent = new Map<number, number>()
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)

// The window: every sample, or (--from) those from the first one with that function on its stack, for --ms.
const onStack = (id: number, name: string): boolean => {
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) if (byId.get(cur)!.callFrame.functionName === name) return true
  return false
}
let first = 0
let last = prof.samples.length
if (opt.from !== undefined) {
  first = prof.samples.findIndex((id) => onStack(id, opt.from!))
  if (first < 0) { console.error(`no sample has ${opt.from} on its stack`); process.exit(1) }
  let at = 0
  for (let i = 0; i <= first; i++) at += prof.timeDeltas[i] ?? 0
  const end = at + Number(opt.ms) * 1000
  last = first
  while (last < prof.samples.length && at < end) at += prof.timeDeltas[++last] ?? 0
  console.log(`the ${opt.ms} ms from the first sample with ${opt.from} on its stack`)
}

// Time of each sample is the delta that follows it.
const selfUs = new Map<number, number>()
for (let i = first; i < last; i++) {
  const id = prof.samples[i]!
  const dt = prof.timeDeltas[i + 1] ?? 0
  selfUs.set(id, (selfUs.get(id) ?? 0) + dt)
}
const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0)

const label = (cf: CallFrame): string => {
  const where = cf.url === '' ? '' : ` ${cf.url.replace(/^.*\/(src|benchmarks|node_modules)\//, '$1/').replace(/^node:/, 'node:')}:${cf.lineNumber + 1}`
  return `${cf.functionName === '' ? '(anonymous)' : cf.functionName}${where}`
}

const self = new Map<string, number>()
const incl = new Map<string, number>()
for (const [id, us] of selfUs) {
  const n = byId.get(id)!
  const key = label(n.callFrame)
  self.set(key, (self.get(key) ?? 0) + us)
  // Inclusive: every distinct function on the stack gets the sample once.
  const seen = new Set<string>()
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = label(byId.get(cur)!.callFrame)
    if (seen.has(k)) continue
    seen.add(k)
    incl.set(k, (incl.get(k) ?? 0) + us)
  }
}

const show = (title: string, m: Map<string, number>): void => {
  console.log(`${title} (of ${(totalUs / 1000).toFixed(0)} ms sampled)`)
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${(100 * us / totalUs).toFixed(1).padStart(5)}%  ${k}`)
  }
}
show('self time', self)
if (opt.total) { console.log(''); show('inclusive time', incl) }
