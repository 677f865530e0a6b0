// RpcServer: runs the calls and signals peers send to the objects registered on
// it, at most `concurrency` at a time, and sends each call's outcome back. A call
// resent by its client (after a reconnect) is recognized by its request id and
// answered from a bounded cache instead of being run again. Requests come off a
// Messaging shared with the application, routed by the RPC prefix (docs/RPC.md).
// Python snakeMQ peers' requests (`rpcreq` pickles) are answered too, in their
// format, read by the data-only pickle codec (docs/RPC.md, section 5).
import type { Messaging } from '../messaging/messaging.ts'
import type { Message } from '../messaging/types.ts'
import type { Consumer } from '../messaging/inbox.ts'
import type { QueueEntry } from '../messaging/outbox.ts'
import { InvalidArgumentError } from '../errors.ts'
import { FLAG_UNACKED } from '../transforms/frames.ts'
import { debugLogger, type Logger } from '../logging.ts'
import { toHex } from '../bytes.ts'
import { decodeValue, encodeAfter, encodeValue } from './codec.ts'
import { isNativeError } from './errors.ts'
import { decodePickle } from './pickle-decode.ts'
import { resolvePickleLimits, type PickleCodecOptions } from './pickle.ts'
import { PythonException } from './python-types.ts'
import { isMarkedSignal } from './remote.ts'
import { addServer, hasClients, hasServer, removeServer } from './registry.ts'
import { CallLimiter } from './limiter.ts'
import { answerOrphans } from './unanswered.ts'
import { DONE, KeyedResultCache, LOST, ResultCache, type RunningCall } from './result-cache.ts'
import {
  SNAKEMQ_PREFIX_BYTES, SNAKEMQ_REPLY_PREFIX, SNAKEMQ_REQUEST_PREFIX, findReqIds, formatExceptionOnly, noInstanceError,
  noMethodError, readSnakeRequest, snakeExceptionMessage, snakeReturnMessage, type SnakeRequest
} from './snakemq.ts'
import {
  BODY_OFFSET, Kind, RPC_MAGIC, RPC_VERSION, Status,
  copyId, encodeName, failedMessage, hasMagic, isReply, parseRequest, replyMessage, tail, writeHeader,
  type Request
} from './wire.ts'

export interface RpcServerOptions {
  /**
   * Send what a failed call threw (name, message, stack, `code` and other data
   * properties) to the caller, as snakeMQ's `transfer_exceptions`. When false the
   * caller only learns that the method failed (RpcRemoteError without details) and
   * the error is logged here. Can be changed later through the property. Default true.
   */
  transferExceptions?: boolean
  /** Most calls and signals running at once (across all peers). Default 64. */
  concurrency?: number
  /**
   * Most of those one peer may hold, so that a peer whose calls hang cannot take
   * every slot: the others' calls go on. Calls waiting for a slot start in turns,
   * one peer after the other. Default: half of `concurrency`.
   */
  perPeerConcurrency?: number
  /**
   * Most calls and signals waiting for a free slot; past this the server stops
   * taking requests off the Messaging, which in the end stops reading from the
   * sockets (backpressure). Default 10,000.
   */
  maxQueued?: number
  /**
   * How many recent finished calls (per request id and peer) are remembered, so
   * that a call resent after a reconnect is not run again but answered with its
   * first result. Calls running or waiting for a slot are remembered besides
   * (concurrency and maxQueued bound them; a call whose deadline passes before
   * it runs counts as finished). Default 10,000.
   */
  resultCacheSize?: number
  /**
   * Most bytes of replies kept in that cache. Past it the oldest replies are
   * dropped but their calls still remembered: a resend of one of those gets
   * RpcResultLostError rather than running twice. Default 32 MiB.
   */
  resultCacheBytes?: number
  /**
   * Longest TTL of a reply, in seconds: how long it may wait for a disconnected
   * caller. A reply's TTL is the request's remaining TTL (from the caller's
   * timeout) capped by this. A caller that comes back later resends the call and is
   * answered from the cache. Default 600.
   */
  replyTtl?: number
  /**
   * Most bytes of replies waiting in the Messaging's queues, not yet written to
   * their callers (ones that went away, or do not read). Past it the replies
   * waiting for callers that are disconnected are taken back, oldest first, and
   * if that is not enough the new reply is dropped (logged): a caller of this
   * library resends its call when it comes back and is answered from the result
   * cache. So remotes that call and go, under one identity after another,
   * cannot make replies pile up here. A reply to a caller whose queue is full is
   * dropped the same way. Default 64 MiB.
   */
  maxQueuedReplyBytes?: number
  /**
   * Limits on decoded arguments and encoded results: `maxDepth`, `maxBytes`,
   * `maxValues` for both formats, `maxMemo` and `maxIntegerBytes` for pickles.
   * Default: the codecs' defaults (`defaultCodecLimits`, `defaultPickleLimits`).
   */
  codec?: PickleCodecOptions
  /**
   * Answer Python snakeMQ peers' RPC requests (`rpcreq` messages, pickles read by
   * the data-only codec) with snakeMQ-format replies, so a Python `RpcClient` can
   * call the objects registered here. When false such requests are logged as
   * errors and dropped, never decoded. Default true.
   */
  snakemq?: boolean
  /** Where log lines go; default the `debug` namespace `snakemq:rpc`. */
  logger?: Logger
}

export interface RegisterOptions {
  /**
   * Names of methods that are signals (run without a reply, sent by clients with
   * `.signal()`), in addition to the methods marked with `asSignal`.
   */
  signals?: Iterable<string>
  /**
   * Milliseconds a call may run: for every method, or per method name. Past it
   * the caller gets RpcTimeoutError (a Python caller, TimeoutError) and the call
   * no longer holds a slot; what the method returns later is dropped. Default: none.
   */
  timeout?: number | Readonly<Record<string, number>>
}

export const rpcServerDefaults = {
  transferExceptions: true,
  snakemq: true,
  concurrency: 64,
  maxQueued: 10_000,
  resultCacheSize: 10_000,
  resultCacheBytes: 32 * 1024 * 1024,
  replyTtl: 600,
  maxQueuedReplyBytes: 64 * 1024 * 1024
} as const

function positiveInt (value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(value)}`)
  return value
}

/** A function that can be called remotely, or undefined. Never a getter's result, never anything from Object.prototype or Function.prototype. */
export function findMethod (target: object, name: string): ((...args: unknown[]) => unknown) | undefined {
  if (name === 'constructor' || name === '__proto__') return undefined
  let o: object | null = target
  while (o !== null && o !== Object.prototype && o !== Function.prototype) {
    const d = Object.getOwnPropertyDescriptor(o, name)
    // Only a data property counts: an accessor would run code just to be looked up.
    if (d !== undefined) return typeof d.value === 'function' ? d.value as (...args: unknown[]) => unknown : undefined
    o = Object.getPrototypeOf(o) as object | null
  }
  return undefined
}

interface Registered {
  readonly target: object
  readonly signals: ReadonlySet<string>
  /** Per-method timeouts in ms (`*`: every method). */
  readonly timeouts: ReadonlyMap<string, number>
}

/** Milliseconds `method` of `r` may run, or undefined. */
function methodTimeout (r: Registered, method: string): number | undefined {
  return r.timeouts.size === 0 ? undefined : r.timeouts.get(method) ?? r.timeouts.get('*')
}

/** When the caller of a request stops waiting for it (ms since the epoch): the TTL it was sent with, 0 or none meaning no deadline. */
function callerDeadline (m: Message, now: number): number {
  return m.ttl === null || m.ttl === 0 ? Infinity : now + m.ttl * 1000
}

type Method = (...args: unknown[]) => unknown

/** Runs calls and signals from peers on registered objects. See docs/RPC.md. */
export class RpcServer implements AsyncDisposable {
  /** Whether a failed call's error goes back to the caller; see RpcServerOptions. */
  transferExceptions: boolean
  readonly log: Logger
  private readonly mq: Messaging
  private readonly objects = new Map<string, Registered>()
  private readonly limiter: CallLimiter
  private readonly maxQueued: number
  private readonly replyTtl: number
  /** Replies queued, oldest first, and their bytes (some may have left their queue since: see pruneReplies()). */
  private replies: QueueEntry[] = []
  /** Whom each of `replies` is for. */
  private replyCallers: string[] = []
  private repliesHead = 0
  private replyBytes = 0
  /** How many were left when the list was last looked through, and when it was for want of room. */
  private repliesChecked = 0
  private repliesCheckedAt = 0
  private readonly maxQueuedReplyBytes: number
  private readonly codec: PickleCodecOptions | undefined
  private readonly cache: ResultCache
  /** Whether snakeMQ-format requests are answered (see RpcServerOptions.snakemq). */
  private readonly snakemq: boolean
  /** The snakeMQ-format calls seen, by caller and req_id. */
  private readonly snakeCache: KeyedResultCache
  /** Takes requests off the Messaging as they arrive (paused while maxQueued wait). */
  private readonly requests: Consumer
  /** Takes snakeMQ-format requests (paused with `requests`). */
  private readonly pickles: Consumer
  /** Takes snakeMQ-format replies when this Messaging has no RpcClient, to drop them. */
  private readonly pickledReplies: Consumer
  private paused = false
  private closing: Promise<void> | null = null
  /** What parseNames() parsed last, and the bytes it parsed that from. */
  private lastNames: Request | null = null
  private lastSegment: Uint8Array = new Uint8Array(0)

  constructor (mq: Messaging, options: RpcServerOptions = {}) {
    if (typeof (mq as Partial<Messaging> | null)?.consume !== 'function') throw new InvalidArgumentError('new RpcServer(mq): the first argument must be a Messaging (new Messaging(link, { identity }))')
    if (hasServer(mq)) throw new InvalidArgumentError('this Messaging already has an RpcServer (close it first): two would both run every request')
    this.mq = mq
    this.transferExceptions = options.transferExceptions ?? rpcServerDefaults.transferExceptions
    this.log = options.logger ?? debugLogger('rpc')
    const concurrency = positiveInt(options.concurrency, 'concurrency', rpcServerDefaults.concurrency)
    this.maxQueued = positiveInt(options.maxQueued, 'maxQueued', rpcServerDefaults.maxQueued)
    const cacheSize = positiveInt(options.resultCacheSize, 'resultCacheSize', rpcServerDefaults.resultCacheSize)
    const cacheBytes = positiveInt(options.resultCacheBytes, 'resultCacheBytes', rpcServerDefaults.resultCacheBytes)
    this.cache = new ResultCache(cacheSize, cacheBytes)
    this.snakeCache = new KeyedResultCache(cacheSize, cacheBytes)
    this.replyTtl = options.replyTtl ?? rpcServerDefaults.replyTtl
    if (typeof this.replyTtl !== 'number' || !(this.replyTtl >= 0)) throw new InvalidArgumentError(`replyTtl must be a number of seconds >= 0, got ${String(this.replyTtl)}`)
    this.maxQueuedReplyBytes = positiveInt(options.maxQueuedReplyBytes, 'maxQueuedReplyBytes', rpcServerDefaults.maxQueuedReplyBytes)
    this.codec = options.codec
    // Checks the limits now, not at the first call.
    if (this.codec !== undefined) { encodeValue(null, this.codec); resolvePickleLimits(this.codec) }
    this.snakemq = options.snakemq ?? rpcServerDefaults.snakemq
    this.limiter = new CallLimiter(concurrency, positiveInt(options.perPeerConcurrency, 'perPeerConcurrency', Math.max(1, Math.ceil(concurrency / 2))))
    addServer(mq)
    // Replies too when this Messaging has no RpcClient: someone must take them.
    this.requests = mq.consume({ prefix: RPC_MAGIC, filter: (m) => !isReply(m.data) || !hasClients(mq) }, (m) => { this.onRequest(m) })
    this.pickles = mq.consume({ prefix: SNAKEMQ_REQUEST_PREFIX }, (m) => { this.onSnakeRequest(m) })
    this.pickledReplies = mq.consume({ prefix: SNAKEMQ_REPLY_PREFIX, filter: () => !hasClients(mq) }, (m) => {
      this.log.debug('dropped a snakeMQ RPC reply: no RpcClient on this Messaging', { from: m.from })
    })
  }

  /**
   * Makes the methods of `target` callable as `name`: its own function-valued
   * properties and those of its prototypes (class methods), except anything from
   * Object.prototype or Function.prototype, `constructor` and accessors. Replaces an
   * object registered under the same name. Throws InvalidArgumentError for a name
   * longer than 255 bytes of UTF-8 or a `signals` entry that is not a method.
   */
  register (name: string, target: object, options: RegisterOptions = {}): void {
    encodeName(name, 'the object name')
    if (target === null || (typeof target !== 'object' && typeof target !== 'function')) {
      throw new InvalidArgumentError(`register: the target of ${JSON.stringify(name)} must be an object`)
    }
    const signals = new Set<string>()
    for (const s of options.signals ?? []) {
      if (typeof s !== 'string' || findMethod(target, s) === undefined) {
        throw new InvalidArgumentError(`register: signals: ${JSON.stringify(s)} is not a method of ${JSON.stringify(name)}`)
      }
      signals.add(s)
    }
    const timeouts = new Map<string, number>()
    const t = options.timeout
    const check = (ms: unknown, what: string): number => {
      if (typeof ms !== 'number' || !(ms > 0) || !Number.isFinite(ms)) throw new InvalidArgumentError(`register: ${what} must be a positive number of milliseconds, got ${String(ms)}`)
      return ms
    }
    if (typeof t === 'number') timeouts.set('*', check(t, 'timeout'))
    else if (t !== undefined) {
      if (typeof t !== 'object' || t === null) throw new InvalidArgumentError('register: timeout must be a number of milliseconds or { method: ms }')
      for (const [method, ms] of Object.entries(t)) {
        if (findMethod(target, method) === undefined) throw new InvalidArgumentError(`register: timeout: ${JSON.stringify(method)} is not a method of ${JSON.stringify(name)}`)
        timeouts.set(method, check(ms, `timeout of ${method}`))
      }
    }
    this.objects.set(name, { target, signals, timeouts })
  }

  /** Stops serving `name`; calls already running finish. Returns false if nothing was registered under it. */
  unregister (name: string): boolean {
    return this.objects.delete(name)
  }

  /** Names of the registered objects. */
  registered (): string[] { return [...this.objects.keys()] }

  /** Calls and signals running now. */
  get running (): number { return this.limiter.running }
  /** Calls and signals waiting for a slot. */
  get waiting (): number { return this.limiter.waiting }

  /**
   * Stops taking requests; resolves once the calls already taken have finished and
   * their replies are queued. Does not close the Messaging. Idempotent.
   */
  async close (): Promise<void> {
    this.closing ??= (async () => {
      this.requests.end()
      this.pickles.end()
      this.pickledReplies.end()
      await this.limiter.idle()
      removeServer(this.mq)
      // The Messaging goes on: requests that reach it now are answered "unknown object", not handed to the application.
      answerOrphans(this.mq, this.log)
    })()
    await this.closing
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }

  /** A request arrived (synchronously, from the Messaging's receive path). */
  private onRequest (m: Message): void {
    this.receive(m)
    this.backpressure()
  }

  /**
   * Past maxQueued waiting calls, requests wait in the Messaging, whose receive
   * buffer then fills and stops reading from the sockets.
   */
  private backpressure (): void {
    if (!this.paused && this.limiter.waiting >= this.maxQueued) {
      this.paused = true
      this.requests.pause()
      this.pickles.pause()
      void this.limiter.waitingBelow(this.maxQueued).then(() => {
        this.paused = false
        this.requests.resume()
        this.pickles.resume()
      })
    }
  }

  /** Takes one request off the Messaging: checks it, answers what it can at once, queues what must run. */
  private receive (m: Message): void {
    const data = m.data
    const from = m.from
    if (data.length < BODY_OFFSET || !hasMagic(data)) {
      this.log.warn('dropped an RPC message too short to carry a request', { from, bytes: data.length })
      return
    }
    const kind = data[7]!
    if (isReply(data)) {
      this.log.debug('dropped an RPC reply: no RpcClient on this Messaging', { from })
      return
    }
    if (data[6] !== RPC_VERSION) {
      this.log.warn('refused an RPC request of an unsupported version', { from, version: data[6], kind })
      this.reply(m, failedMessage(data, Status.UnsupportedVersion, `this server speaks RPC version ${RPC_VERSION}`))
      return
    }
    if (kind !== Kind.Call && kind !== Kind.Signal) {
      this.log.warn('refused an RPC request of an unknown kind', { from, kind })
      this.reply(m, failedMessage(data, Status.BadRequest, `unknown request kind ${kind}`))
      return
    }
    const req = this.parseNames(data)
    if (typeof req === 'string') {
      this.log.warn('refused a malformed RPC request', { from, reason: req })
      if (kind === Kind.Call) this.reply(m, failedMessage(data, Status.BadRequest, req))
      return
    }
    const { object, method } = req
    const registered = this.objects.get(object)
    const fn = registered === undefined ? undefined : findMethod(registered.target, method)
    const isSignal = fn !== undefined && (registered!.signals.has(method) || isMarkedSignal(fn))

    if (kind === Kind.Signal) {
      if (fn === undefined) {
        this.log.warn(registered === undefined ? 'signal to an unknown object' : 'signal to an unknown method', { from, object, method })
      } else if (!isSignal) {
        this.log.warn('a regular method was sent as a signal; not run (call it, or mark it as a signal)', { from, object, method })
      } else {
        const args = this.decodeArgs(data, req.argsOffset)
        if (args instanceof Error) {
          this.log.warn('dropped a signal whose arguments could not be decoded', { from, object, method, error: args })
        } else {
          this.limiter.run(from, () => this.runSignal(registered!.target, fn, args, from, object, method))
        }
      }
      return
    }

    // A call: answered from the cache if it was seen before.
    const seen = this.cache.get(data, from)
    if (seen !== undefined) {
      this.log.debug('a call seen before', { from, object, method, state: seen.state })
      if (seen.state === DONE) this.reply(m, seen.reply!)
      else if (seen.state === LOST) this.reply(m, failedMessage(data, Status.ResultLost, 'the call ran, but its result is no longer held'))
      // Still running: its reply goes out when it is done.
      return
    }
    if (registered === undefined) { this.reply(m, failedMessage(data, Status.UnknownObject, object)); return }
    if (fn === undefined) { this.reply(m, failedMessage(data, Status.UnknownMethod, method)); return }
    if (isSignal) {
      this.log.warn('a signal was called as a regular method; refused', { from, object, method })
      this.reply(m, failedMessage(data, Status.CallKind, method))
      return
    }
    const args = this.decodeArgs(data, req.argsOffset)
    if (args instanceof Error) {
      this.log.warn('refused a call whose arguments could not be decoded', { from, object, method, error: args })
      this.reply(m, failedMessage(data, Status.BadArguments, args.message))
      return
    }
    const entry = this.cache.start(data, from)
    const limiter = this.limiter
    const timeout = methodTimeout(registered, method)
    // The slot is held until the call is done, its caller gave up, or its timeout ran out.
    const now = Date.now()
    const deadline = Math.min(callerDeadline(m, now), timeout === undefined ? Infinity : now + timeout)
    if (limiter.tryEnter(from)) {
      // A slot is free: run it now. A method that returns a plain value is
      // answered before this returns, with no closure and no promise on the way.
      const pending = this.execute(registered.target, fn, args, m, object, method, entry, timeout)
      if (pending === undefined) limiter.leave(from)
      else limiter.track(from, pending, deadline)
    } else {
      // Dropped unrun when its caller's deadline passes first: its cache entry is finished then, or it would stay "running" for good.
      limiter.run(from, () => this.execute(registered.target, fn, args, m, object, method, entry, timeout), deadline, () => {
        this.cache.finish(entry, failedMessage(data, Status.Timeout, 'its deadline passed before it could run'))
      })
    }
  }

  /** Runs a call and sends its reply; returns a promise if the method's result is one. */
  /**
   * parseRequest(), remembering the names of the last request: consecutive
   * requests mostly name the same object and method, and comparing their bytes
   * costs less than decoding two strings and making a Request each time.
   */
  private parseNames (data: Uint8Array): Request | string {
    const last = this.lastNames
    const seg = this.lastSegment
    if (last !== null && last.argsOffset <= data.length) {
      let same = true
      for (let i = 0, j = BODY_OFFSET; i < seg.length; i++, j++) {
        if (data[j] !== seg[i]) { same = false; break }
      }
      if (same) return last
    }
    const req = parseRequest(data)
    if (typeof req !== 'string') {
      // Only its names and argsOffset are read again (a request's kind is read from its own bytes).
      this.lastNames = req
      this.lastSegment = data.slice(BODY_OFFSET, req.argsOffset)
    }
    return req
  }

  private execute (target: object, fn: Method, args: unknown[], m: Message, object: string, method: string, entry: RunningCall, timeout?: number): void | Promise<void> {
    let outcome: Uint8Array | Promise<Uint8Array>
    try {
      outcome = this.runCall(target, fn, args, m.data, m.from, object, method)
    } catch (err) {
      this.callFailed(err, m, object, method, entry)
      return
    }
    if (outcome instanceof Uint8Array) { this.callDone(outcome, m, entry); return }
    if (timeout === undefined) {
      return outcome.then((reply) => { this.callDone(reply, m, entry) }, (err: unknown) => { this.callFailed(err, m, object, method, entry) })
    }
    // With a timeout: whichever comes first answers; the other is dropped.
    let answered = false
    const once = (reply: Uint8Array): void => {
      if (answered) return
      answered = true
      clearTimeout(timer)
      this.callDone(reply, m, entry)
    }
    const timer = setTimeout(() => {
      this.log.warn('a call ran out of its timeout', { from: m.from, object, method, timeout })
      once(failedMessage(m.data, Status.Timeout, String(timeout)))
    }, timeout)
    return outcome.then(once, (err: unknown) => {
      if (answered) return
      answered = true
      clearTimeout(timer)
      this.callFailed(err, m, object, method, entry)
    })
  }

  private callDone (reply: Uint8Array, m: Message, entry: RunningCall): void {
    // The cache keeps what the caller can take, when its limit is known now.
    const out = this.fitted(m, reply)
    this.cache.finish(entry, out)
    this.queueReply(m, out)
  }

  private callFailed (err: unknown, m: Message, object: string, method: string, entry: RunningCall): void {
    // Only an error object whose own getters throw while it is reported gets here.
    this.log.error('the outcome of a call could not be encoded', { from: m.from, object, method, error: describeError(err) })
    this.callDone(failedMessage(m.data, Status.BadResult, 'the outcome of the call could not be encoded'), m, entry)
  }

  private decodeArgs (data: Uint8Array, offset: number): unknown[] | Error {
    try {
      const args = decodeValue(tail(data, offset), this.codec)
      return Array.isArray(args) ? args : new InvalidArgumentError('the arguments are not an array')
    } catch (err) {
      return err as Error
    }
  }

  /** Runs one call: its reply message, at once for a method that returned a plain value. */
  private runCall (target: object, fn: Method, args: unknown[], request: Uint8Array, from: string, object: string, method: string): Uint8Array | Promise<Uint8Array> {
    let result: unknown
    try {
      result = fn.apply(target, args)
    } catch (err) {
      return this.thrownReply(err, request, from, object, method)
    }
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        (value) => this.resultReply(value, request, from, object, method),
        (err: unknown) => this.thrownReply(err, request, from, object, method)
      )
    }
    return this.resultReply(result, request, from, object, method)
  }

  private resultReply (result: unknown, request: Uint8Array, from: string, object: string, method: string): Uint8Array {
    try {
      const out = encodeAfter(BODY_OFFSET, result, this.codec)
      writeHeader(out, Kind.Result)
      copyId(out, request)
      return out
    } catch (err) {
      this.log.warn('the result of a call could not be encoded', { from, object, method, error: err as Error })
      return failedMessage(request, Status.BadResult, (err as Error).message)
    }
  }

  private thrownReply (err: unknown, request: Uint8Array, from: string, object: string, method: string): Uint8Array {
    if (!this.transferExceptions) {
      this.log.error('a call failed (not transferred to the caller)', { from, object, method, error: describeError(err) })
      return failedMessage(request, Status.Withheld, '')
    }
    const error = thrownError(err)
    const out = replyMessage(request, Kind.Thrown, this.encodeError(error))
    // Too large for the caller (a long message, a large data property): its name and the start of its message and stack are sent.
    if (out.byteLength <= this.mq.maxMessageData(from)) return out
    return replyMessage(request, Kind.Thrown, this.encodeError(plainError(error)))
  }

  private runSignal (target: object, fn: Method, args: unknown[], from: string, object: string, method: string): void | Promise<void> {
    const failed = (err: unknown): void => { this.log.error('a signal failed', { from, object, method, error: describeError(err) }) }
    try {
      const result = fn.apply(target, args)
      if (isThenable(result)) return Promise.resolve(result).then(() => {}, failed)
    } catch (err) {
      failed(err)
    }
  }

  /** What a call threw, as codec bytes: the error itself, or a plainer copy when it cannot be encoded within the limits. */
  private encodeError (error: Error): Uint8Array {
    try {
      return encodeValue(error, this.codec)
    } catch {
      try {
        return encodeValue(plainError(error), this.codec)
      } catch {
        return encodeValue(new Error('the remote error could not be encoded'))
      }
    }
  }

  // ---- snakeMQ-format requests (docs/RPC.md, section 5) -----------------------

  /** A Python snakeMQ peer's request: read as data, run as snakeMQ's RpcServer runs it, answered in its format. */
  private onSnakeRequest (m: Message): void {
    const from = m.from
    if (!this.snakemq) {
      this.log.error('refused a snakeMQ RPC request: answering them is off (RpcServer option snakemq)', { from, uuid: m.uuid, bytes: m.data.length })
      return
    }
    const body = tail(m.data, SNAKEMQ_PREFIX_BYTES)
    let decoded: unknown
    try {
      decoded = decodePickle(body, this.codec)
    } catch (err) {
      this.log.error('refused a snakeMQ RPC request: its pickle is not plain data, and this library never runs a pickle', {
        from, uuid: m.uuid, bytes: m.data.length, error: err as Error
      })
      // A caller that would wait for ever is told, when its req_id can be found in the bytes.
      const reqId = findReqIds(body)[0]
      if (reqId !== undefined) {
        this.snakeFailed(m, reqId, new PythonException('UnpicklingError', [`${JSON.stringify(this.mq.identity)} refused the request: ${(err as Error).message}`], { module: '_pickle' }))
      }
      return
    }
    const req = readSnakeRequest(decoded)
    if (typeof req === 'string') {
      this.log.warn('refused a malformed snakeMQ RPC request', { from, reason: req })
      const reqId = (decoded as { req_id?: unknown } | null)?.req_id
      if (reqId instanceof Uint8Array && reqId.length > 0 && reqId.length <= 64) this.snakeFailed(m, reqId, new PythonException('TypeError', [`a malformed RPC request: ${req}`]))
      return
    }
    this.receiveSnake(m, req)
    this.backpressure()
  }

  private receiveSnake (m: Message, req: SnakeRequest): void {
    const { object, method } = req
    const from = m.from
    const registered = this.objects.get(object)
    const fn = registered === undefined ? undefined : findMethod(registered.target, method)
    const marked = fn !== undefined && (registered!.signals.has(method) || isMarkedSignal(fn))
    // Python keyword arguments reach a JavaScript method as one more argument: an object.
    const args = Object.keys(req.kwargs).length === 0 ? req.args : [...req.args, req.kwargs]
    if (req.command === 'signal') {
      if (fn === undefined) {
        this.log.warn(registered === undefined ? 'snakeMQ signal to an unknown object' : 'snakeMQ signal to an unknown method', { from, object, method })
        return
      }
      // As snakeMQ's server does: the mismatch is warned about, and the method runs.
      if (!marked) this.log.warn('a regular method was sent as a snakeMQ signal; run, as snakeMQ runs it', { from, object, method })
      this.limiter.run(from, () => this.runSignal(registered!.target, fn, args, from, object, method))
      return
    }
    const reqId = req.reqId!
    const key = `${from}\u0000${toHex(reqId)}`
    const seen = this.snakeCache.get(key)
    if (seen !== undefined) {
      // Resent after a reconnect: answered, not run again.
      this.log.debug('a snakeMQ call seen before', { from, object, method, state: seen.state })
      if (seen.state === DONE) this.reply(m, seen.reply!, reqId)
      else if (seen.state === LOST) this.snakeFailed(m, reqId, new PythonException('RuntimeError', [`${object}.${method} ran, but its result is no longer held`]))
      return
    }
    if (registered === undefined) { this.snakeFailed(m, reqId, noInstanceError(object)); return }
    if (fn === undefined) { this.snakeFailed(m, reqId, noMethodError(method)); return }
    if (marked) this.log.warn('a signal was called as a regular snakeMQ call; run, as snakeMQ runs it', { from, object, method })
    this.snakeCache.start(key)
    const target = registered.target
    const timeout = methodTimeout(registered, method)
    const task = (): void | Promise<void> => this.executeSnake(target, fn, args, m, reqId, key, object, method, timeout)
    const limiter = this.limiter
    // snakeMQ's calls carry no deadline (TTL 0); a registered timeout still frees the slot.
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout
    if (limiter.tryEnter(from)) {
      const pending = task()
      if (pending === undefined) limiter.leave(from)
      else limiter.track(from, pending, deadline)
    } else {
      limiter.run(from, task, deadline, () => {
        const e = new PythonException('TimeoutError', [`${object}.${method} did not start within its ${timeout ?? 0} ms timeout`])
        this.snakeCache.finish(key, this.snakeExceptionReply(reqId, e, formatExceptionOnly(e)))
      })
    }
  }

  private executeSnake (target: object, fn: Method, args: unknown[], m: Message, reqId: Uint8Array, key: string, object: string, method: string, timeout?: number): void | Promise<void> {
    let answered = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const done = (reply: Uint8Array): void => {
      if (answered) return
      answered = true
      if (timer !== undefined) clearTimeout(timer)
      const out = this.fitted(m, reply, reqId)
      this.snakeCache.finish(key, out)
      this.queueReply(m, out)
    }
    let result: unknown
    try {
      result = fn.apply(target, args)
    } catch (err) {
      done(this.snakeThrown(err, reqId, m.from, object, method))
      return
    }
    if (isThenable(result)) {
      if (timeout !== undefined) {
        timer = setTimeout(() => {
          this.log.warn('a snakeMQ call ran out of its timeout', { from: m.from, object, method, timeout })
          const e = new PythonException('TimeoutError', [`${object}.${method} did not finish within its ${timeout} ms timeout`])
          done(this.snakeExceptionReply(reqId, e, formatExceptionOnly(e)))
        }, timeout)
      }
      return Promise.resolve(result).then(
        (value) => { done(this.snakeReturned(value, reqId, m.from, object, method)) },
        (err: unknown) => { done(this.snakeThrown(err, reqId, m.from, object, method)) }
      )
    }
    done(this.snakeReturned(result, reqId, m.from, object, method))
  }

  private snakeReturned (value: unknown, reqId: Uint8Array, from: string, object: string, method: string): Uint8Array {
    try {
      return snakeReturnMessage(reqId, value, this.codec)
    } catch (err) {
      this.log.warn('the result of a snakeMQ call could not be pickled', { from, object, method, error: err as Error })
      return this.snakeExceptionReply(reqId, new PythonException('TypeError', [`the result of ${object}.${method} could not be sent: ${(err as Error).message}`]), '')
    }
  }

  private snakeThrown (err: unknown, reqId: Uint8Array, from: string, object: string, method: string): Uint8Array {
    if (!this.transferExceptions) {
      this.log.error('a call failed (not transferred to the caller)', { from, object, method, error: describeError(err) })
      return this.snakeExceptionReply(reqId, new PythonException('Exception', [`${object}.${method} failed on ${JSON.stringify(this.mq.identity)} (the server does not transfer exceptions)`]), '')
    }
    const error = thrownError(err)
    let stack: unknown
    try {
      stack = error.stack
    } catch {
      stack = undefined
    }
    // The traceback text snakeMQ sends as exception_format: here, the JavaScript stack.
    const format = typeof stack === 'string' ? `${stack}\n` : ''
    const out = this.snakeExceptionReply(reqId, error, format)
    if (out.byteLength <= this.mq.maxMessageData(from)) return out
    // Too large for the caller: its name and the start of its message and traceback are sent.
    return this.snakeExceptionReply(reqId, snakePlain(error), format.slice(0, 16_384))
  }

  /** A reply carrying `error`; a plainer copy of it when it cannot be pickled within the limits. */
  private snakeExceptionReply (reqId: Uint8Array, error: Error, format: string): Uint8Array {
    try {
      return snakeExceptionMessage(reqId, error, format, this.codec)
    } catch {
      try {
        return snakeExceptionMessage(reqId, snakePlain(error), format.slice(0, 16_384), this.codec)
      } catch {
        // A class Python cannot load (builtins.AppError): its name and message still reach the caller.
        return snakeExceptionMessage(reqId, new PythonException('Exception', [`${String(error.name).slice(0, 256)}: ${String(error.message).slice(0, 4096)}`]), format.slice(0, 16_384))
      }
    }
  }

  /** Answers a snakeMQ call with `e` raised, as snakeMQ's server would have raised it. */
  private snakeFailed (m: Message, reqId: Uint8Array, e: PythonException): void {
    this.reply(m, this.snakeExceptionReply(reqId, e, formatExceptionOnly(e)), reqId)
  }

  /**
   * `reply`, or, when it is larger than the caller of `request` accepts (the
   * maxPacketSize it announced), a short one saying so: the Messaging would drop
   * the reply, and the caller would wait for one that cannot come. `reqId`: the
   * request's req_id when it is in snakeMQ's format.
   */
  private fitted (request: Message, reply: Uint8Array, reqId?: Uint8Array): Uint8Array {
    const to = request.from
    const limit = this.mq.maxMessageData(to)
    if (reply.byteLength <= limit) return reply
    const why = `the reply is ${reply.byteLength} bytes, more than ${JSON.stringify(to)} accepts (${limit} bytes of message data, from its maxPacketSize)`
    this.log.warn('an RPC reply is larger than its caller accepts: answered with an error saying so', { to, bytes: reply.byteLength, limit })
    return reqId === undefined
      ? failedMessage(request.data, Status.BadResult, why)
      : this.snakeExceptionReply(reqId, new PythonException('ValueError', [why]), '')
  }

  /**
   * Queues `reply` for the caller of `request` (fitted() first: a result held in
   * the cache, or made while its caller was away, may be larger than the caller
   * that came back accepts). `reqId`: as fitted()'s.
   */
  private reply (request: Message, reply: Uint8Array, reqId?: Uint8Array): void {
    this.queueReply(request, this.fitted(request, reply, reqId))
  }

  /** Queues a reply that fitted() passed. */
  private queueReply (request: Message, reply: Uint8Array): void {
    const ttl = Math.min(this.replyTtl, Math.max(1, request.ttl ?? Infinity))
    const to = request.from
    if (this.replyBytes + reply.byteLength > this.maxQueuedReplyBytes && !this.roomForReply(reply.byteLength)) {
      this.log.warn('an RPC reply was dropped: the replies waiting for their callers hold maxQueuedReplyBytes', {
        to, bytes: reply.byteLength, held: this.replyBytes, limit: this.maxQueuedReplyBytes
      })
      return
    }
    // replyTtl 0: the reply goes only to a caller connected now. A request sent
    // without acknowledgement gets its reply so too: the caller resends the call
    // if the reply is lost, and the result cache answers it (an older caller
    // relies on acknowledged delivery, and gets it). A full queue drops the reply
    // rather than have it wait in memory for room.
    const queued = this.mq.post(to, reply, ttl, this.replyFailed, to, (request.flags & FLAG_UNACKED) !== 0, true)
    if (queued !== null) {
      this.pruneReplies()
      this.replies.push(queued)
      this.replyCallers.push(to)
      this.replyBytes += queued.size
      // Behind one that still waits, those that left are dropped from the list once it has doubled: it holds no more than twice what waits.
      if (this.replies.length - this.repliesHead > 2 * Math.max(1024, this.repliesChecked)) this.compactReplies(0)
    }
  }

  /**
   * Makes room for a reply of `size` bytes within maxQueuedReplyBytes: stops
   * counting the replies that left their queue, then takes back those waiting for
   * callers that are disconnected, oldest first. Whether it fits then.
   */
  private roomForReply (size: number): boolean {
    this.pruneReplies(this.maxQueuedReplyBytes - size)
    // Behind a reply that still waits for a connected caller: the whole list is
    // looked through at most every 100 ms, so a full budget costs no pass per reply.
    const now = Date.now()
    if (this.replyBytes + size > this.maxQueuedReplyBytes && now - this.repliesCheckedAt >= 100) {
      this.repliesCheckedAt = now
      this.compactReplies(size)
    }
    return this.replyBytes + size <= this.maxQueuedReplyBytes
  }

  /**
   * Drops the replies that left their queue from the list; while the rest hold
   * more than room for `size` more bytes, takes back those waiting for callers
   * that are disconnected, oldest first.
   */
  private compactReplies (size: number): void {
    const entries: QueueEntry[] = []
    const callers: string[] = []
    let bytes = 0
    for (let i = this.repliesHead; i < this.replies.length; i++) {
      const e = this.replies[i]!
      if (this.mq.stillQueued(e)) { entries.push(e); callers.push(this.replyCallers[i]!); bytes += e.size }
    }
    let kept = 0
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!
      if (bytes + size > this.maxQueuedReplyBytes && this.takeBack(callers[i]!, e)) { bytes -= e.size; continue }
      entries[kept] = e
      callers[kept++] = callers[i]!
    }
    entries.length = kept
    callers.length = kept
    this.replies = entries
    this.replyCallers = callers
    this.repliesHead = 0
    this.replyBytes = bytes
    this.repliesChecked = kept
  }

  /**
   * Stops counting the replies at the front of the list that left their queue;
   * while they hold more than `room` bytes, also takes back those at the front
   * that wait for a caller that is disconnected.
   */
  private pruneReplies (room = Infinity): void {
    const list = this.replies
    while (this.repliesHead < list.length) {
      const e = list[this.repliesHead]!
      if (this.mq.stillQueued(e) && !(this.replyBytes > room && this.takeBack(this.replyCallers[this.repliesHead]!, e))) break
      this.replyBytes -= e.size
      list[this.repliesHead] = undefined as unknown as QueueEntry
      this.replyCallers[this.repliesHead++] = ''
    }
    if (this.repliesHead === list.length) { list.length = 0; this.replyCallers.length = 0; this.repliesHead = 0 }
  }

  /** Takes back a reply waiting for `caller` if that caller is disconnected (it resends the call when it comes back). */
  private takeBack (caller: string, e: QueueEntry): boolean {
    if (this.mq.isConnected(caller) || !this.mq.withdraw(caller, e)) return false
    this.log.debug('an RPC reply waiting for a caller that is away was taken back, to make room', { to: caller, bytes: e.size })
    return true
  }

  private readonly replyFailed = (err: unknown, to: string): void => {
    // Refused when queued, or (TTL 0, replyTtl 0) dropped after: its caller went before it was written.
    this.log.warn('an RPC reply was not sent', { to, error: err as Error })
  }
}

function isThenable (v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function'
}

/** A thrown value that is not an error, as an error that carries it. */
function nonError (value: unknown): Error {
  let text: string
  try {
    text = typeof value === 'string' ? value : `a non-error value was thrown: ${String(value)}`
  } catch {
    text = 'a non-error value was thrown'
  }
  const error = new Error(text)
  Object.defineProperty(error, 'thrown', { value, enumerable: true, configurable: true, writable: true })
  return error
}

function describeError (err: unknown): Error {
  return err instanceof Error ? err : nonError(err)
}

/** What a call threw, as an error (a thrown non-error is wrapped). */
function thrownError (thrown: unknown): Error {
  return thrown instanceof Error || isNativeError(thrown) ? thrown as Error : nonError(thrown)
}

/** A plainer copy of `error`: its name, the start of its message and stack, and a short `code`, without its other properties. */
function plainError (error: Error): Error {
  const plain = new Error(String(error.message).slice(0, 4096))
  plain.name = typeof error.name === 'string' ? error.name.slice(0, 256) : 'Error'
  plain.stack = typeof error.stack === 'string' ? error.stack.slice(0, 16_384) : ''
  const code = (error as { code?: unknown }).code
  if (typeof code === 'number' || (typeof code === 'string' && code.length <= 256)) Object.assign(plain, { code })
  return plain
}

/** A plainer copy of `error` to raise in a Python caller: its name (and module) and the start of its message. */
function snakePlain (error: Error): PythonException {
  const python = error instanceof PythonException
  return new PythonException(python ? error.name : 'Exception', [String(error.message).slice(0, 4096)], python ? { module: error.module } : {})
}
