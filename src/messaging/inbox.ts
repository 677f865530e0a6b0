// The receive side: received messages wait here until a consumer takes them.
// Consumers (each `messages()` call) may filter by data prefix or predicate:
// a message goes to every filtered consumer that wants it, or, if none does,
// to every consumer without a filter, so RPC and the application share one
// Messaging without taking each other's messages. A message counts as received,
// and is acknowledged to its sender, once every consumer it went to is done with it.
import { AlreadyIteratingError } from '../errors.ts'
import { utf8 } from '../bytes.ts'
import { FLAG_PERSISTENT, TTL_INFINITE } from '../transforms/frames.ts'
import { uuidHex } from './uuid.ts'
import type { Message, MessagesOptions } from './types.ts'
import type { Logger } from '../logging.ts'
import type { DedupWindow } from './dedup.ts'
import { settleFields } from '../settle.ts'
import { INSPECT } from '../logging.ts'

/** Counts the consumers still holding a message; the last one acknowledges it. */
interface AckTracker { ackRefs: number, ackDone: boolean, ackShared: boolean }

export class InboundMessage implements Message {
  /** @internal The message whose counts this one shares: itself, unless it is a copy for a second consumer. */
  tracker: AckTracker = this
  /** @internal */
  ackRefs = 1
  /** @internal */
  ackDone = false
  /** @internal */
  ackShared = false
  private acked = false
  private hex: string | null = null
  /** @internal The manual-ack consumer that took it and has not acknowledged it yet. */
  holder: Consumer | null = null

  constructor (
    readonly from: string,
    readonly data: Uint8Array,
    /** @internal The received packet; the UUID's 16 bytes are at `uuidAt`. */
    readonly packet: Uint8Array,
    /** @internal */
    readonly uuidAt: number,
    /** @internal Where the sender's dedup window remembers it. */
    readonly ticket: number,
    /**
     * @internal That window (kept here: the peer's window may be replaced while this message waits);
     * null for a message sent with FLAG_UNACKED, which is neither filtered nor acknowledged.
     */
    readonly window: DedupWindow | null,
    private readonly wireTtl: number,
    readonly flags: number,
    private readonly inbox: Inbox
  ) {}

  /** The message UUID, 32 hex digits (made when first asked for: most receivers never do). */
  get uuid (): string {
    this.hex ??= uuidHex(this.packet, this.uuidAt)
    return this.hex
  }

  get ttl (): number | null { return this.wireTtl === TTL_INFINITE ? null : this.wireTtl }
  get persistent (): boolean { return (this.flags & FLAG_PERSISTENT) !== 0 }

  ack (): void {
    if (this.acked) return
    this.acked = true
    if (this.holder !== null) { this.holder.acknowledged(this); this.holder = null }
    this.inbox.release(this)
  }

  /**
   * @internal Its consumer left without acknowledging it: a fresh copy goes to the
   * next consumer, and this object's late ack() is ignored (it is no longer its to give).
   */
  handBack (): InboundMessage {
    this.acked = true
    this.holder = null
    if (this.tracker.ackShared) return this
    return new InboundMessage(this.from, this.data, this.packet, this.uuidAt, this.ticket, this.window, this.wireTtl, this.flags, this.inbox)
  }

  /** @internal A copy for a second consumer, sharing the acknowledgement. */
  share (): InboundMessage {
    const m = new InboundMessage(this.from, this.data, this.packet, this.uuidAt, this.ticket, this.window, this.wireTtl, this.flags, this.inbox)
    m.tracker = this.tracker
    return m
  }

  toJSON (): object {
    return { from: this.from, uuid: this.uuid, ttl: this.ttl, flags: this.flags, length: this.data.byteLength }
  }

  /** console.log(msg) shows the fields of Message, not the packet, the duplicate window and the inbox it holds. */
  [INSPECT] (depth: number, options: object, inspect: (value: unknown, options: object) => string): string {
    if (depth < 0) return '[Message]'
    const { from, uuid, ttl, persistent, flags, data } = this
    return `Message ${inspect({ from, uuid, ttl, persistent, flags, data }, options)}`
  }

  // The fields a message changes after it is made are settled as variable here,
  // once, before anything is compiled (see settle.ts; a message is made per
  // message received, too often to settle each): the first acknowledged message
  // otherwise threw away the optimized constructor.
  static {
    settleFields(new InboundMessage('', new Uint8Array(0), new Uint8Array(0), 0, -1, null, 0, 0, null as unknown as Inbox),
      'tracker', 'ackRefs', 'ackDone', 'ackShared', 'acked', 'hex', 'holder')
  }
}

function toPrefix (p: Uint8Array | string | undefined): Uint8Array | null {
  if (p === undefined) return null
  return typeof p === 'string' ? utf8(p) : p
}

function startsWith (data: Uint8Array, prefix: Uint8Array): boolean {
  if (data.length < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (data[i] !== prefix[i]) return false
  return true
}

/**
 * A consumer that is called with each message, synchronously as it is
 * received, instead of being iterated (RPC's way in: no promise per message). The
 * message counts as received once the handler returns (auto acknowledgement).
 */
export interface MessageHandler {
  (m: Message): void
}

/** `then` on a settled promise: a microtask without the async-context tracking of queueMicrotask. */
const SETTLED = Promise.resolve()

/**
 * One `messages()` iteration, or one handler (see MessageHandler), or, with
 * `batchMax` > 0, one `messages({ batch })` iteration (see MessageBatches).
 */
export class Consumer implements AsyncIterableIterator<Message> {
  private buffer: InboundMessage[] = []
  private head = 0
  private waiting: ((r: IteratorResult<Message>) => void) | null = null
  private last: InboundMessage | null = null
  /** A batch consumer's next() waiting for messages. */
  private waitingBatch: ((r: IteratorResult<Message[]>) => void) | null = null
  /** A batch consumer's last batch (auto acknowledgement): received once the next one is asked for, or the loop ends. */
  private lastBatch: InboundMessage[] | null = null
  /** A waiting batch is handed over on a microtask, so the rest of the chunk being read joins it. */
  private batchDue = false
  private ended = false
  private readonly prefix: Uint8Array | null
  private readonly filter: ((m: Message) => boolean) | null
  readonly manual: boolean
  /** Manual mode: taken and not yet acknowledged, in the order taken. */
  private readonly outstanding = new Set<InboundMessage>()
  private readonly onAbort: (() => void) | null = null
  private iterating = false
  /** A paused handler's messages wait in the buffer (and count against the receive buffer). */
  private handlerPaused = false

  constructor (
    private readonly inbox: Inbox,
    private readonly options: MessagesOptions,
    private readonly handler: MessageHandler | null = null,
    /** Called once when this consumer ends (its signal, the Messaging closing). */
    private readonly onEnd: (() => void) | null = null,
    /** The most messages a batch holds; 0 for a consumer of single messages. */
    private readonly batchMax = 0
  ) {
    if (handler !== null && options.ack === 'manual') throw new TypeError('a handler consumer acknowledges automatically')
    this.prefix = toPrefix(options.prefix)
    this.filter = options.filter ?? null
    this.manual = options.ack === 'manual'
    const signal = options.signal
    if (signal !== undefined) {
      this.onAbort = () => { this.end() }
      signal.addEventListener('abort', this.onAbort, { once: true })
    }
    settleFields(this, 'buffer', 'head', 'ended', 'waiting', 'waitingBatch')
  }

  get filtered (): boolean { return this.prefix !== null || this.filter !== null }
  get size (): number { return this.buffer.length - this.head }
  get isEnded (): boolean { return this.ended }

  matches (m: InboundMessage): boolean {
    if (this.prefix !== null && !startsWith(m.data, this.prefix)) return false
    if (this.filter === null) return true
    try {
      return this.filter(m)
    } catch (err) {
      this.inbox.log.warn('a messages() filter threw; the message is not routed to it', { error: err as Error })
      return false
    }
  }

  /** @internal Hands a message to this consumer. */
  push (m: InboundMessage): void {
    if (this.handler !== null && !this.handlerPaused && this.head === this.buffer.length) {
      this.handle(m)
      return
    }
    const w = this.waiting
    if (w !== null) {
      this.waiting = null
      this.take(m)
      w({ value: m, done: false })
      return
    }
    this.buffer.push(m)
    this.inbox.buffered++
    this.inbox.bufferedBytes += m.data.byteLength
    if (this.waitingBatch !== null && !this.batchDue) {
      this.batchDue = true
      void SETTLED.then(this.handOverBatch)
    }
  }

  /** A waiting batch next() gets what arrived meanwhile (a whole chunk's messages, typically). */
  private readonly handOverBatch = (): void => {
    this.batchDue = false
    const w = this.waitingBatch
    if (w === null || this.head === this.buffer.length) return
    this.waitingBatch = null
    w({ value: this.takeBatch(), done: false })
  }

  /** After messages were taken from the front of the buffer: drops the taken part once it is all of it, or large. */
  private trimBuffer (): void {
    if (this.head === this.buffer.length) { this.buffer = []; this.head = 0 } else if (this.head > 4096) { this.buffer = this.buffer.slice(this.head); this.head = 0 }
  }

  /** Takes up to batchMax messages from the buffer, in order. */
  private takeBatch (): InboundMessage[] {
    const n = Math.min(this.batchMax, this.buffer.length - this.head)
    let out: InboundMessage[]
    if (this.head === 0 && n === this.buffer.length) {
      out = this.buffer
      this.buffer = []
    } else {
      out = this.buffer.slice(this.head, this.head + n)
      this.head += n
      this.trimBuffer()
    }
    for (const m of out) {
      this.inbox.taken(m)
      if (this.manual) this.take(m)
    }
    if (!this.manual) this.lastBatch = out
    return out
  }

  /** What the loop holds (auto acknowledgement) counts as received: the last message, or the last batch. */
  private releaseLast (): void {
    if (this.last !== null) { const l = this.last; this.last = null; l.ack() }
    const b = this.lastBatch
    if (b !== null) {
      this.lastBatch = null
      for (const m of b) m.ack()
    }
  }

  /** @internal next() of a batch consumer (MessageBatches). */
  nextBatch (): Promise<IteratorResult<Message[]>> {
    this.releaseLast()
    if (this.head < this.buffer.length) return Promise.resolve({ value: this.takeBatch(), done: false })
    if (this.ended) return Promise.resolve({ value: undefined, done: true })
    if (this.waitingBatch !== null) return Promise.reject(new AlreadyIteratingError('next() called again before the previous call settled'))
    return new Promise((resolve) => { this.waitingBatch = resolve })
  }

  private take (m: InboundMessage): void {
    if (!this.manual) { this.last = m; return }
    m.holder = this
    this.outstanding.add(m)
  }

  /** @internal */
  acknowledged (m: InboundMessage): void { this.outstanding.delete(m) }

  private handle (m: InboundMessage): void {
    try {
      this.handler!(m)
    } catch (err) {
      this.inbox.log.error('a message handler threw; the message counts as received', { from: m.from, error: err as Error })
    }
    m.ack()
  }

  /** @internal A handler consumer stops being called; what arrives meanwhile waits in its buffer. */
  pause (): void { this.handlerPaused = true }

  /** @internal A paused handler consumer is called again, first with what waited. */
  resume (): void {
    if (this.handler === null || !this.handlerPaused) return
    this.handlerPaused = false
    while (!this.handlerPaused && !this.ended && this.head < this.buffer.length) {
      const m = this.buffer[this.head++]!
      if (this.head === this.buffer.length) { this.buffer = []; this.head = 0 }
      this.inbox.taken(m)
      this.handle(m)
    }
  }

  next (): Promise<IteratorResult<Message>> {
    this.releaseLast()
    if (this.head < this.buffer.length) {
      const m = this.buffer[this.head++]!
      this.trimBuffer()
      this.inbox.taken(m)
      this.take(m)
      return Promise.resolve({ value: m, done: false })
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true })
    if (this.waiting !== null) return Promise.reject(new AlreadyIteratingError('next() called again before the previous call settled'))
    return new Promise((resolve) => { this.waiting = resolve })
  }

  /** Leaving the loop: the last message taken counts as received; the ones not taken go back to the inbox. */
  async return (): Promise<IteratorResult<Message>> {
    this.releaseLast()
    this.end()
    return { value: undefined, done: true }
  }

  /** @internal The Messaging is closing: the message the loop holds counts as received (as when leaving the loop). */
  close (): void {
    this.releaseLast()
    this.end()
  }

  /** @internal Ends the iteration; messages not taken are routed again. */
  end (): void {
    if (this.ended) return
    this.ended = true
    if (this.onAbort !== null) this.options.signal?.removeEventListener('abort', this.onAbort)
    const buffered = this.buffer.slice(this.head)
    this.inbox.buffered -= buffered.length
    for (const m of buffered) this.inbox.bufferedBytes -= m.data.byteLength
    this.buffer = []
    this.head = 0
    // With manual acks, what was taken but never acknowledged is handed back too
    // (a stream adapter's read-ahead, a loop left early): nothing is lost.
    const left = this.outstanding.size > 0 ? [...[...this.outstanding].map((m) => m.handBack()), ...buffered] : buffered
    this.outstanding.clear()
    this.inbox.remove(this, left)
    const w = this.waiting
    this.waiting = null
    w?.({ value: undefined, done: true })
    const wb = this.waitingBatch
    this.waitingBatch = null
    wb?.({ value: undefined, done: true })
    this.onEnd?.()
  }

  [Symbol.asyncIterator] (): this {
    if (this.handler !== null) throw new TypeError('a handler consumer is not iterated')
    if (this.iterating) throw new AlreadyIteratingError('this messages() iterator is already being iterated; call messages() again for another consumer')
    this.iterating = true
    return this
  }
}

/**
 * `messages({ batch })`: the messages of one consumer in arrays, each what has
 * arrived since the last one (at least one message, at most the batch size), so
 * a loop awaits once per batch instead of once per message.
 */
export class MessageBatches implements AsyncIterableIterator<Message[]> {
  constructor (private readonly consumer: Consumer) {}
  next (): Promise<IteratorResult<Message[]>> { return this.consumer.nextBatch() }
  /** Leaving the loop: the last batch counts as received (auto acknowledgement); what was not taken goes back to the inbox. */
  async return (): Promise<IteratorResult<Message[]>> {
    await this.consumer.return()
    return { value: undefined, done: true }
  }

  [Symbol.asyncIterator] (): this {
    this.consumer[Symbol.asyncIterator]()
    return this
  }
}

export class Inbox {
  private consumers: Consumer[] = []
  /** Messages no consumer has asked for (yet). */
  private unrouted: InboundMessage[] = []
  private unroutedBytes = 0
  /** Messages waiting in consumers' buffers. */
  buffered = 0
  /** Bytes of message data waiting in consumers' buffers. */
  bufferedBytes = 0
  private roomWaiters: Array<() => void> = []
  private closed = false
  /**
   * An unfiltered consumer has been made: the application reads its messages
   * (not RPC alone), so one that none of the consumers there now takes is kept
   * for its next loop instead of being dropped (see dispatch()).
   */
  private readsAll = false
  /** Unrouted messages past the receive buffer that could not be set aside wait, and stop the sockets (see full). */
  private stuck = false

  constructor (
    private readonly limit: number,
    /** Bytes of data held past which the inbox is full too, whatever the count. */
    private readonly byteLimit: number,
    /** Called once a message is fully received: acknowledge it to its sender. */
    private readonly onReceived: (m: InboundMessage) => void,
    readonly log: Logger,
    /**
     * A message no consumer takes, past the receive buffer, while the
     * application is between two loops: let go of unacknowledged, for its sender
     * to send again once the application reads (true), or not possible (false:
     * it waits, and the sockets stop).
     */
    private readonly setAside: (m: InboundMessage) => boolean = () => false,
    /** An unfiltered consumer came: what was set aside can be sent again. */
    private readonly onReader: () => void = () => {}
  ) {}

  /**
   * Full: stop reading the sockets. Messages waiting for a consumer count; so do
   * unrouted ones while there is no consumer at all (the application has not
   * started reading), or while some past the receive buffer could not be set
   * aside (see dispatch()). Otherwise unrouted messages never stall the
   * sockets: the consumers there (RPC's) would stop getting what they take.
   */
  get full (): boolean {
    return this.buffered >= this.limit || this.bufferedBytes >= this.byteLimit ||
      ((this.consumers.length === 0 || this.stuck) && (this.unrouted.length >= this.limit || this.unroutedBytes >= this.byteLimit))
  }

  /** Resolves when there is room again (or the inbox is closed). */
  async room (): Promise<void> {
    if (!this.full || this.closed) return
    await new Promise<void>((resolve) => this.roomWaiters.push(resolve))
  }

  consumer (options: MessagesOptions, handler: MessageHandler | null = null, onEnd: (() => void) | null = null, batchMax = 0): Consumer {
    const c = new Consumer(this, options, handler, onEnd, batchMax)
    if (this.closed || options.signal?.aborted === true) { c.end(); return c }
    this.consumers.push(c)
    if (!c.filtered) this.readsAll = true
    this.stuck = false
    if (this.unrouted.length > 0) {
      const pending = this.unrouted
      this.unrouted = []
      this.unroutedBytes = 0
      for (const m of pending) this.dispatch(m)
    }
    if (!c.filtered) this.onReader()
    this.wakeRoom()
    return c
  }

  dispatch (m: InboundMessage): void {
    const cs = this.consumers
    // The common cases, one consumer without a filter or one whose filter takes
    // the message (RPC's), allocate nothing.
    if (cs.length === 1 && !cs[0]!.filtered) { cs[0]!.push(m); return }
    let first: Consumer | null = null
    let more: Consumer[] | null = null
    for (const c of cs) {
      if (!c.filtered || !c.matches(m)) continue
      if (first === null) first = c
      else (more ??= []).push(c)
    }
    if (first === null) {
      for (const c of cs) {
        if (c.filtered) continue
        if (first === null) first = c
        else (more ??= []).push(c)
      }
    }
    if (first === null) {
      this.unrouted.push(m)
      this.unroutedBytes += m.data.byteLength
      // Past the receive buffer, with consumers there that take none of these
      // (RPC's), which must not stall: while the application, which reads its
      // messages, is between two loops, the oldest is set aside
      // unacknowledged, for its sender to send again once it reads; where that
      // cannot be (a plain snakeMQ peer's message), the rest wait and the
      // sockets stop. A peer that has only ever read with filters (RPC alone)
      // drops it, as received. Before anyone reads, they wait.
      while (cs.length > 0 && (this.unrouted.length > this.limit || this.unroutedBytes > this.byteLimit)) {
        const old = this.unrouted[0]!
        if (this.readsAll && !this.setAside(old)) { this.stuck = true; break }
        this.unrouted.shift()
        this.unroutedBytes -= old.data.byteLength
        if (this.readsAll) continue
        this.log.warn('no consumer takes messages like this one: dropped', { from: old.from, uuid: old.uuid, bytes: old.data.byteLength })
        this.release(old)
      }
      return
    }
    if (more === null) { first.push(m); return }
    m.tracker.ackRefs = 1 + more.length
    m.tracker.ackShared = true
    first.push(m)
    for (const c of more) c.push(m.share())
  }

  /** A consumer took a message from its buffer. */
  taken (m: InboundMessage): void {
    this.buffered--
    this.bufferedBytes -= m.data.byteLength
    this.wakeRoom()
  }

  private wakeRoom (): void {
    if (this.roomWaiters.length > 0 && !this.full) {
      const ws = this.roomWaiters
      this.roomWaiters = []
      for (const w of ws) w()
    }
  }

  /** One consumer is done with a message. */
  release (m: InboundMessage): void {
    const t = m.tracker
    if (t.ackDone) return
    if (--t.ackRefs > 0) return
    t.ackDone = true
    this.onReceived(m)
  }

  /** A consumer left; what it had not taken is routed again. */
  remove (c: Consumer, left: InboundMessage[]): void {
    const i = this.consumers.indexOf(c)
    if (i >= 0) this.consumers.splice(i, 1)
    for (const m of left) {
      // A copy other consumers also got: this consumer simply lets go of it.
      if (m.tracker.ackShared) this.release(m)
      else if (!this.closed) this.dispatch(m)
    }
    this.wakeRoom()
  }

  close (): void {
    if (this.closed) return
    for (const c of [...this.consumers]) c.close()
    this.closed = true
    this.unrouted = []
    this.unroutedBytes = 0
    this.buffered = 0
    this.bufferedBytes = 0
    for (const w of this.roomWaiters) w()
    this.roomWaiters = []
  }
}
