// Entry point of a child started by harness/proc.ts:
//   node --import tsx benchmarks/harness/proc-child.ts '<ProcSpec as JSON>'
// or, compiled (ProcSpec.compiled), node .bench-tmp/compiled/benchmarks/harness/proc-child.js '<...>'
// Imports the module, runs the role, posts its result (with the process's peak
// RSS), then stays until the parent says `stop`, so a sender's sockets outlive
// the receiver's last read. Exits by itself if the parent goes away.
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { BENCH_DIR, type FromProc, type ProcSpec, type ToProc } from './proc.ts'

/** What a role gets besides its arguments. */
export interface ProcIO {
  /** Tells the parent the role can be reached (a listener: its port). */
  ready(info?: Record<string, unknown>): void
  /** Aborted when the parent says `stop`. */
  readonly stop: AbortSignal
  /** Resolves when the parent sends the named signal (at once if it already came). */
  signal(type: string): Promise<void>
}

export type ProcRole = (args: Record<string, unknown>, io: ProcIO) => Promise<Record<string, unknown>>

function post (msg: FromProc): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) { resolve(); return }
    process.send(msg, undefined, {}, () => { resolve() })
  })
}

if (process.send === undefined) {
  console.error('benchmarks/harness/proc-child.ts is started by the benchmarks, not by hand')
  process.exit(2)
}
process.on('disconnect', () => process.exit(3))

const spec = JSON.parse(process.argv[2] ?? '{}') as ProcSpec
const stopper = new AbortController()
const seen = new Set<string>()
const waiting = new Map<string, Array<() => void>>()
process.on('message', (m: ToProc) => {
  if (m.type === 'stop') stopper.abort()
  seen.add(m.type)
  for (const f of waiting.get(m.type) ?? []) f()
  waiting.delete(m.type)
})

const io: ProcIO = {
  ready (info = {}) { void post({ type: 'ready', info }) },
  stop: stopper.signal,
  signal (type) {
    if (seen.has(type)) return Promise.resolve()
    return new Promise((resolve) => {
      const list = waiting.get(type) ?? []
      list.push(resolve)
      waiting.set(type, list)
    })
  }
}

async function main (): Promise<void> {
  // Compiled (ProcSpec.compiled), this file is JavaScript next to the module's: its name ends in .js too.
  const file = spec.compiled === true ? spec.file.replace(/\.ts$/, '.js') : spec.file
  const mod = await import(pathToFileURL(join(BENCH_DIR, file)).href) as { roles?: Record<string, ProcRole> }
  const role = mod.roles?.[spec.role]
  if (role === undefined) throw new Error(`${spec.file} has no role ${spec.role}`)
  // Under V8's tracing flags, mark where the role starts in the stream they print to (the end of what is
  // measured is marked by impl/readme/common.ts's stretchOver()), for benchmarks/jit-summary.ts.
  if (process.execArgv.some((a) => a.startsWith('--trace-opt') || a.startsWith('--trace-deopt'))) process.stdout.write(`[bench] ${spec.role} started\n`)
  const value = await role(spec.args, io)
  await post({ type: 'result', result: { ...value, maxRssMb: (process.resourceUsage().maxRSS * 1024) / 1e6 } })
  await io.signal('stop')
  process.exit(0)
}

main().catch(async (err: unknown) => {
  await post({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  process.exit(1)
})
