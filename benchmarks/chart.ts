// Turns the JSON written by `npm run bench -- --json FILE` into an SVG bar chart:
// for each scenario, every implementation's result relative to raw_net (raw_net = 1,
// higher is better; latencies are plotted as raw_net / impl so that holds too), with
// the snakemq goals from issue 6 drawn as dashed marks.
//
//   npx tsx benchmarks/chart.ts [results.json] [results.svg]
// Defaults: benchmarks/results.json -> benchmarks/results.svg
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BASELINE, IMPLEMENTATIONS } from './impl/index.ts'

const BENCH_DIR = dirname(fileURLToPath(import.meta.url))

type ImplMetrics = Record<string, number>
type ScenarioResults = Record<string, ImplMetrics>
interface Meta {
  command?: string
  runs?: number
  quick?: boolean
  date?: string
  machine?: { nproc?: number, cpu?: string, node?: string }
}

interface Group {
  scenario: string
  key: string
  label: string
  higherIsBetter: boolean
  unit: (v: number) => string
  /** snakemq goal as a plotted ratio (higher is better), from issue 6 */
  goal?: number
}

const si = (v: number): string => v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e4 ? `${(v / 1e3).toFixed(0)}k` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : v.toFixed(0)

const GROUPS: Group[] = [
  { scenario: 's1', key: 'msgs_per_s', label: 'S1 msgs/s', higherIsBetter: true, unit: si, goal: 0.6 },
  { scenario: 's2', key: 'mb_per_s', label: 'S2 MB/s', higherIsBetter: true, unit: (v) => v.toFixed(0), goal: 0.9 },
  { scenario: 's3a', key: 'p50_us', label: 'S3a p50 µs', higherIsBetter: false, unit: (v) => v.toFixed(0), goal: 1 / 1.5 },
  { scenario: 's3a', key: 'p99_us', label: 'S3a p99 µs', higherIsBetter: false, unit: (v) => v.toFixed(0) },
  { scenario: 's3b', key: 'calls_per_s', label: 'S3b calls/s', higherIsBetter: true, unit: si, goal: 0.6 }
]

/** Bars beyond this ratio are clipped (and say so), so one outlier does not flatten the rest. */
const CLIP = 2.5

const PALETTE: Record<string, string> = { raw_net: '#8c8c8c', raw_net_simple: '#c4c4c4', zeromq: '#d9822b', snakemq: '#2b6cb0', snakemq_messaging: '#90cdf4' }
const EXTRA = ['#38a169', '#805ad5', '#c53030']

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

function renderChart (doc: Record<string, unknown>): string {
  const meta = (doc.meta ?? {}) as Meta
  const scen = (id: string): ScenarioResults | undefined => doc[id] as ScenarioResults | undefined
  const known = IMPLEMENTATIONS.map((i) => i.name)
  const present = new Set<string>()
  for (const g of GROUPS) for (const name of Object.keys(scen(g.scenario) ?? {})) present.add(name)
  const impls = [...known.filter((n) => present.has(n)), ...[...present].filter((n) => !known.includes(n))]
  const color = (name: string, i: number): string => PALETTE[name] ?? EXTRA[i % EXTRA.length]!

  interface Bar { impl: string, ratio: number, value: number }
  const groups = GROUPS.map((g) => {
    const res = scen(g.scenario) ?? {}
    const base = res[BASELINE]?.[g.key]
    const bars: Bar[] = []
    for (const impl of impls) {
      const value = res[impl]?.[g.key]
      if (value === undefined || base === undefined || !(base > 0) || !(value > 0)) continue
      bars.push({ impl, value, ratio: g.higherIsBetter ? value / base : base / value })
    }
    return { g, bars }
  }).filter((x) => x.bars.length > 0)

  const W = 960
  const left = 60
  const right = 20
  const top = 96
  const plotH = 300
  const bottom = top + plotH
  const maxRatio = Math.min(CLIP, Math.max(1.2, ...groups.flatMap((x) => x.bars.map((b) => b.ratio))))
  const step = 0.25
  const yMax = Math.ceil(maxRatio / step) * step
  const y = (r: number): number => bottom - (Math.min(r, yMax) / yMax) * plotH
  const groupW = (W - left - right) / Math.max(1, groups.length)
  const barW = Math.min(56, (groupW - 24) / Math.max(1, impls.length))

  const out: string[] = []
  const extras = ['s4', 'memory'].flatMap((id) => Object.entries(scen(id) ?? {}).map(([impl, m]) =>
    `${id === 's4' ? 'S4' : 'Memory'} ${impl}: ${Object.entries(m).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`).join(', ')}`))
  const H = bottom + 70 + extras.length * 16
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`)
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="bold">Relative to raw node:net (= 1.0, higher is better)</text>`)
  const m = meta.machine ?? {}
  const sub = [`node ${m.node ?? '?'}`, `${m.nproc ?? '?'} cpus`, m.cpu ?? '', meta.runs !== undefined ? `median of ${meta.runs} run(s)` : '', meta.quick === true ? 'QUICK sizes' : '', meta.date?.slice(0, 10) ?? '']
  out.push(`<text x="${left}" y="42" fill="#555">${esc(sub.filter((s) => s !== '').join(' · '))}</text>`)
  if (meta.command !== undefined) out.push(`<text x="${left}" y="58" fill="#555">${esc(meta.command)}</text>`)

  // Legend, on a row of its own under the title
  let lx = left
  impls.forEach((name, i) => {
    out.push(`<rect x="${lx}" y="66" width="12" height="12" fill="${color(name, i)}"/>`)
    out.push(`<text x="${lx + 16}" y="76">${esc(name)}</text>`)
    lx += 16 + name.length * 7 + 18
  })
  if (impls.includes('snakemq')) {
    out.push(`<line x1="${lx}" y1="72" x2="${lx + 24}" y2="72" stroke="#1a365d" stroke-width="2" stroke-dasharray="5,3"/>`)
    out.push(`<text x="${lx + 30}" y="76" fill="#1a365d">snakemq goal (issue 6)</text>`)
  }

  // Axis and grid
  for (let r = 0; r <= yMax + 1e-9; r += step) {
    const yy = y(r).toFixed(1)
    out.push(`<line x1="${left}" y1="${yy}" x2="${W - right}" y2="${yy}" stroke="${Math.abs(r - 1) < 1e-9 ? '#444' : '#e5e5e5'}" stroke-width="1"/>`)
    out.push(`<text x="${left - 6}" y="${(y(r) + 4).toFixed(1)}" text-anchor="end" fill="#555">${r.toFixed(step < 1 ? 2 : 0)}x</text>`)
  }

  groups.forEach(({ g, bars }, gi) => {
    const gx = left + gi * groupW
    const span = bars.length * barW
    const x0 = gx + (groupW - span) / 2
    bars.forEach((b, bi) => {
      const x = x0 + bi * barW
      const yy = y(b.ratio)
      out.push(`<rect x="${(x + 2).toFixed(1)}" y="${yy.toFixed(1)}" width="${(barW - 4).toFixed(1)}" height="${(bottom - yy).toFixed(1)}" fill="${color(b.impl, impls.indexOf(b.impl))}"><title>${esc(`${b.impl}: ${g.unit(b.value)} (${b.ratio.toFixed(2)}x)`)}</title></rect>`)
      if (b.ratio > yMax) {
        // Clipped: a white zigzag across the top of the bar.
        const zy = yy + 10
        out.push(`<polyline points="${x + 2},${zy + 3} ${x + barW / 4},${zy - 3} ${x + barW / 2},${zy + 3} ${x + (3 * barW) / 4},${zy - 3} ${x + barW - 2},${zy + 3}" fill="none" stroke="#fff" stroke-width="3"/>`)
      }
      out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(yy - 4).toFixed(1)}" text-anchor="middle" font-size="11">${b.ratio.toFixed(2)}x</text>`)
      out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${bottom + 14}" text-anchor="middle" font-size="10" fill="#555">${esc(g.unit(b.value))}</text>`)
    })
    const sIdx = bars.findIndex((b) => b.impl === 'snakemq')
    if (g.goal !== undefined && sIdx >= 0) {
      const yy = y(g.goal).toFixed(1)
      const x = x0 + sIdx * barW
      out.push(`<line x1="${(x - 4).toFixed(1)}" y1="${yy}" x2="${(x + barW + 4).toFixed(1)}" y2="${yy}" stroke="#1a365d" stroke-width="2" stroke-dasharray="5,3"><title>snakemq goal</title></line>`)
    }
    out.push(`<text x="${(gx + groupW / 2).toFixed(1)}" y="${bottom + 34}" text-anchor="middle" font-weight="bold">${esc(g.label)}</text>`)
    out.push(`<text x="${(gx + groupW / 2).toFixed(1)}" y="${bottom + 48}" text-anchor="middle" font-size="10" fill="#777">${g.higherIsBetter ? 'impl / raw_net' : 'raw_net / impl'}</text>`)
  })
  extras.forEach((line, i) => {
    out.push(`<text x="${left}" y="${bottom + 70 + i * 16}" fill="#333">${esc(line)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

const input = resolve(process.argv[2] ?? join(BENCH_DIR, 'results.json'))
const output = resolve(process.argv[3] ?? join(BENCH_DIR, 'results.svg'))
const doc = JSON.parse(await readFile(input, 'utf8')) as Record<string, unknown>
await writeFile(output, renderChart(doc))
console.log(`wrote ${output}`)
