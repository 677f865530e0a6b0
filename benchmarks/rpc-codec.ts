// The RPC value codec (src/rpc/codec.ts) alone, in-process: encode and decode of
// the values RPC carries, in nanoseconds per operation (medians of --runs runs).
// For checking that a change to the codec does not make RPC's hot path slower;
// the end-to-end figures are benchmarks/rpc.ts's.
//
//   npx tsx benchmarks/rpc-codec.ts [--runs 7] [--ms 300]
import { parseArgs } from 'node:util'
import { decodeValue, encodeAfter, encodeValue } from '../src/rpc/codec.ts'

const { values: opts } = parseArgs({ options: { runs: { type: 'string', default: '7' }, ms: { type: 'string', default: '300' } } })
const RUNS = Number(opts.runs)
const MS = Number(opts.ms)

const cases: Array<[string, unknown]> = [
  ['[1, 2]', [1, 2]],
  ['16-byte Uint8Array', [new Uint8Array(16).fill(7)]],
  ['short ASCII strings', ['calc', 'add', 'hello world']],
  ['object of 8 keys', [{ id: 12345, name: 'Ada Lovelace', email: 'ada@example.com', active: true, score: 3.25, tags: ['a', 'b'], created: new Date(0), n: null }]],
  ['200-char non-ASCII string', ['Žluťoučký kůň úpěl ďábelské ódy '.repeat(6)]],
  ['4 KiB ASCII string', ['x'.repeat(4096)]],
  ['64 KiB Uint8Array', [new Uint8Array(65536)]],
  ['array of 100 objects', Array.from({ length: 100 }, (_, i) => ({ i, s: `item ${i}`, f: i / 3 }))],
  ['bigints', [2n ** 70n, -(2n ** 100n)]]
]

function time (fn: () => void): number {
  let n = 0
  const start = process.hrtime.bigint()
  const stop = start + BigInt(MS) * 1_000_000n
  let now = start
  while (now < stop) {
    for (let i = 0; i < 100; i++) fn()
    n += 100
    now = process.hrtime.bigint()
  }
  return Number(now - start) / n
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

console.log(`node ${process.version}, ${RUNS} runs of ${MS} ms, median ns/op`)
console.log('case'.padEnd(28) + 'encode'.padStart(10) + 'encodeAfter'.padStart(13) + 'decode'.padStart(10))
for (const [name, value] of cases) {
  const bytes = encodeValue(value)
  const e: number[] = []
  const a: number[] = []
  const d: number[] = []
  let sink = 0
  for (let r = 0; r < RUNS; r++) {
    e.push(time(() => { sink += encodeValue(value).length }))
    a.push(time(() => { sink += encodeAfter(24, value).length }))
    d.push(time(() => { sink += decodeValue(bytes) === undefined ? 0 : 1 }))
  }
  if (sink === -1) console.log(sink)
  console.log(name.padEnd(28) + median(e).toFixed(0).padStart(10) + median(a).toFixed(0).padStart(13) + median(d).toFixed(0).padStart(10))
}
