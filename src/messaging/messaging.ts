// Messaging: identities, per-peer outgoing queues with TTL, acknowledged
// delivery with redelivery and duplicate filtering, persistence through a
// QueueStore, and received messages as async iterables. It sits on a Link and
// sees connections only as duplexes of bytes.
import type { LinkBase as Link } from '../link/link.ts'
import type { Connection } from '../link/connection.ts'
import { TypedEmitter } from '../events.ts'
import {
  AbortError, ClosedError, DuplicateIdentityError, RedundantConnectionError, InvalidArgumentError, MessageDroppedError, QueueFullError, StoreError,
  abortError, type DropReason
} from '../errors.ts'
import { FLAG_PERSISTENT, FLAG_UNACKED, NONCE_BYTES, messageDataAt, messageFlags, messageTtl } from '../transforms/frames.ts'
import { DEFAULT_MAX_PACKET_SIZE } from '../transforms/framing.ts'
import { debugLogger, type Logger } from '../logging.ts'
import { setImmediate } from '../immediate.ts'
import { utf8 } from '../bytes.ts'
import type { PeerClock, QueueStore, StoredMessage } from '../store/types.ts'
import { COPY_LIMIT, EntryState, Outbox, QueueEntry, QueueTotals, type DeliveryWaiter } from './outbox.ts'
import { Inbox, InboundMessage, MessageBatches, type Consumer, type MessageHandler } from './inbox.ts'
import { MAX_UNACKED_LIMIT, Session } from './session.ts'
import { ReceiveBudget } from './receive-budget.ts'
import { newUuid, uuidHex, uuidKey } from './uuid.ts'
import { DedupWindow, SEEN_DONE } from './dedup.ts'
import { StoreDeletes } from './store-deletes.ts'
import { checkIdentityCertificate } from '../link/certificate.ts'
import type {
  BatchMessagesOptions, DrainOptions, DrainResult, MessagingStats, PeerStats, StatsCounts, EventsOptions, KeepaliveOptions, Message, MessagesOptions, MessagingEvent, MessagingEventType, MessagingEvents, MessagingOptions,
  SendOptions, SendResult
} from './types.ts'
import { settleFields } from '../settle.ts'

/** snakeMQ cuts identities to 50 characters; we refuse longer ones instead of cutting them. */
export const MAX_IDENTITY_LENGTH = 50
/** maxUnfinishedBytes's default, in packets of maxPacketSize: four of the largest may arrive at once. */
const UNFINISHED_PER_PACKET = 4
/** How often the TTL clocks of connected peers are saved, so a crash costs at most this much TTL accounting. */
const CLOCK_SAVE_INTERVAL = 10_000

export const messagingDefaults = {
  keepalive: { interval: 10_000, wait: 10_000 },
  handshakeTimeout: 5000,
  maxPacketSize: DEFAULT_MAX_PACKET_SIZE,
  queueMessages: 100_000,
  queueBytes: 64 * 1024 * 1024,
  maxUnacked: 8192,
  receiveBuffer: 1024,
  receiveBufferBytes: 64 * 1024 * 1024,
  dedupWindow: 65_536,
  maxIdlePeers: 10_000,
  maxIdleWindowBytes: 64 * 1024 * 1024,
  persistentWindow: { messages: 4096, bytes: 4 * 1024 * 1024 }
} as const

/**
 * Queued and not yet sent to a connected peer, past which send() waits for the
 * connection to take more. Small, so what is queued or in flight stays young
 * (the scavenger copies every entry that outlives it): measured in S1, 2,048
 * gave 800k msg/s where 8,192 gave 690k, and the sender's CPU per message fell
 * from 1.6 to 1.35 µs.
 */
const PACE_MESSAGES = 2048
const PACE_BYTES = 8 * 1024 * 1024
/**
 * While the remote is what holds a paced queue up, one send in this many waits a
 * turn of the event loop (so acknowledgements get in); the others resolve at once.
 * A turn per send cost a third of a flooding sender's time in setImmediate and polls.
 */
const TURN_EVERY = 256
/**
 * With the acknowledgement window full, the remote counts as slower (send()
 * keeps to its pace) while its last acknowledgement is this recent, and as
 * stalled after (send() stops waiting for it, and the queue takes the backlog).
 * Without this, a receiver slower than its sender let the queue fill to its
 * limit: S1 held 80,000 messages on average at 2,000,000 messages, and a quarter
 * of the sender's time went to the collector.
 */
const ACK_STALL_MS = 100
/** Messages read ahead from the store at a restart, over all backlogs, before their peers connect. */
const PREFETCH_MESSAGES = 65_536

/** send()'s default options: one shared object instead of a new one per call. */
const NO_OPTIONS: SendOptions = Object.freeze({})

/** What events() streams by default, and all it can. */
const EVENT_TYPES: readonly MessagingEventType[] = ['connect', 'disconnect', 'delivered', 'drop', 'error']

/** Throws InvalidArgumentError for a send option outside its domain. */
function checkSendOptions (o: SendOptions): void {
  if (typeof o !== 'object' || o === null) throw new InvalidArgumentError('send: options must be an object')
  if (o.wait !== undefined && o.wait !== 'queued' && o.wait !== 'delivered') {
    throw new InvalidArgumentError(`send: wait must be 'queued' or 'delivered', got ${JSON.stringify(o.wait)}`)
  }
  if (o.whenFull !== undefined && o.whenFull !== 'wait' && o.whenFull !== 'reject') {
    throw new InvalidArgumentError(`send: whenFull must be 'wait' or 'reject', got ${JSON.stringify(o.whenFull)}`)
  }
  if (o.persistent !== undefined && typeof o.persistent !== 'boolean') {
    throw new InvalidArgumentError(`send: persistent must be a boolean, got ${typeof o.persistent}`)
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new InvalidArgumentError('send: signal must be an AbortSignal')
}

function positiveInt (value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(value)}`)
  return value
}

/** Checks the options; throws InvalidArgumentError naming the bad one. */
function verifyOptions (o: MessagingOptions): void {
  if (typeof o !== 'object' || o === null) {
    throw new InvalidArgumentError(`new Messaging(link, { identity }) takes an options object with this peer's identity, got ${typeof o === 'string' ? JSON.stringify(o) : String(o)}`)
  }
  if (typeof o.identity !== 'string' || o.identity.length === 0 || o.identity.length > MAX_IDENTITY_LENGTH) {
    throw new InvalidArgumentError(`identity must be a string of 1 to ${MAX_IDENTITY_LENGTH} characters`)
  }
  const ka = o.keepalive
  if (ka !== undefined && ka !== false && (typeof ka !== 'object' || ka === null || !(ka.interval > 0) || !(ka.wait > 0))) {
    throw new InvalidArgumentError('keepalive: interval and wait must be positive numbers of milliseconds, or keepalive false')
  }
}

/**
 * A peer: its identity, a queue of outgoing messages per remote peer, and the
 * messages received, on top of a Link. Messages are addressed by identity and
 * go out whenever their peer is connected, through whichever connection.
 *
 * ```ts
 * const link = new Link()
 * await link.listen({ port: 4000 })
 * const mq = new Messaging(link, { identity: 'bob' })
 * await mq.send('alice', 'hello', { ttl: 600 })
 * for await (const msg of mq.messages()) console.log(msg.from, msg.data)
 * ```
 */
export class Messaging extends TypedEmitter<MessagingEvents> implements AsyncDisposable {
  readonly identity: string
  readonly plain: boolean
  readonly maxPacketSize: number
  /** @internal What unfinished packets hold over all connections, and its limit (maxUnfinishedBytes). */
  readonly receiveBudget: ReceiveBudget
  readonly maxUnacked: number
  readonly keepalive: KeepaliveOptions | undefined
  readonly handshakeTimeout: number
  readonly log: Logger
  /** True when identities must be bound to the remotes' TLS certificates. */
  readonly bindIdentityToCertificate: boolean
  /** @internal This Messaging's nonce, announced to every remote (see SessionHost.nonce). */
  readonly nonce: Uint8Array = globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES))

  private readonly link: Link
  private readonly store: QueueStore | null
  private readonly queueMessages: number
  private readonly queueBytes: number
  private readonly dedupSize: number
  private readonly queues = new Map<string, Outbox>()
  private readonly totals: QueueTotals
  /** drain() was called: new sends are refused while the queues empty. */
  private draining = false
  /** Identified sessions by remote identity. */
  private readonly peers = new Map<string, Session<Connection>>()
  private readonly sessions = new Set<Session<Connection>>()
  private readonly dedup = new Map<string, DedupWindow>()
  /** Disconnected peers with nothing queued, longest gone first (see maxIdlePeers), each with the bytes of its duplicate window then. */
  private readonly idle = new Map<string, number>()
  private readonly maxIdlePeers: number
  /** The bytes of the duplicate windows of the peers in `idle`, and their limit (see maxIdleWindowBytes). */
  private idleWindowBytes = 0
  private readonly maxIdleWindowBytes: number
  private readonly expiryTimers = new Map<string, { timer: ReturnType<typeof setTimeout>, at: number }>()
  private readonly inbox: Inbox
  private readonly loaded: Promise<void>
  private isReady = false
  private loadError: Error | null = null
  private closing: Promise<void> | null = null
  private clockTimer: ReturnType<typeof setInterval> | null = null
  /** Deletes finished messages from the store, and keeps those it refuses for later (null without a store). */
  private readonly deletes: StoreDeletes | null
  private readonly clocksStored = new Set<string>()
  /** Peers with messages set aside unacknowledged while the application was between two loops (see setAside()). */
  private readonly setAsideFrom = new Set<string>()
  private readonly onConnection = (c: Connection): void => { this.accept(c) }

  constructor (link: Link, options: MessagingOptions) {
    super()
    if (typeof (link as Partial<Link> | null)?.claim !== 'function') throw new InvalidArgumentError('new Messaging(link, { identity }): the first argument must be a Link')
    verifyOptions(options)
    this.link = link
    this.identity = options.identity
    this.plain = options.plainSnakeMQ === true
    this.store = options.store ?? null
    this.log = options.logger ?? debugLogger('messaging')
    this.deletes = this.store === null ? null : new StoreDeletes(this.store, this.log)
    this.handshakeTimeout = positiveInt(options.handshakeTimeout, 'handshakeTimeout', messagingDefaults.handshakeTimeout)
    this.maxPacketSize = positiveInt(options.maxPacketSize, 'maxPacketSize', messagingDefaults.maxPacketSize)
    const maxUnfinished = positiveInt(options.maxUnfinishedBytes, 'maxUnfinishedBytes', UNFINISHED_PER_PACKET * this.maxPacketSize)
    if (maxUnfinished < this.maxPacketSize) {
      throw new InvalidArgumentError(`maxUnfinishedBytes (${maxUnfinished}) must be at least maxPacketSize (${this.maxPacketSize}): a packet of that size could never arrive`)
    }
    this.receiveBudget = new ReceiveBudget(maxUnfinished)
    this.queueMessages = positiveInt(options.queueLimits?.messages, 'queueLimits.messages', messagingDefaults.queueMessages)
    this.queueBytes = positiveInt(options.queueLimits?.bytes, 'queueLimits.bytes', messagingDefaults.queueBytes)
    this.maxUnacked = positiveInt(options.maxUnacked, 'maxUnacked', messagingDefaults.maxUnacked)
    if (this.maxUnacked > MAX_UNACKED_LIMIT) throw new InvalidArgumentError(`maxUnacked must be at most ${MAX_UNACKED_LIMIT}, got ${this.maxUnacked}`)
    this.dedupSize = positiveInt(options.dedupWindow, 'dedupWindow', messagingDefaults.dedupWindow)
    this.maxIdlePeers = positiveInt(options.maxIdlePeers, 'maxIdlePeers', messagingDefaults.maxIdlePeers)
    this.maxIdleWindowBytes = positiveInt(options.maxIdleWindowBytes, 'maxIdleWindowBytes', messagingDefaults.maxIdleWindowBytes)
    this.totals = new QueueTotals({
      messages: positiveInt(options.persistentWindow?.messages, 'persistentWindow.messages', messagingDefaults.persistentWindow.messages),
      bytes: positiveInt(options.persistentWindow?.bytes, 'persistentWindow.bytes', messagingDefaults.persistentWindow.bytes)
    })
    this.keepalive = options.keepalive === false ? undefined : options.keepalive ?? { ...messagingDefaults.keepalive }
    this.bindIdentityToCertificate = options.bindIdentityToCertificate === true
    this.inbox = new Inbox(
      positiveInt(options.receiveBuffer, 'receiveBuffer', messagingDefaults.receiveBuffer),
      positiveInt(options.receiveBufferBytes, 'receiveBufferBytes', messagingDefaults.receiveBufferBytes),
      (m) => { this.receivedByApp(m) },
      this.log,
      (m) => this.setAside(m),
      () => { this.refetch() }
    )
    // Everything checked: only now does this Messaging take the store and the link (both, or neither).
    options.store?.claim(this)
    try {
      link.claim(this)
    } catch (err) {
      options.store?.release(this)
      throw err
    }
    this.loaded = this.load()
    // The error reaches the application through ready() and send(), and is logged; unawaited it must not crash the process.
    this.loaded.catch(() => {})
    link.on('connection', this.onConnection)
    for (const c of link.takeUnclaimed()) this.accept(c)
    settleFields(this, 'draining', 'closing')
  }

  /** Resolves once queues are loaded from the store (at once without a store); rejects with StoreError if loading failed. */
  async ready (): Promise<void> { await this.loaded }

  /** Identities connected now. */
  connectedPeers (): string[] { return [...this.peers.values()].filter((s) => s.announced).map((s) => s.ident!) }

  /** True when a peer with this identity is connected now (its `connect` was emitted, its `disconnect` not yet). */
  isConnected (ident: string): boolean { return this.peers.get(ident)?.announced === true }

  /**
   * @internal For RPC, which speaks snakeMQ's own RPC format to plain snakeMQ
   * peers: true when `ident` is connected now over a connection that did not
   * agree on this library's extensions (the remote announced none, or this side
   * is `plainSnakeMQ`), false when it is connected with them, undefined when it
   * is not connected.
   */
  peerIsPlain (ident: string): boolean | undefined {
    const s = this.peers.get(ident)
    return s?.announced === true ? !s.acks : undefined
  }

  /** @internal The most data a message to `ident` may carry, from the maxPacketSize it announced: Infinity when it announced none or is not connected. */
  maxMessageData (ident: string): number {
    return this.peers.get(ident)?.maxMessageData ?? Infinity
  }

  /** Messages queued and not yet delivered: for one peer, or for all. */
  queued (ident?: string): number {
    if (ident !== undefined) return this.queues.get(ident)?.count ?? 0
    return this.totals.count
  }

  /**
   * Queues `data` for the peer `to` and delivers it as soon as that peer is
   * connected. By default the promise resolves once the message is queued (for a
   * persistent message: written to the store); with `wait: 'delivered'`, once the
   * peer acknowledged it. While the peer is connected but its connection is behind
   * (over 2,048 messages or 8 MiB queued and not yet sent), the promise also waits
   * until the connection has taken more, so a loop of `await send()` goes at the
   * connection's pace (a slower reader's too) instead of filling the queue to its
   * limit; a peer that acknowledges nothing for 100 ms does not hold it up. Data of up to
   * 1 KiB is copied; larger `data` is not: do not modify it afterwards.
   */
  send (to: string, data: Uint8Array | string, options: SendOptions = NO_OPTIONS): Promise<SendResult> {
    // The common case (ready, room in the queue, nothing to wait for or store) is
    // done here, without the frame an async function allocates on every call;
    // everything else, errors included, goes through sendSlow().
    const { ttl, wait, persistent, signal, whenFull } = options
    const q = this.queues.get(to)
    // Anything but the plain defaults (and values outside an option's domain, which it refuses) takes the checked path.
    if (q === undefined || !this.isReady || this.closing !== null || this.draining || (wait !== undefined && wait !== 'queued') || signal !== undefined ||
        (persistent !== undefined && (persistent !== false && (persistent !== true || this.store !== null))) ||
        (whenFull !== undefined && whenFull !== 'wait' && whenFull !== 'reject') || !(data instanceof Uint8Array)) {
      return this.sendSlow(to, data, options)
    }
    let ttlMs = Infinity
    if (ttl !== undefined && ttl !== null) {
      // 0 (drop unless connected) and anything not a number (NaN included) take the checked path.
      if (typeof ttl !== 'number' || !(ttl > 0 || ttl < 0)) return this.sendSlow(to, data, options)
      if (ttl > 0) ttlMs = ttl * 1000
    }
    const size = data.byteLength
    if (this.full(q, size)) return this.sendSlow(to, data, options)
    // While the peer is connected its offline clock stands still: no need to read the time.
    const expiry = ttlMs === Infinity ? Infinity : (q.connected ? q.clock.offline : q.offlineAt(Date.now())) + ttlMs
    const result = { uuid: q.add(data, expiry, persistent === true ? FLAG_PERSISTENT : 0) }
    if (!q.connected) {
      if (ttlMs !== Infinity) this.scheduleExpiry(q, expiry)
    } else if (this.mustPace(q, size)) {
      return this.pace(q, undefined).then(() => result)
    }
    return Promise.resolve(result)
  }

  /**
   * @internal Queues `data` for `to` like `send(to, data, { ttl })`, without a
   * promise: for RPC, which sends a message per call and has nothing to await,
   * and has nothing to acknowledge before it answers (so, with nothing in
   * flight, the message may be written at once).
   * Falls back on `send()` for anything but the common case; `onError(err, context)`
   * gets what it would have rejected with (a context rather than a closure: no
   * allocation per message). `ttl` in seconds, >= 0; undefined for none.
   *
   * `unacked`: the message is sent with FLAG_UNACKED (docs/PROTOCOL.md, 5.7):
   * it leaves the queue once written, the remote neither acknowledges it nor
   * filters its duplicates, and a connection lost with it on the way loses it.
   * For RPC, which resends its calls itself and recognizes repeats by request id.
   * Alone (nothing queued for `to`, nothing else to send), it is written at once,
   * or at the end of the chunk being read, without being queued: `data` is then
   * held until that chunk's end, so do not modify it.
   * Returns the queued entry, for withdraw(); null when it took the checked path
   * (not ready yet, a full queue, TTL 0), where it is queued later or refused.
   * `rejectWhenFull`: a full queue refuses it (QueueFullError to onError) rather than have it wait for room.
   */
  post<C> (to: string, data: Uint8Array, ttl: number | undefined, onError: (err: unknown, context: C) => void, context: C, unacked = false, rejectWhenFull = false): QueueEntry | null {
    const size = data.byteLength
    const flags = unacked ? FLAG_UNACKED : 0
    const q = this.isReady && this.closing === null && (ttl === undefined || ttl > 0) && to.length > 0 ? this.queueFor(to) : undefined
    if (q === undefined || this.full(q, size)) {
      // TTL 0 (only over the connection up now): once queued, it may still be
      // dropped, its connection gone first or the message too large for the peer;
      // onError hears of that too, as there is no entry to match a drop event with.
      const options: SendOptions = ttl === undefined ? (rejectWhenFull ? { whenFull: 'reject' } : NO_OPTIONS) : { ttl, wait: ttl === 0 ? 'delivered' : 'queued', whenFull: rejectWhenFull ? 'reject' : 'wait' }
      this.sendSlow(to, data, options, flags, true).catch((err: unknown) => { onError(err, context) })
      return null
    }
    const expiry = ttl === undefined ? Infinity : q.offlineAt(Date.now()) + ttl * 1000
    const entry = q.post(data, expiry, flags)
    if (!q.connected && expiry !== Infinity) this.scheduleExpiry(q, expiry)
    return entry
  }

  /** @internal For RPC: whether a message post() queued is still in its queue (not yet sent, dropped or expired). */
  stillQueued (entry: QueueEntry): boolean { return entry.state !== EntryState.Done }

  /**
   * @internal For RPC: takes back a message post() queued for `to`, if it has
   * not been written yet (a call whose caller gave up must not run late). True
   * when it was taken back; it is then gone without a `drop` event.
   */
  withdraw (to: string, entry: QueueEntry): boolean {
    const q = this.queues.get(to)
    if (q === undefined || entry.state !== EntryState.Queued || entry.stored) return false
    q.finish(entry)
    this.log.debug('a queued RPC request was taken back: its call ended before it was sent', { to })
    this.idleIfEmpty(q)
    return true
  }

  /**
   * send() for everything but its common case; `flags`: wire flags besides
   * FLAG_PERSISTENT (see post()); `internal`: post()'s (RPC replies still go out while draining).
   */
  private async sendSlow (to: string, data: Uint8Array | string, options: SendOptions, flags = 0, internal = false): Promise<SendResult> {
    if (this.closing !== null) throw new ClosedError('messaging is closed')
    if (this.draining && !internal) throw new ClosedError('messaging is draining: no new messages are taken')
    if (typeof to !== 'string' || to.length === 0) throw new InvalidArgumentError('send: the recipient must be a non-empty string')
    const bytes = typeof data === 'string' ? utf8(data) : data
    if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError('send: data must be a Uint8Array or a string')
    const { ttl, signal } = options
    if (ttl !== undefined && ttl !== null && (typeof ttl !== 'number' || Number.isNaN(ttl))) {
      throw new InvalidArgumentError(`send: ttl must be a number of seconds or null, got ${typeof ttl === 'string' ? JSON.stringify(ttl) : String(ttl)}`)
    }
    checkSendOptions(options)
    if (signal?.aborted === true) throw abortError(signal)
    if (!this.isReady) await this.loaded
    let q = this.queueFor(to)
    const ttlMs = ttl === undefined || ttl === null || ttl < 0 ? Infinity : ttl * 1000
    if (ttlMs === 0 && !q.connected) {
      const uuid = newUuid()
      this.emitDrop(to, uuid, 'not-connected')
      this.idleIfEmpty(q)
      throw new MessageDroppedError(to, uuid, 'not-connected')
    }
    const persistent = options.persistent === true
    const stored = persistent && this.store !== null
    // What a store keeps is bounded by its disk; the queue limits bound what is held in memory only.
    if (!stored && this.full(q, bytes.byteLength)) {
      await this.waitForRoom(q, bytes.byteLength, options)
      // Its messages may have expired meanwhile, and the emptied queue been forgotten.
      q = this.queueFor(to)
    }
    const entry = QueueEntry.create(bytes, q.nextSeq++, ttlMs === Infinity ? Infinity : q.offlineAt(Date.now()) + ttlMs, persistent ? flags | FLAG_PERSISTENT : flags, stored)
    const uuid = entry.uuid
    let delivered: Promise<void> | null = null
    if (options.wait === 'delivered') {
      delivered = new Promise<void>((resolve, reject) => { entry.waiter = { resolve, reject } })
    }
    // A persistent message is not sent before the store has it.
    if (stored) entry.state = EntryState.Storing
    q.push(entry)
    if (stored) await this.storeEntry(q, entry)
    if (!q.connected && ttlMs !== Infinity) this.scheduleExpiry(q, entry.expiry)
    if (delivered !== null) await (signal === undefined ? delivered : raceAbort(delivered, signal))
    else if (this.mustPace(q, bytes.byteLength)) await this.pace(q, signal)
    return { uuid }
  }

  /**
   * A sink for `it-pipe` or any async iterable: sends every item to `to`, one
   * after the other, so a full queue holds the source back.
   */
  sink (to: string, options: SendOptions = {}): (source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>) => Promise<void> {
    return async (source) => {
      for await (const data of source) await this.send(to, data, options)
    }
  }

  /**
   * Received messages, as an async iterable. Each call makes a consumer of its
   * own; see MessagesOptions for filters and acknowledgement. With `batch` (see
   * BatchMessagesOptions), arrays of the messages that arrived together: one
   * await per batch instead of one per message.
   */
  messages (options?: MessagesOptions & { batch?: undefined | false }): AsyncIterableIterator<Message>
  messages (options: BatchMessagesOptions): AsyncIterableIterator<Message[]>
  messages (options: MessagesOptions & { batch?: boolean | number | undefined } = {}): AsyncIterableIterator<Message> | AsyncIterableIterator<Message[]> {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('messages: options must be an object')
    const batch = options.batch
    if (batch !== undefined && batch !== false && batch !== true && !(typeof batch === 'number' && Number.isInteger(batch) && batch > 0)) {
      throw new InvalidArgumentError(`messages: batch must be true or a positive integer, got ${String(batch)}`)
    }
    if (options.ack !== undefined && options.ack !== 'auto' && options.ack !== 'manual') {
      throw new InvalidArgumentError(`messages: ack must be 'auto' or 'manual', got ${JSON.stringify(options.ack)}`)
    }
    if (options.filter !== undefined && typeof options.filter !== 'function') throw new InvalidArgumentError('messages: filter must be a function')
    if (options.prefix !== undefined && typeof options.prefix !== 'string' && !(options.prefix instanceof Uint8Array)) {
      throw new InvalidArgumentError('messages: prefix must be a string or a Uint8Array')
    }
    if (batch === undefined || batch === false) return this.inbox.consumer(options)
    return new MessageBatches(this.inbox.consumer(options, null, null, batch === true ? Infinity : batch))
  }

  /**
   * Resolves once `ident` is connected (at once if it is now). Rejects with
   * AbortError when `signal` aborts or `timeout` ms pass first, and with
   * ClosedError if this Messaging closes.
   */
  async whenConnected (ident: string, options: { signal?: AbortSignal, timeout?: number } = {}): Promise<void> {
    if (typeof ident !== 'string' || ident.length === 0) throw new InvalidArgumentError('whenConnected: the identity must be a non-empty string')
    const { signal, timeout } = options
    if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0))) {
      throw new InvalidArgumentError(`whenConnected: timeout must be a number of milliseconds >= 0, got ${String(timeout)}`)
    }
    if (this.closing !== null) throw new ClosedError('messaging is closed')
    if (this.isConnected(ident)) return
    if (signal?.aborted === true) throw abortError(signal)
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        this.off('connect', onConnect)
        this.off('closed', onClosed)
        signal?.removeEventListener('abort', onAbort)
        clearTimeout(timer)
      }
      const onConnect = (e: { ident: string }): void => { if (e.ident === ident) { cleanup(); resolve() } }
      const onClosed = (): void => { cleanup(); reject(new ClosedError('messaging was closed before the peer connected')) }
      const onAbort = (): void => { cleanup(); reject(abortError(signal!)) }
      const timer = timeout === undefined ? undefined : setTimeout(() => { cleanup(); reject(new AbortError(`${JSON.stringify(ident)} did not connect within ${timeout} ms`)) }, timeout)
      this.on('connect', onConnect)
      this.once('closed', onClosed)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /**
   * Counters per peer and over all peers, since this Messaging started (see
   * PeerStats). Cheap enough to poll every second: one pass over the peers.
   */
  stats (): MessagingStats {
    const peers: Record<string, PeerStats> = Object.create(null) as Record<string, PeerStats>
    const totals: StatsCounts = { queued: 0, unacked: 0, sent: 0, received: 0, bytesOut: 0, bytesIn: 0, reconnects: 0 }
    let connected = 0
    for (const q of this.queues.values()) {
      const s = this.peers.get(q.peer)
      const live = s !== undefined && s.announced
      const c = q.counters
      const p: PeerStats = {
        connected: live,
        queued: q.count,
        unacked: q.inFlight,
        sent: c.sent,
        received: c.received,
        bytesOut: c.bytesOut + (live ? s.connection.bytesOut : 0),
        bytesIn: c.bytesIn + (live ? s.connection.bytesIn : 0),
        reconnects: Math.max(0, c.connects - 1)
      }
      peers[q.peer] = p
      if (live) connected++
      totals.queued += p.queued
      totals.unacked += p.unacked
      totals.sent += p.sent
      totals.received += p.received
      totals.bytesOut += p.bytesOut
      totals.bytesIn += p.bytesIn
      totals.reconnects += p.reconnects
    }
    return { peers, totals: { ...totals, connected } }
  }

  /**
   * @internal Calls `handler` with each received message that `options` selects,
   * synchronously as it arrives; the message counts as received when it returns.
   * `onEnd` runs once the consumer ends (its signal aborted, or this Messaging
   * closing). The returned consumer can be paused, resumed and ended. For RPC.
   */
  consume (options: MessagesOptions, handler: MessageHandler, onEnd?: () => void): Consumer {
    return this.inbox.consumer(options, handler, onEnd ?? null)
  }

  /**
   * The events as an async iterable of `{ type, ...fields }`, for code that
   * prefers a loop to callbacks. It listens from the moment `events()` is called
   * (an event between the call and the loop's first step is kept for it); leaving
   * the loop, `return()` (even while a step waits), the signal or close() ends it
   * and removes its listeners. A consumer that falls behind by more than
   * `bufferSize` events loses the oldest; `missed` on the next event says how many.
   * An unknown type in `types` is refused with InvalidArgumentError.
   */
  events (options: EventsOptions = {}): AsyncGenerator<MessagingEvent & { missed?: number }> {
    const types: readonly MessagingEventType[] = options.types ?? EVENT_TYPES
    if (!Array.isArray(types as unknown) || types.some((t) => !EVENT_TYPES.includes(t))) {
      throw new InvalidArgumentError(`events: types must be an array of ${EVENT_TYPES.map((t) => `'${t}'`).join(', ')}, got ${JSON.stringify(types)}`)
    }
    const size = positiveInt(options.bufferSize, 'bufferSize', 1024)
    const buffer: Array<MessagingEvent & { missed?: number }> = []
    let missed = 0
    let ended = false
    let wake: (() => void) | null = null
    const signal = options.signal
    const stop = (): void => { const w = wake; wake = null; w?.() }
    const handlers = types.map((type) => {
      const handler = (e: object): void => {
        if (buffer.length >= size) { buffer.shift(); missed++ }
        buffer.push({ type, ...e } as MessagingEvent)
        stop()
      }
      this.addListener(type, handler)
      return [type, handler] as const
    })
    const end = (): void => {
      if (ended) return
      ended = true
      for (const [type, handler] of handlers) this.removeListener(type, handler)
      this.off('closed', stop)
      signal?.removeEventListener('abort', stop)
      buffer.length = 0
      stop()
    }
    this.once('closed', stop)
    signal?.addEventListener('abort', stop, { once: true })
    const closing = (): boolean => this.closing !== null
    async function * loop (): AsyncGenerator<MessagingEvent & { missed?: number }> {
      try {
        while (!ended) {
          const e = buffer.shift()
          if (e !== undefined) {
            if (missed > 0) { e.missed = missed; missed = 0 }
            yield e
            continue
          }
          if (closing() || signal?.aborted === true) return
          await new Promise<void>((resolve) => { wake = resolve })
        }
      } finally {
        end()
      }
    }
    const gen = loop()
    // An async generator's return() waits for a pending next() to settle, and on a
    // generator never started skips its finally: end() first wakes the one and
    // removes the listeners for the other.
    const generatorReturn = gen.return.bind(gen)
    gen.return = async (value) => { end(); return await generatorReturn(value) }
    return gen
  }

  /**
   * Closes gracefully: refuses new sends (ClosedError), waits until every queue
   * is empty (each message delivered, expired or dropped), then closes. When the
   * timeout passes or the signal aborts first, it closes anyway, and each message
   * still queued is reported as a `drop` with reason `'closed'` (persistent ones
   * in a durable store stay there for the next start instead). Resolves once
   * closed, saying whether everything went. Idempotent with close().
   */
  async drain (options: DrainOptions = {}): Promise<DrainResult> {
    const { timeout, signal } = options
    if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0))) {
      throw new InvalidArgumentError(`drain: timeout must be a number of milliseconds >= 0, got ${String(timeout)}`)
    }
    if (this.closing === null && !this.draining) {
      this.draining = true
      if (this.totals.count > 0 && signal?.aborted !== true) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            this.totals.onEmpty = null
            clearTimeout(timer)
            signal?.removeEventListener('abort', done)
            resolve()
          }
          this.totals.onEmpty = done
          const timer = timeout === undefined ? undefined : setTimeout(done, timeout)
          signal?.addEventListener('abort', done, { once: true })
        })
      }
    }
    const left = this.totals.count
    await this.close()
    return { drained: left === 0, left }
  }

  /**
   * Closes every connection, the link, timers, consumers and the store, at once:
   * what is owed (acknowledgements) is flushed first, and each message still
   * queued that is not kept in a durable store is reported as a `drop` with
   * reason `'closed'`. Idempotent. See drain() to wait for the queues first.
   */
  async close (): Promise<void> {
    this.closing ??= this.shutdown()
    await this.closing
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }

  private async shutdown (): Promise<void> {
    this.link.off('connection', this.onConnection)
    this.emit('closed')
    if (this.clockTimer !== null) clearInterval(this.clockTimer)
    for (const t of this.expiryTimers.values()) clearTimeout(t.timer)
    this.expiryTimers.clear()
    this.inbox.close()
    await this.loaded.catch(() => {})
    // Flush what is owed (acknowledgements above all) before the sockets go.
    await Promise.all([...this.sessions].map(async (s) => { await s.finish(1000) }))
    await this.link.close()
    const closed = new ClosedError('messaging was closed before the message was delivered')
    for (const q of this.queues.values()) {
      for (const e of [...q.entries()]) {
        const w = e.waiter
        e.waiter = undefined
        w?.reject(closed)
        // Kept in a durable store, it goes out after the next start; anything else is gone, and says so.
        if (!e.stored || !(this.store?.durable ?? false)) this.drop(q, e, 'closed')
      }
      for (const w of q.roomWaiters) w()
      q.roomWaiters.clear()
      q.wakePaced()
    }
    // A store that keeps nothing past close: its paged-out backlogs are gone too, and say so.
    if (this.store !== null && !this.store.durable) {
      for (const q of this.queues.values()) {
        const range = q.range
        if (range === null || range.count === 0) continue
        await q.scanRange(Infinity, (gone) => { for (const m of gone) this.emitDrop(q.peer, uuidHex(m.uuid), 'closed') })
      }
    }
    if (this.store !== null) {
      const now = Date.now()
      const clocks: Array<[string, PeerClock]> = []
      for (const peer of this.clocksStored) {
        const q = this.queues.get(peer)
        if (q !== undefined) clocks.push([peer, this.clockToSave(q, { offline: q.offlineAt(now), since: now, connected: false })])
      }
      // With the deletions the store refused before, if it still holds those messages.
      const del = await this.deletes!.close()
      await this.store.write({ del, clocks }).catch((err: unknown) => {
        this.log.error('final store write failed', { error: err as Error, deletions: del.length })
      })
      await this.store.close()
    }
  }

  // ---- loading -------------------------------------------------------------

  /**
   * Reads the store's summary (per peer: count, bytes, next seq; the clocks),
   * not its messages: each backlog stays in the store and is read in, in
   * batches, when its peer connects (or to look for expired messages).
   */
  private async load (): Promise<void> {
    const store = this.store
    if (store === null) { this.isReady = true; return }
    try {
      const summary = await store.summary()
      const now = Date.now()
      for (const [peer, clock] of summary.clocks) {
        const q = this.queueFor(peer)
        // The process was down: as far as TTLs go, every peer was disconnected since the clock was last saved.
        q.clock = { offline: clock.offline + Math.max(0, now - clock.since), since: now, connected: false }
        this.clocksStored.add(peer)
      }
      let messages = 0
      for (const s of summary.queues) {
        const q = this.queueFor(s.peer)
        // A store written before minExpiry was kept: unknown, so the backlog is looked through once for expired messages.
        const minExpiry = summary.clocks.get(s.peer)?.minExpiry ?? -Infinity
        q.restore(s.count, s.bytes, s.nextSeq, minExpiry)
        q.savedMinExpiry = minExpiry
        messages += s.count
      }
      // Messages that expired while the process was down are dropped before ready(): queued() is exact from the start.
      await Promise.all([...this.queues.values()].map(async (q) => { await this.sweep(q) }))
      this.log.info('queues opened', { messages, peers: summary.queues.length })
      this.isReady = true
      // The first batch of each backlog is read now, while connections are being
      // made, so a peer gets its messages as soon as it connects (within a budget:
      // a store with thousands of backlogs reads the rest as their peers connect).
      let budget = PREFETCH_MESSAGES
      for (const q of this.queues.values()) {
        if (budget <= 0) break
        if (q.range === null || q.connected) continue
        budget -= Math.min(q.range.count, Math.max(1, Math.floor(this.totals.window.messages / 2)))
        q.pageIn()
      }
      this.clockTimer = setInterval(() => { this.saveClocks() }, CLOCK_SAVE_INTERVAL)
      // Node's timers have unref(), a browser's are numbers: the clock alone must not keep a process alive.
      ;(this.clockTimer as unknown as { unref?: () => void }).unref?.()
    } catch (err) {
      this.loadError = err instanceof StoreError ? err : new StoreError('could not load the queue store', { cause: err })
      this.log.error('loading queues failed', { error: this.loadError })
      throw this.loadError
    }
  }

  /** @internal OutboxHost: a page of a peer's stored backlog. */
  async readStored (q: Outbox, fromSeq: number, limit: number): Promise<StoredMessage[]> {
    return await this.store!.read(q.peer, fromSeq, limit)
  }

  /** @internal OutboxHost: messages read in from the store whose TTL ran out meanwhile. */
  expiredOnRead (q: Outbox, entries: readonly QueueEntry[]): void {
    for (const e of entries) this.drop(q, e, 'expired')
  }

  /** @internal OutboxHost: messages larger than their connected peer's maxPacketSize allows. */
  tooLarge (q: Outbox, entries: readonly QueueEntry[]): void {
    for (const e of entries) {
      this.log.warn('a message is larger than its peer accepts (the maxPacketSize it announced): dropped', { to: q.peer, bytes: e.size })
      this.drop(q, e, 'too-large')
    }
  }

  /** @internal OutboxHost */
  readFailed (q: Outbox, error: unknown): void {
    this.log.error('reading a queue from the store failed', { peer: q.peer, error: error as Error })
    this.emit('error', { error: error instanceof Error ? error : new StoreError(String(error)), ident: q.peer })
  }

  // ---- queues, TTL, store ----------------------------------------------------

  private queueFor (peer: string): Outbox {
    let q = this.queues.get(peer)
    if (q === undefined) {
      q = new Outbox(peer, Date.now(), this, this.totals)
      this.queues.set(peer, q)
    }
    return q
  }

  /** Whether a message of `size` bytes that no store keeps has no room in `q` (see queueLimits). */
  private full (q: Outbox, size: number): boolean {
    return q.volatileCount >= this.queueMessages || (q.volatileCount > 0 && q.volatileBytes + size > this.queueBytes)
  }

  private async waitForRoom (q: Outbox, size: number, options: SendOptions): Promise<void> {
    const full = (): boolean => this.full(q, size)
    if (options.whenFull === 'reject') {
      throw new QueueFullError(`the queue for ${JSON.stringify(q.peer)} is full (${q.volatileCount} messages, ${q.volatileBytes} bytes held in memory)`)
    }
    const signal = options.signal
    while (full()) {
      if (this.closing !== null) throw new ClosedError('messaging is closed')
      const room = new Promise<void>((resolve) => q.roomWaiters.add(resolve))
      await (signal === undefined ? room : raceAbort(room, signal))
    }
    if (this.closing !== null) throw new ClosedError('messaging is closed')
  }

  /**
   * Whether a connected peer's connection is behind this process: more is queued
   * than it has taken, while it could take more, or while its acknowledgement
   * window is full and the remote is still acknowledging (a slower reader). When
   * the remote is what holds things up (it has acknowledged nothing for
   * ACK_STALL_MS with the window full, or the socket waits to drain), send() does
   * not pace: the queue and its limits absorb the backlog.
   */
  private behind (q: Outbox): boolean {
    if (!q.connected || this.closing !== null || (q.unsent <= PACE_MESSAGES && q.unsentBytes <= PACE_BYTES)) return false
    const s = this.peers.get(q.peer)
    if (s === undefined || !s.connection.writable) return false
    if (!s.acks || q.inFlight < this.maxUnacked) return true
    return Date.now() - q.lastAckAt < ACK_STALL_MS
  }

  /** Whether `q`'s peer is connected with its acknowledgement window full. */
  private windowFull (q: Outbox): boolean {
    return this.peers.get(q.peer)?.acks === true && q.inFlight >= this.maxUnacked
  }

  /** Whether more is queued and unsent for a connected peer than send() lets pile up without pacing. */
  private over (q: Outbox): boolean {
    return q.connected && this.closing === null && (q.unsent > PACE_MESSAGES || q.unsentBytes > PACE_BYTES)
  }

  /** Whether the send that just queued a message of `size` bytes for `q` must wait in pace(). Over the limit a big one always does: 256 of them are no longer small. */
  private mustPace (q: Outbox, size: number): boolean {
    return this.over(q) && (size > COPY_LIMIT || (q.nextSeq % TURN_EVERY) === 0 || this.behind(q))
  }

  /**
   * Waits (the message being queued already) until the connection took more of
   * the queue, the peer went away, or `signal` aborted; with the acknowledgement
   * window full, ACK_STALL_MS at most at a time, after which a remote that
   * acknowledged nothing counts as stalled (see behind()). When the remote is what
   * holds things up, waits one turn of the event loop and no more, so its
   * acknowledgements get in: a stalled remote must not keep send() from
   * resolving (the queue limits bound what waits), but a producer should not
   * race ahead of it either, each message it queues outliving a scavenge. (Only
   * one send in TURN_EVERY comes here for that: see mustPace.)
   */
  private async pace (q: Outbox, signal: AbortSignal | undefined): Promise<void> {
    while (this.behind(q)) {
      // Waiting on a remote that may stall: no longer than it takes to tell.
      const within = this.windowFull(q) ? ACK_STALL_MS : Infinity
      if (signal === undefined) await q.paced(within)
      else if (signal.aborted || await raceAbort(q.paced(within), signal).then(() => false, () => true)) return
    }
    if (this.over(q)) await new Promise<void>((resolve) => { setImmediate(resolve) })
  }

  private async storeEntry (q: Outbox, entry: QueueEntry): Promise<void> {
    const store = this.store!
    // The clock goes with the peer's first stored message, and with any that expires before what the clock says.
    const first = !this.clocksStored.has(q.peer)
    const lower = entry.expiry < q.savedMinExpiry
    const clocks: Array<[string, PeerClock]> | undefined = first || lower ? [[q.peer, { ...q.clock, minExpiry: Math.min(q.savedMinExpiry, entry.expiry) }]] : undefined
    if (first) this.clocksStored.add(q.peer)
    const savedBefore = q.savedMinExpiry
    if (lower) q.savedMinExpiry = entry.expiry
    try {
      await store.write({
        put: [{ peer: q.peer, seq: entry.seq, uuid: entry.uuidBytes, expiry: entry.expiry, flags: entry.flags, data: entry.data }],
        ...(clocks !== undefined ? { clocks } : {})
      })
    } catch (err) {
      // Nothing is reported as queued that is not: the message leaves the queue unsent.
      // send() rejects with the error; its delivery promise is never awaited, so it is not rejected too (that would be unhandled).
      entry.waiter = undefined
      q.finish(entry)
      // The clock went down with this batch: the next stored message of this peer carries it again.
      if (first) this.clocksStored.delete(q.peer)
      if (lower) q.savedMinExpiry = savedBefore
      throw err instanceof StoreError ? err : new StoreError('writing the message to the store failed', { cause: err })
    }
    q.ready(entry)
    // The store writes again: deletions it refused can go now.
    this.deletes!.storeWrote()
  }

  private deleteStored (peer: string, e: QueueEntry): void {
    this.deletes?.add({ peer, seq: e.seq, size: e.size, uuid: uuidKey(e.buf, e.at) })
  }

  /** `clock` with the lowest expiry of the peer's stored messages, which becomes what the store is known to say. */
  private clockToSave (q: Outbox, clock: PeerClock): PeerClock {
    const min = q.storedMinExpiry()
    // Unknown (-Infinity) stays unknown until the backlog has been looked through.
    q.savedMinExpiry = min
    return { ...clock, minExpiry: min === -Infinity ? -Infinity : min }
  }

  private saveClocks (): void {
    if (this.store === null || this.closing !== null) return
    const now = Date.now()
    const clocks: Array<[string, PeerClock]> = []
    for (const peer of this.clocksStored) {
      const q = this.queues.get(peer)
      if (q === undefined) continue
      clocks.push([peer, this.clockToSave(q, q.connected ? { offline: q.clock.offline, since: now, connected: true } : { ...q.clock })])
    }
    if (clocks.length === 0) return
    this.store.write({ clocks }).catch((err: unknown) => { this.log.warn('saving TTL clocks failed', { error: err as Error }) })
  }

  private saveClock (q: Outbox): void {
    if (this.store === null || !this.clocksStored.has(q.peer) || this.closing !== null) return
    this.store.write({ clocks: [[q.peer, this.clockToSave(q, { ...q.clock })]] }).catch((err: unknown) => {
      this.log.warn('saving a TTL clock failed', { peer: q.peer, error: err as Error })
    })
  }

  /** Drops every expired message of a disconnected peer, then arms a timer for the next one to expire. */
  private sweep (q: Outbox): Promise<void> | undefined {
    this.cancelExpiry(q.peer)
    if (q.connected || this.closing !== null) return
    const now = Date.now()
    const offline = q.offlineAt(now)
    for (const e of q.expired(offline)) this.drop(q, e, 'expired')
    const range = q.range
    if (range !== null && range.minExpiry <= offline) {
      // Some of the paged-out backlog may have expired: look through it, in batches, then sweep again later.
      return q.scanRange(offline, async (gone) => {
        await this.store!.write({ del: gone.map((m) => ({ peer: q.peer, seq: m.seq, size: m.data.byteLength })) })
        for (const m of gone) this.emitDrop(q.peer, uuidHex(m.uuid), 'expired')
      }).then(() => { if (this.closing === null) { this.scheduleExpiry(q); this.idleIfEmpty(q) } })
    }
    this.scheduleExpiry(q)
  }

  /** Arms the expiry timer of a disconnected peer's queue for `at` (default: its earliest expiry), unless one is due sooner. */
  private scheduleExpiry (q: Outbox, at?: number): void {
    if (q.connected || q.count === 0 || this.closing !== null) return
    const next = at ?? q.earliestExpiry()
    const current = this.expiryTimers.get(q.peer)
    if (next === Infinity || (current !== undefined && current.at <= next)) return
    this.cancelExpiry(q.peer)
    const delay = Math.max(0, next - q.offlineAt(Date.now()))
    const timer = setTimeout(() => { this.expiryTimers.delete(q.peer); void this.sweep(q) }, Math.min(delay + 1, 2 ** 31 - 1))
    this.expiryTimers.set(q.peer, { timer, at: next })
  }

  private cancelExpiry (peer: string): void {
    const t = this.expiryTimers.get(peer)
    if (t !== undefined) { clearTimeout(t.timer); this.expiryTimers.delete(peer) }
  }

  private drop (q: Outbox, e: QueueEntry, reason: DropReason): void {
    q.finish(e)
    if (e.stored) this.deleteStored(q.peer, e)
    const w = e.waiter
    e.waiter = undefined
    w?.reject(new MessageDroppedError(q.peer, e.uuid, reason))
    this.emitDrop(q.peer, e.uuid, reason)
    this.idleIfEmpty(q)
  }

  /**
   * A disconnected peer's queue that has just emptied (its messages expired,
   * dropped or taken back): a peer that never connected, with nothing in the
   * store, is forgotten now (sends with a TTL, or RPC calls, to peers that never
   * came leave nothing behind); another is an idle peer, forgotten past
   * maxIdlePeers.
   */
  private idleIfEmpty (q: Outbox): void {
    const peer = q.peer
    if (q.count > 0 || this.closing !== null || this.peers.has(peer) || this.idle.has(peer) || this.queues.get(peer) !== q) return
    if (q.counters.connects === 0 && q.range === null && !this.clocksStored.has(peer) && !this.dedup.has(peer)) {
      this.queues.delete(peer)
      this.cancelExpiry(peer)
      return
    }
    this.forgetIdle(peer)
  }

  private emitDrop (to: string, uuid: string, reason: DropReason): void {
    this.log.info('message dropped', { to, uuid, reason })
    this.emit('drop', { to, uuid, reason })
  }

  /** @internal OutboxHost: `e` reached its peer. */
  delivered (q: Outbox, e: QueueEntry): void {
    q.finish(e)
    if (e.stored) this.deleteStored(q.peer, e)
    const w = e.waiter
    if (w !== undefined) { e.waiter = undefined; w.resolve() }
    if (this.listenerCount('delivered') > 0) this.emit('delivered', { to: q.peer, uuid: e.uuid })
  }

  // ---- connections (SessionHost) ----------------------------------------------

  private accept (conn: Connection): void {
    if (this.closing !== null) { conn.close(); return }
    const session = new Session(this, conn)
    this.sessions.add(session)
    const start = (): void => { if (this.closing === null) session.start() }
    if (this.isReady) start()
    else this.loaded.then(start, () => { conn.close() })
  }

  /** @internal */
  identified (session: Session<Connection>, ident: string): Outbox | Error {
    if (this.bindIdentityToCertificate) {
      const refused = checkIdentityCertificate(session.connection, ident)
      if (refused !== null) {
        this.log.warn('identity not bound to the certificate, refused', {
          conn: session.connection.id, peer: ident, certificateNames: refused.certificateNames, error: refused
        })
        return refused
      }
    }
    const existing = this.peers.get(ident)
    if (existing !== undefined) {
      const keep = this.redundantWinner(existing, session, ident)
      if (keep === null) return new DuplicateIdentityError(ident)
      if (keep === existing) return new RedundantConnectionError(`${existing.connection.id} to ${JSON.stringify(ident)} is kept; ${session.connection.id} is redundant`)
      // The new connection is the one both sides keep: move the peer over to it,
      // quietly (the peer stays connected: no second connect, no disconnect).
      this.log.debug('two connections to one peer: keeping the newer one', { peer: ident, kept: session.connection.id, closed: existing.connection.id })
      this.peers.set(ident, session)
      session.announced = existing.announced
      existing.announced = false
      existing.retire()
      return this.queueFor(ident)
    }
    this.peers.set(ident, session)
    this.leaveIdle(ident)
    return this.queueFor(ident)
  }

  /** @internal */
  connected (session: Session<Connection>): void {
    // A connection that took over from a redundant one: the peer was announced already.
    if (session.announced) return
    session.announced = true
    const q = session.outbox!
    q.counters.connects++
    const now = Date.now()
    q.clock = { offline: q.offlineAt(now), since: now, connected: true }
    this.cancelExpiry(q.peer)
    // Messages whose TTL ran out while the peer was away are dropped, not sent.
    for (const e of q.expired(q.clock.offline)) this.drop(q, e, 'expired')
    this.saveClock(q)
    this.log.info('peer connected', { conn: session.connection.id, peer: session.ident ?? undefined, acks: session.acks })
    this.emit('connect', { ident: session.ident!, connection: session.connection, certificate: session.connection.peerCertificate })
  }

  /** @internal */
  received (session: Session<Connection>, packet: Uint8Array, at: number, end: number): void {
    const from = session.ident!
    const flags = messageFlags(packet, at)
    let window: DedupWindow | null = null
    let ticket = -1
    // A message that wants no acknowledgement is not filtered either: its sender deals with repeats (RPC, by request id).
    if ((flags & FLAG_UNACKED) === 0 || !session.acks) {
      window = this.dedup.get(from) ?? null
      if (window === null) { window = new DedupWindow(this.dedupSize); this.dedup.set(from, window) }
      ticket = window.admit(packet, at)
      if (ticket < 0) {
        // A redelivery: the application has it already. Acknowledge again if it is done with it.
        this.log.debug('duplicate message ignored', { conn: session.connection.id, peer: from, uuid: uuidHex(packet, at) })
        if (ticket === SEEN_DONE && session.acks) session.ack(packet, at)
        return
      }
    }
    this.inbox.dispatch(new InboundMessage(from, packet.subarray(messageDataAt(at), end), packet, at, ticket, window, messageTtl(packet, at), flags, this.inbox))
  }

  /**
   * A message no consumer takes while the application is between two loops,
   * past the receive buffer: let go of unacknowledged (its UUID forgotten, so
   * that its resend is new), for its sender to send again. Not for a message
   * its sender will not send again (a plain snakeMQ peer's, or one sent
   * without acknowledgement), nor one whose connection is gone.
   */
  private setAside (m: InboundMessage): boolean {
    const s = this.peers.get(m.from)
    // Its connection gone, whether its sender acknowledges (and so sends it again) is not known: it waits.
    if (m.window === null || s === undefined || !s.acks) return false
    m.window.forget(m.ticket)
    this.setAsideFrom.add(m.from)
    this.log.debug('a message no consumer takes now was set aside, unacknowledged: its sender sends it again once the application reads', { from: m.from, uuid: m.uuid })
    return true
  }

  /**
   * An unfiltered consumer came: the connections of peers whose messages were
   * set aside are closed, quietly, so that their senders reconnect and send
   * what was never acknowledged again (there is no other way to ask for it).
   */
  private refetch (): void {
    if (this.setAsideFrom.size === 0) return
    for (const peer of this.setAsideFrom) {
      const s = this.peers.get(peer)
      if (s === undefined) continue
      this.log.info('reconnecting to a peer whose messages were set aside while the application was not reading, for its sender to send them again', { peer })
      s.close()
    }
    this.setAsideFrom.clear()
  }

  private receivedByApp (m: InboundMessage): void {
    const q = this.queues.get(m.from)
    if (q !== undefined) q.counters.received++
    // Not filtered, not acknowledged (FLAG_UNACKED).
    if (m.window === null) return
    m.window.markDone(m.ticket)
    const s = this.peers.get(m.from)
    if (s?.acks === true) s.ack(m.packet, m.uuidAt)
  }

  /**
   * Two connections between the same pair of peers, one opened by each side (the
   * tutorial's bob and jack): both sides must keep the same one, whatever order
   * they saw them identify in. They keep the connection opened by the peer with
   * the smaller identity. Returns null when this is not such a pair: a plain
   * snakeMQ remote (which refuses the second connection), two connections opened
   * the same way, or a newcomer that does not prove it is the same peer (the
   * same nonce; over TLS, also the same certificate). A newcomer that only
   * claims the name gets DuplicateIdentityError, and the live connection stays.
   */
  private redundantWinner (existing: Session<Connection>, fresh: Session<Connection>, ident: string): Session<Connection> | null {
    if (!existing.acks || !fresh.acks || ident === this.identity) return null
    if (existing.connection.direction === fresh.connection.direction) return null
    const a = existing.remoteNonce
    const b = fresh.remoteNonce
    if (a === null || b === null || !sameBytes(a, b)) return null
    const ca = existing.connection.peerCertificate
    const cb = fresh.connection.peerCertificate
    if ((ca !== null || cb !== null) && (ca === null || cb === null || ca.fingerprint256 !== cb.fingerprint256)) return null
    const keep = this.identity < ident ? 'outbound' : 'inbound'
    return fresh.connection.direction === keep ? fresh : existing
  }

  /** @internal */
  failed (session: Session<Connection>, error: Error): void {
    if (error instanceof RedundantConnectionError) {
      this.log.debug('closing a redundant connection', { conn: session.connection.id, peer: session.ident ?? undefined })
      return
    }
    const fields = { conn: session.connection.id, peer: session.ident ?? undefined, remote: `${session.connection.remoteAddress}:${session.connection.remotePort}`, error }
    this.log.warn('closing connection', fields)
    this.emit('error', { error, connection: session.connection, ...(session.ident !== null ? { ident: session.ident } : {}) })
  }

  /** @internal */
  ended (session: Session<Connection>): void {
    this.sessions.delete(session)
    // Every connection that was up counts in its peer's bytes, a redundant one that was replaced too.
    if (session.up && session.outbox !== null) {
      session.outbox.counters.bytesOut += session.connection.bytesOut
      session.outbox.counters.bytesIn += session.connection.bytesIn
    }
    const ident = session.ident
    if (ident === null || this.peers.get(ident) !== session) return
    this.peers.delete(ident)
    const error = session.error ?? session.connection.error
    // Only a peer that was announced is announced gone: connect and disconnect balance.
    if (session.announced) {
      const q = session.outbox!
      q.clock = { offline: q.clock.offline, since: Date.now(), connected: false }
      this.saveClock(q)
      session.announced = false
      this.log.info('peer disconnected', { conn: session.connection.id, peer: ident, error })
      this.emit('disconnect', { ident, connection: session.connection, certificate: session.connection.peerCertificate, ...(error !== undefined ? { error } : {}) })
    }
    const q = this.queueFor(ident)
    void this.sweep(q)
    // A remote that identified and never came up (it never sent WELCOME) leaves nothing behind, as one never connected.
    if (q.count === 0) this.idleIfEmpty(q)
  }

  /**
   * Records that a peer is gone with nothing queued, and forgets the longest-gone
   * ones past maxIdlePeers; past maxIdleWindowBytes, the duplicate windows of the
   * longest-gone.
   */
  private forgetIdle (ident: string): void {
    this.leaveIdle(ident)
    const bytes = this.dedup.get(ident)?.bytes ?? 0
    this.idle.set(ident, bytes)
    this.idleWindowBytes += bytes
    while (this.idle.size > this.maxIdlePeers) {
      const oldest = this.idle.keys().next().value!
      this.leaveIdle(oldest)
      const q = this.queues.get(oldest)
      // Only state nothing depends on: not connected, nothing queued, no clock in the store.
      if (this.peers.has(oldest) || (q !== undefined && q.count > 0) || this.clocksStored.has(oldest)) continue
      this.queues.delete(oldest)
      this.dedup.delete(oldest)
      this.log.debug('forgot an idle peer', { peer: oldest })
    }
    if (this.idleWindowBytes <= this.maxIdleWindowBytes) return
    for (const [peer, held] of this.idle) {
      if (this.idleWindowBytes <= this.maxIdleWindowBytes) break
      if (held === 0) continue
      // The peer stays known (its queue, its clock); only what it sent before is no longer recognised.
      this.idle.set(peer, 0)
      this.idleWindowBytes -= held
      if (!this.peers.has(peer)) this.dedup.delete(peer)
      this.log.debug('forgot the duplicate window of an idle peer', { peer, bytes: held })
    }
  }

  /** `ident` is no longer among the idle peers (it identified again, or is forgotten). */
  private leaveIdle (ident: string): void {
    const held = this.idle.get(ident)
    if (held === undefined) return
    this.idle.delete(ident)
    this.idleWindowBytes -= held
  }

  /** @internal */
  inboxRoom (): Promise<void> | null {
    return this.inbox.full ? this.inbox.room() : null
  }
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

async function raceAbort<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw abortError(signal)
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(abortError(signal)) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}

export type { DeliveryWaiter }
