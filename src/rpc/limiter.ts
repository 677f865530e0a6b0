// How the RPC server shares its slots: at most `limit` calls run at once, and
// at most `perPeer` of them for one peer, so a peer whose calls hang cannot
// take every slot. Calls that must wait queue per peer and are started in turns,
// one peer after the other, on a p-queue that runs them. A slot is given back
// when its call is done, or at the call's deadline if that comes first (its
// caller gave up, or its method ran out of time): the method may go on, but it
// holds nothing any more. While nothing waits and a slot is free, a call starts
// at once without the queue (its bookkeeping per task costs more than a small call).
import PQueue from 'p-queue'

/**
 * A task: it returns a promise if it goes on after returning, nothing if it is
 * done. It must handle its own errors (a throw or rejection is ignored here).
 */
export type LimitedTask = () => void | Promise<void>

interface Waiting { task: LimitedTask, deadline: number, expired: (() => void) | undefined }

/** Entries of peers with nothing running or waiting kept for their next call. */
const IDLE_PEERS_KEPT = 256

interface PeerSlots {
  running: number
  waiting: Waiting[]
  head: number
}

export class CallLimiter {
  private runningCount = 0
  private waitingCount = 0
  private readonly peers = new Map<string, PeerSlots>()
  /** Peers with calls waiting, in the order they get their next turn. */
  private turns: string[] = []
  private readonly queue: PQueue
  private idleWaiters: Array<() => void> = []
  private belowWaiters: Array<{ n: number, resolve: () => void }> = []

  constructor (readonly limit: number, readonly perPeer: number = Math.max(1, Math.ceil(limit / 2))) {
    this.queue = new PQueue({ concurrency: limit })
  }

  /** Tasks holding a slot now. */
  get running (): number { return this.runningCount }
  /** Tasks waiting for a slot. */
  get waiting (): number { return this.waitingCount }

  private slots (peer: string): PeerSlots {
    let s = this.peers.get(peer)
    if (s === undefined) { s = { running: 0, waiting: [], head: 0 }; this.peers.set(peer, s) }
    return s
  }

  /**
   * Takes a slot for `peer` if one is free and nothing waits: the caller then
   * runs its task at once and gives the slot back with leave(peer), or track().
   */
  tryEnter (peer: string): boolean {
    if (this.runningCount >= this.limit || this.waitingCount > 0) return false
    const s = this.slots(peer)
    if (s.running >= this.perPeer) return false
    s.running++
    this.runningCount++
    return true
  }

  /** Gives back a slot taken with tryEnter(). */
  leave (peer: string): void {
    const s = this.peers.get(peer)
    if (s === undefined || s.running === 0) return
    s.running--
    this.runningCount--
    // An idle peer's entry is kept while there are few (the next call reuses it), and dropped past IDLE_PEERS_KEPT.
    if (s.running === 0 && s.waiting.length === s.head && this.peers.size > IDLE_PEERS_KEPT) this.peers.delete(peer)
    this.next()
    this.wakeIdle()
  }

  /**
   * The task that took `peer`'s slot returned `pending`: the slot goes back
   * when it settles, or at `deadline` (ms since the epoch) if that is sooner.
   */
  track (peer: string, pending: Promise<void>, deadline: number): void {
    let held = true
    let timer: ReturnType<typeof setTimeout> | undefined
    const release = (): void => {
      if (!held) return
      held = false
      if (timer !== undefined) clearTimeout(timer)
      this.leave(peer)
    }
    pending.then(release, release)
    if (deadline !== Infinity) timer = setTimeout(release, Math.max(0, deadline - Date.now()))
  }

  /**
   * Runs `task` for `peer` when a slot is free for it; dropped unrun if
   * `deadline` passes while it waits, and then `expired` is called.
   */
  run (peer: string, task: LimitedTask, deadline = Infinity, expired?: () => void): void {
    if (this.tryEnter(peer)) { this.start(peer, task, deadline); return }
    const s = this.slots(peer)
    if (s.waiting.length === s.head) this.turns.push(peer)
    s.waiting.push({ task, deadline, expired })
    this.waitingCount++
    this.next()
  }

  private start (peer: string, task: LimitedTask, deadline: number): void {
    let pending: void | Promise<void>
    try {
      pending = task()
    } catch {
      pending = undefined
    }
    if (pending === undefined) this.leave(peer)
    else this.track(peer, pending, deadline)
  }

  /** Starts waiting tasks while slots are free, taking peers in turn. */
  private next (): void {
    // Peers passed over in a row because they are at their own limit: once all are, nothing can start.
    let passed = 0
    while (this.runningCount < this.limit && this.turns.length > 0 && passed < this.turns.length) {
      const peer = this.turns.shift()!
      const s = this.peers.get(peer)!
      if (s.running >= this.perPeer) { this.turns.push(peer); passed++; continue }
      passed = 0
      const w = s.waiting[s.head]!
      s.waiting[s.head++] = undefined as unknown as Waiting
      this.waitingCount--
      if (s.head === s.waiting.length) { s.waiting = []; s.head = 0 } else this.turns.push(peer)
      this.wakeBelow()
      // Its caller gave up while it waited: it is not run at all.
      if (w.deadline <= Date.now()) {
        if (s.running === 0 && s.waiting.length === 0) this.peers.delete(peer)
        try {
          w.expired?.()
        } catch {
          // Its own errors are the caller's to handle, as a task's.
        }
        this.wakeIdle()
        continue
      }
      s.running++
      this.runningCount++
      void this.queue.add(() => { this.start(peer, w.task, w.deadline) })
    }
  }

  /** Resolves once fewer than `n` tasks are waiting. */
  async waitingBelow (n: number): Promise<void> {
    if (this.waitingCount < n) return
    await new Promise<void>((resolve) => { this.belowWaiters.push({ n, resolve }) })
  }

  /** Resolves once nothing runs and nothing waits. */
  async idle (): Promise<void> {
    if (this.runningCount === 0 && this.waitingCount === 0) return
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
  }

  private wakeBelow (): void {
    if (this.belowWaiters.length === 0) return
    const keep: typeof this.belowWaiters = []
    for (const w of this.belowWaiters) {
      if (this.waitingCount < w.n) w.resolve()
      else keep.push(w)
    }
    this.belowWaiters = keep
  }

  private wakeIdle (): void {
    if (this.runningCount !== 0 || this.waitingCount !== 0 || this.idleWaiters.length === 0) return
    const ws = this.idleWaiters
    this.idleWaiters = []
    for (const w of ws) w()
  }
}
