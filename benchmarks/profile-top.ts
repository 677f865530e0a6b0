// Summarises a V8 CPU profile (`npm run bench -- --profile DIR` writes one per child)
// as text: the functions with the most self time, and (with --total) the most
// inclusive time, so a profile can be read and quoted without DevTools.
//
//   npx tsx benchmarks/profile-top.ts FILE.cpuprofile [--top 25] [--total]
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

const { values: opt, positionals } = parseArgs({
  options: { top: { type: 'string', default: '25' }, total: { type: 'boolean', default: false } },
  allowPositionals: true
})
const file = positionals[0]
if (file === undefined) { console.error('usage: npx tsx benchmarks/profile-top.ts FILE.cpuprofile [--top N] [--total]'); process.exit(2) }
const prof = JSON.parse(await readFile(file, 'utf8')) as Profile
const top = Number(opt.top)

const byId = new Map<number, ProfileNode>()
for (const n of prof.nodes) byId.set(n.id, n)
const parent = new Map<number, number>()
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)

// Time of each sample is the delta that follows it.
const selfUs = new Map<number, number>()
for (let i = 0; i < prof.samples.length; i++) {
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
