// S4 for snakemq: persistent queues. `count` persistent 16-byte messages are sent
// with the receiver absent, all sends in flight at once (issue all, then await),
// into a LevelStore; the sending process then exits and a new one starts from the
// same store directory and drains the queue to a receiver. The same run can time
// the in-memory path (non-persistent sends, drained by the same process once the
// receiver is reachable) and the store with `sync: true`.
//
// `s4` and `s4Roles` are meant to be wired into benchmarks/impl/snakemq.ts
// (`s4`, and `roles: { ...s4Roles }`); the default export runs them on their own
// (benchmarks/persist.ts uses it). The library is imported inside the roles, not
// at the top: the harness process imports this module too.
import type { Harness, Impl, RoleControl, RoleFn, S4Params, S4Result } from '../harness/types.ts'
import { HOST } from '../harness/types.ts'
import type { Messaging } from '../../src/index.ts'

/** Which path a run times. */
export type S4Mode = 'persistent' | 'persistent-sync' | 'memory'

/** Everything one run measured. Times are wall-clock ms since the epoch, comparable across processes on one host. */
export interface S4Figures {
  mode: S4Mode
  count: number
  /**
   * Sends per second, from the first send() to the last one resolving (persistent:
   * written to LevelDB), in a process that had run nothing before (JIT cold).
   */
  enqueuePerS: number
  /** The same, measured again right after in the same process, into a fresh Messaging and store. */
  warmEnqueuePerS: number
  /** LevelDB batches the cold enqueue took (group commit); NaN for memory. */
  batches: number
  /**
   * Seconds until the receiver got the last message. Persistent: from the restarted
   * process opening its store (store open and load included, Node and tsx start-up
   * not, nor importing the library). Memory: from the connect, with the messages
   * queued in the same process.
   */
  drainS: number
  /** Persistent: ms to open the store and load the queue (the library's modules already imported). */
  loadMs: number
  /** Persistent: seconds from the restarted process's start (Node and tsx start-up included) to the last message received. */
  restartToDrainedS: number
}

const wallNow = (): number => performance.timeOrigin + performance.now()

async function drained (mq: Messaging, to: string): Promise<void> {
  if (mq.queued(to) === 0) return
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (mq.queued(to) !== 0) return
      mq.off('delivered', check)
      resolve()
    }
    mq.on('delivered', check)
  })
}

function num (args: Record<string, unknown>, key: string): number {
  const v = args[key]
  if (typeof v !== 'number') throw new Error(`missing numeric argument ${key}`)
  return v
}

const str = (args: Record<string, unknown>, key: string): string => {
  const v = args[key]
  if (typeof v !== 'string') throw new Error(`missing string argument ${key}`)
  return v
}

/** Rejects when `p` rejects; never resolves. */
function failureOf (p: Promise<unknown>): Promise<never> {
  const f = p.then(() => new Promise<never>(() => {}))
  f.catch(() => {})
  return f
}

/** Sends `count` messages of `size` bytes to the absent "receiver", all in flight, and times them. */
async function timedEnqueue (mq: Messaging, count: number, size: number, persistent: boolean): Promise<number> {
  await mq.ready()
  const t0 = performance.now()
  const sends = new Array<Promise<unknown>>(count)
  for (let i = 0; i < count; i++) {
    const data = Buffer.alloc(size)
    data.writeUInt32BE(i, 0)
    sends[i] = mq.send('receiver', data, { persistent })
  }
  await Promise.all(sends)
  return count / ((performance.now() - t0) / 1000)
}

export const s4Roles: Record<string, RoleFn> = {
  /**
   * Enqueues `messages` for the absent "receiver" twice, in fresh Messaging
   * instances: first in a process that has run nothing yet (cold; persistent: into
   * `dir`, the store the restarted sender drains), then again (warm; persistent:
   * into a throwaway store). Memory mode then connects the second one to `port`
   * and drains it.
   */
  async s4Enqueue (args) {
    const { Link, Messaging } = await import('../../src/index.ts')
    const { LevelStore } = await import('../../src/store/index.ts')
    const count = num(args, 'messages')
    const size = num(args, 'size')
    const persistent = args.persistent === true
    const sync = args.sync === true
    const figures = { coldPerS: NaN, warmPerS: NaN, batches: NaN, connectAt: NaN }
    for (const phase of ['cold', 'warm'] as const) {
      const store = persistent ? await LevelStore.open(str(args, 'dir') + (phase === 'warm' ? '-warm' : ''), { sync }) : undefined
      const link = new Link()
      const mq = new Messaging(link, { identity: 'sender', ...(store !== undefined ? { store } : {}) })
      const batchesBefore = store?.batchesWritten ?? 0
      const perS = await timedEnqueue(mq, count, size, persistent)
      if (phase === 'cold') {
        figures.coldPerS = perS
        if (store !== undefined) figures.batches = store.batchesWritten - batchesBefore
      } else {
        figures.warmPerS = perS
        if (typeof args.port === 'number') {
          figures.connectAt = wallNow()
          link.connect({ host: HOST, port: args.port, reconnect: { minDelay: 20, maxDelay: 200 } })
          await drained(mq, 'receiver')
        }
      }
      await mq.close()
    }
    return figures
  },

  /** The restarted sender: opens the store in `dir`, connects to `port`, drains. */
  async s4Drain (args) {
    const { Link, Messaging } = await import('../../src/index.ts')
    const { LevelStore } = await import('../../src/store/index.ts')
    const openAt = wallNow()
    const store = await LevelStore.open(str(args, 'dir'), { sync: args.sync === true })
    const link = new Link()
    const mq = new Messaging(link, { identity: 'sender', store })
    link.connect({ host: HOST, port: num(args, 'port'), reconnect: { minDelay: 20, maxDelay: 200 } })
    await mq.ready()
    const readyAt = wallNow()
    const loaded = mq.queued('receiver')
    await drained(mq, 'receiver')
    await mq.close()
    return { openAt, loadMs: readyAt - openAt, loaded, processStart: performance.timeOrigin }
  },

  /** Listens, hands every message to ctl.deliver, notes when the last arrived, and stays up (acknowledging) until stopped. */
  async s4Receive (_args, ctl: RoleControl) {
    const { Link, Messaging } = await import('../../src/index.ts')
    const link = new Link()
    const { port } = await link.listen({ host: HOST, port: 0 })
    const mq = new Messaging(link, { identity: 'receiver' })
    ctl.ready({ port })
    let lastAt = NaN
    for await (const m of mq.messages()) {
      if (ctl.deliver(m.data)) { lastAt = wallNow(); break }
    }
    if (!ctl.stop.aborted) await new Promise((resolve) => ctl.stop.addEventListener('abort', resolve, { once: true }))
    await mq.close()
    return { lastAt }
  }
}

interface EnqueueValue { coldPerS: number, warmPerS: number, batches: number, connectAt: number }
interface DrainValue { openAt: number, loadMs: number, loaded: number, processStart: number }
interface ReceiveValue { lastAt: number }

/** One run of one mode, in fresh child processes. */
export async function runS4 (h: Harness, params: S4Params, mode: S4Mode): Promise<S4Figures> {
  const { count, size } = params
  if (mode === 'memory') {
    const rx = h.spawn('s4Receive', { count, size })
    const { port } = await rx.ready
    const tx = h.spawn('s4Enqueue', { messages: count, size, persistent: false, port })
    const sent = (await Promise.race([tx.result, failureOf(rx.result)])).value as EnqueueValue
    rx.stop()
    const got = (await rx.result).value as ReceiveValue
    return {
      mode, count, enqueuePerS: sent.coldPerS, warmEnqueuePerS: sent.warmPerS, batches: NaN,
      drainS: (got.lastAt - sent.connectAt) / 1000, loadMs: NaN, restartToDrainedS: NaN
    }
  }
  const sync = mode === 'persistent-sync'
  const dir = `${h.tmpdir}/store-${mode}`
  const enqueue = h.spawn('s4Enqueue', { messages: count, size, persistent: true, sync, dir })
  const sent = (await enqueue.result).value as EnqueueValue
  enqueue.stop()
  await enqueue.exited
  const rx = h.spawn('s4Receive', { count, size })
  const { port } = await rx.ready
  const tx = h.spawn('s4Drain', { dir, port, sync })
  const restarted = (await Promise.race([tx.result, failureOf(rx.result)])).value as DrainValue
  if (restarted.loaded !== count) throw new Error(`the restarted sender loaded ${restarted.loaded} of ${count} messages`)
  rx.stop()
  const got = (await rx.result).value as ReceiveValue
  return {
    mode,
    count,
    enqueuePerS: sent.coldPerS,
    warmEnqueuePerS: sent.warmPerS,
    batches: sent.batches,
    drainS: (got.lastAt - restarted.openAt) / 1000,
    loadMs: restarted.loadMs,
    restartToDrainedS: (got.lastAt - restarted.processStart) / 1000
  }
}

/** The harness's S4: persistent enqueue rate, and the drain after a restart. */
export async function s4 (h: Harness, params: S4Params): Promise<S4Result> {
  const f = await runS4(h, params, 'persistent')
  return { enqueue_per_s: f.enqueuePerS, drain_s: f.drainS }
}

const impl: Impl = { s4, roles: s4Roles }
export default impl
