// Child processes for the default-mode benchmark (benchmarks/readme.ts) and
// benchmarks/scale.ts: a module's exported role runs in its own
// `node --import tsx` process, talks to the parent over IPC only, and is killed
// at the deadline, when the parent is done with it, or when the parent exits.
//
// Unlike harness/spawn.ts (the tuned mode's), a role here is a whole program of
// its own (a sender, a receiver), reports what it measured as plain JSON, and
// takes its timestamps on the wall clock (`performance.timeOrigin +
// performance.now()`), which every process on the host shares, so the parent can
// subtract one process's time from another's.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const REPO_ROOT = resolve(BENCH_DIR, '..')
const CHILD_FILE = join(BENCH_DIR, 'harness', 'proc-child.ts')
/** Where compileBenchmarks() puts the JavaScript (the repository's layout below it). */
const COMPILED_DIR = join(REPO_ROOT, '.bench-tmp', 'compiled')

/**
 * Compiles the harness, the README programs (benchmarks/impl/readme) and the
 * library with tsc (benchmarks/tsconfig.compiled.json), for ProcSpec.compiled.
 * Throws if tsc fails.
 */
export function compileBenchmarks (): void {
  const tsc = spawnSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(BENCH_DIR, 'tsconfig.compiled.json')], { cwd: REPO_ROOT, encoding: 'utf8' })
  if (tsc.status !== 0) throw new Error(`tsc -p benchmarks/tsconfig.compiled.json failed:\n${tsc.stdout}${tsc.stderr}`)
}

/** What the parent sends a child: a named signal (`stop`, `go`, ...). */
export interface ToProc { type: string }
/** What a child sends the parent. */
export type FromProc =
  | { type: 'ready', info: Record<string, unknown> }
  | { type: 'result', result: Record<string, unknown> }
  | { type: 'error', message: string }

export interface ProcSpec {
  /** Module under benchmarks/, exporting `roles`. */
  file: string
  role: string
  args: Record<string, unknown>
  /**
   * `file` is a plain JavaScript program (not a module of roles), run by `node`
   * itself without tsx: it gets the spec as its argument and speaks the same
   * messages (`ready`, `result`, `error`; it exits on `stop`).
   */
  plain?: boolean
  /**
   * Run `file` and the library as tsc compiles them (compileBenchmarks(), into
   * .bench-tmp/compiled), by `node` itself without tsx: as an application is
   * deployed.
   */
  compiled?: boolean
}

export interface Proc {
  readonly pid: number | undefined
  /** Wall-clock ms when the parent spawned it. */
  readonly spawnedAt: number
  /** What the role passed to `io.ready()`. */
  readonly ready: Promise<Record<string, unknown>>
  /** What the role resolved with (plus `maxRssMb`); rejects if it threw or the process died first. */
  readonly result: Promise<Record<string, unknown>>
  /** Resolves once the process has exited. */
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Sends a named signal to the role (`io.signal(name)` resolves). */
  signal(type: string): void
  /** Asks the role to finish and the process to exit (`io.stop` aborts). */
  stop(): void
  kill(signal?: NodeJS.Signals): void
}

export const wallNow = (): number => performance.timeOrigin + performance.now()

const live = new Set<ChildProcess>()
process.on('exit', () => { for (const c of live) c.kill('SIGKILL') })
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { for (const c of live) c.kill('SIGKILL'); process.exit(130) })
}

function quiet<T> (p: Promise<T>): Promise<T> {
  p.catch(() => {})
  return p
}

export function startProc (spec: ProcSpec, nodeArgs: string[] = []): Proc {
  const spawnedAt = wallNow()
  const entry = spec.plain === true
    ? [join(BENCH_DIR, spec.file)]
    : spec.compiled === true ? [join(COMPILED_DIR, 'benchmarks', 'harness', 'proc-child.js')] : ['--import', 'tsx', CHILD_FILE]
  const child = spawn(process.execPath, [...nodeArgs, ...entry, JSON.stringify(spec)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  live.add(child)
  const name = `${spec.role} (${spec.file})`
  let onReady!: (i: Record<string, unknown>) => void
  let onResult!: (r: Record<string, unknown>) => void
  let fail!: (e: Error) => void
  const ready = quiet(new Promise<Record<string, unknown>>((resolve, reject) => { onReady = resolve; fail = reject }))
  let failResult!: (e: Error) => void
  const result = quiet(new Promise<Record<string, unknown>>((resolve, reject) => { onResult = resolve; failResult = reject }))
  const failBoth = (e: Error): void => { fail(e); failResult(e) }
  let failure: Error | undefined
  child.on('message', (m: FromProc) => {
    if (m.type === 'ready') onReady(m.info)
    else if (m.type === 'result') onResult(m.result)
    else { failure = new Error(`${name} failed: ${m.message}`); failBoth(failure) }
  })
  child.once('error', (err) => { failBoth(new Error(`${name} could not start: ${err.message}`)) })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child)
      failBoth(failure ?? new Error(`${name} exited (${signal ?? `code ${code}`}) before reporting`))
      resolve({ code, signal })
    })
  })
  const post = (type: string): void => { if (child.connected) child.send({ type } satisfies ToProc, () => {}) }
  return {
    pid: child.pid,
    spawnedAt,
    ready,
    result,
    exited,
    signal: post,
    stop () { post('stop') },
    kill (signal = 'SIGKILL') { if (child.exitCode === null && child.signalCode === null) child.kill(signal) }
  }
}

/** Rejects when `p` rejects; never resolves. For failing fast on a peer that dies. */
export function failureOf (p: Promise<unknown>): Promise<never> {
  return quiet(p.then(() => new Promise<never>(() => {})))
}

/**
 * Runs `body` with a `start` that spawns children; when `body` settles (or the
 * deadline passes, which kills them and rejects) every child is asked to stop,
 * then killed if it has not exited within 5 s.
 */
export async function withProcs<T> (timeoutMs: number, nodeArgs: string[], body: (start: (spec: ProcSpec) => Proc) => Promise<T>): Promise<T> {
  const procs: Proc[] = []
  const start = (spec: ProcSpec): Proc => {
    const p = startProc(spec, nodeArgs)
    procs.push(p)
    return p
  }
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      for (const p of procs) p.kill()
      reject(new Error(`timed out after ${timeoutMs / 1000} s; children killed`))
    }, timeoutMs)
  })
  try {
    return await Promise.race([body(start), deadline])
  } finally {
    clearTimeout(timer)
    for (const p of procs) p.stop()
    const grace = setTimeout(() => { for (const p of procs) p.kill() }, 5000)
    await Promise.all(procs.map((p) => p.exited))
    clearTimeout(grace)
  }
}
