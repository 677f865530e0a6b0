// Starting children and making sure they end: every child is killed when its run's
// deadline passes, when the run is over, or when the harness itself exits.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ChildSpec, ToChild, ToParent } from './child.ts'
import type { Harness, ReadyInfo, RoleHandle, RoleResult } from './types.ts'

export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const REPO_ROOT = resolve(BENCH_DIR, '..')
const CHILD_FILE = join(BENCH_DIR, 'harness', 'child.ts')

const live = new Set<ChildProcess>()
function killAll (): void {
  for (const c of live) c.kill('SIGKILL')
}
process.on('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { killAll(); process.exit(130) })
}

export class RunError extends Error {}

function quiet<T> (p: Promise<T>): Promise<T> {
  p.catch(() => {})
  return p
}

/** Starts `node [nodeArgs] --import tsx child.ts <spec>` with an IPC channel. */
export function spawnRole (spec: ChildSpec, nodeArgs: string[] = []): RoleHandle & { kill(): void } {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', CHILD_FILE, JSON.stringify(spec)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  live.add(child)
  const name = `${spec.role} (${spec.implFile.slice(BENCH_DIR.length + 1)})`
  let onReady!: (i: ReadyInfo) => void
  let failReady!: (e: Error) => void
  let onResult!: (r: RoleResult) => void
  let failResult!: (e: Error) => void
  const ready = quiet(new Promise<ReadyInfo>((resolve, reject) => { onReady = resolve; failReady = reject }))
  const result = quiet(new Promise<RoleResult>((resolve, reject) => { onResult = resolve; failResult = reject }))
  let failure: Error | undefined
  child.on('message', (m: ToParent) => {
    if (m.type === 'ready') onReady(m.info)
    else if (m.type === 'result') onResult(m.result)
    else if (m.type === 'error') {
      failure = new RunError(`${name} failed: ${m.message}`)
      failReady(failure)
      failResult(failure)
    }
  })
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child)
      const e = failure ?? new RunError(`${name} exited (${signal ?? `code ${code}`}) before reporting`)
      failReady(e)
      failResult(e)
      resolve()
    })
  })
  child.once('error', (err) => {
    const e = new RunError(`${name} could not start: ${err.message}`)
    failReady(e)
    failResult(e)
  })
  return {
    pid: child.pid,
    ready,
    result,
    exited,
    stop () {
      if (child.connected) child.send({ type: 'stop' } satisfies ToChild, () => {})
    },
    kill () { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }
  }
}

export interface SessionOptions {
  implFile: string
  quick: boolean
  /** Every child of the session is killed this long after the session starts. */
  timeoutMs: number
  /** Write a V8 CPU profile of every child into this directory (node --cpu-prof). */
  profileDir?: string | undefined
  /** Names the profiles: <tag>-<role>-<n>.cpuprofile */
  tag?: string | undefined
  /** Extra node flags for every child, e.g. --trace-gc. */
  nodeArgs?: string[] | undefined
}

let profileSeq = 0

/**
 * Runs `body` with a Harness whose children all end when it finishes: they are asked
 * to stop, then killed if still alive a few seconds later. If the deadline passes
 * first, the children are killed and the session rejects.
 */
export async function session<T> (opts: SessionOptions, body: (h: Harness) => Promise<T>): Promise<T> {
  const handles: Array<ReturnType<typeof spawnRole>> = []
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-bench-'))
  const h: Harness = {
    quick: opts.quick,
    tmpdir: dir,
    spawn (role, args) {
      const nodeArgs = [...(opts.nodeArgs ?? [])]
      if (opts.profileDir !== undefined) {
        // One directory per child: tsx's module loader runs in a worker thread that writes a
        // profile of its own, and a fixed --cpu-prof-name would let it overwrite the main
        // thread's. The main thread's file has thread id 0 in its name (CPU.<date>.<time>.<pid>.0.<seq>).
        nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${join(opts.profileDir, `${opts.tag ?? 'bench'}-${role}-${++profileSeq}`)}`)
      }
      const handle = spawnRole({ implFile: opts.implFile, role, args }, nodeArgs)
      handles.push(handle)
      return handle
    }
  }
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      for (const x of handles) x.kill()
      reject(new RunError(`timed out after ${opts.timeoutMs / 1000} s; children killed`))
    }, opts.timeoutMs)
  })
  try {
    return await Promise.race([body(h), deadline])
  } finally {
    clearTimeout(timer)
    for (const x of handles) x.stop()
    const grace = setTimeout(() => { for (const x of handles) x.kill() }, 5000)
    await Promise.all(handles.map((x) => x.exited))
    clearTimeout(grace)
    await rm(dir, { recursive: true, force: true })
  }
}

/** Rejects when `p` rejects; never resolves. For failing fast on a peer that dies. */
export function failureOf (p: Promise<unknown>): Promise<never> {
  return quiet(p.then(() => new Promise<never>(() => {})))
}
