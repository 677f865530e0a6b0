// How the RPC server keeps at most `limit` calls running: a p-queue holds the
// calls that must wait and starts them as slots free up. While that queue is idle
// and a slot is free, a call starts at once without it: p-queue's bookkeeping per
// task (ids, a Symbol, a Map entry, events, three promises) costs about 1.6 µs,
// 40% of what the server spends on a small call (measured in benchmarks/rpc.ts's
// setting). The queue's concurrency is kept at the slots the direct calls leave,
// so the two together never exceed the limit.
import PQueue from 'p-queue'

/**
 * A task: it returns a promise if it goes on after returning, nothing if it is
 * done. It must handle its own errors (a throw or rejection is ignored here).
 */
export type LimitedTask = () => void | Promise<void>

export class CallLimiter {
  /** Tasks started without the queue and not yet done. */
  private direct = 0
  private readonly queue: PQueue
  private idleWaiters: Array<() => void> = []
  /** Gives back a slot taken with tryEnter(). */
  readonly leave = (): void => { this.done() }

  constructor (readonly limit: number) {
    this.queue = new PQueue({ concurrency: limit })
  }

  /** Tasks running now. */
  get running (): number { return this.direct + this.queue.pending }
  /** Tasks waiting for a slot. */
  get waiting (): number { return this.queue.size }

  /**
   * Takes a slot if one is free and nothing waits for one: the caller then runs
   * its task at once, without a closure, and calls leave() once it is done.
   */
  tryEnter (): boolean {
    const q = this.queue
    if (this.direct < this.limit && q.size === 0 && q.pending === 0) {
      this.direct++
      return true
    }
    return false
  }

  run (task: LimitedTask): void {
    if (this.tryEnter()) {
      // Run now; a task that finished before returning frees its slot at once.
      let pending: void | Promise<void>
      try {
        pending = task()
      } catch {
        pending = undefined
      }
      if (pending === undefined) this.done()
      else pending.then(this.leave, this.leave)
      return
    }
    this.resize()
    this.queue.add(task).catch(() => {})
  }

  /** Resolves once fewer than `n` tasks are waiting. */
  async waitingBelow (n: number): Promise<void> {
    await this.queue.onSizeLessThan(n)
  }

  /** Resolves once nothing runs and nothing waits. */
  async idle (): Promise<void> {
    for (;;) {
      await this.queue.onIdle()
      if (this.direct === 0 && this.queue.size === 0 && this.queue.pending === 0) return
      if (this.direct > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
    }
  }

  private done (): void {
    this.direct--
    const q = this.queue
    if (q.size > 0 || q.pending > 0) this.resize()
    if (this.direct === 0 && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters
      this.idleWaiters = []
      for (const w of ws) w()
    }
  }

  /** Gives the queue the slots the direct tasks leave free (pausing it when there are none). */
  private resize (): void {
    const q = this.queue
    const free = this.limit - this.direct
    if (free <= 0) {
      if (!q.isPaused) q.pause()
      return
    }
    if (q.concurrency !== free) q.concurrency = free
    if (q.isPaused) q.start()
  }
}
