// RpcServer: runs the calls and signals peers send to the objects registered on
// it, at most `concurrency` at a time, and sends each call's outcome back. A call
// resent by its client (after a reconnect) is recognized by its request id and
// answered from a bounded cache instead of being run again. Requests come off a
// Messaging shared with the application, routed by the RPC prefix (docs/RPC.md);
// pickled snakeMQ requests are consumed too, and refused without being decoded.
import type { Messaging } from '../messaging/messaging.ts'
import type { Message } from '../messaging/types.ts'
import type { Consumer } from '../messaging/inbox.ts'
import { InvalidArgumentError } from '../errors.ts'
import { FLAG_UNACKED } from '../transforms/frames.ts'
import { debugLogger, type Logger } from '../logging.ts'
import { decodeValue, encodeAfter, encodeValue, type RpcCodecOptions } from './codec.ts'
import { isNativeError } from './errors.ts'
import { isMarkedSignal } from './remote.ts'
import { addServer, hasClients, hasServer, removeServer } from './registry.ts'
import { CallLimiter } from './limiter.ts'
import { DONE, LOST, ResultCache, type RunningCall } from './result-cache.ts'
import {
  BODY_OFFSET, Kind, RPC_MAGIC, RPC_VERSION, SNAKEMQ_REQUEST_PREFIX, Status,
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
   * Most calls and signals waiting for a free slot; past this the server stops
   * taking requests off the Messaging, which in the end stops reading from the
   * sockets (backpressure). Default 10,000.
   */
  maxQueued?: number
  /**
   * How many recent calls (per request id and peer) are remembered, running or
   * done, so that a call resent after a reconnect is not run again but answered
   * with its first result. Default 10,000.
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
  /** Limits on decoded arguments and encoded results. Default: the codec's defaults. */
  codec?: RpcCodecOptions
  /** Where log lines go; default the `debug` namespace `snakemq:rpc`. */
  logger?: Logger
}

export interface RegisterOptions {
  /**
   * Names of methods that are signals (run without a reply, sent by clients with
   * `.signal()`), in addition to the methods marked with `asSignal`.
   */
  signals?: Iterable<string>
}

export const rpcServerDefaults = {
  transferExceptions: true,
  concurrency: 64,
  maxQueued: 10_000,
  resultCacheSize: 10_000,
  resultCacheBytes: 32 * 1024 * 1024,
  replyTtl: 600
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
  private readonly codec: RpcCodecOptions | undefined
  private readonly cache: ResultCache
  /** Takes requests off the Messaging as they arrive (paused while maxQueued wait). */
  private readonly requests: Consumer
  /** Takes pickled snakeMQ requests, to refuse them. */
  private readonly pickles: Consumer
  private paused = false
  private closing: Promise<void> | null = null
  /** What parseNames() parsed last, and the bytes it parsed that from. */
  private lastNames: Request | null = null
  private lastSegment: Uint8Array = new Uint8Array(0)

  constructor (mq: Messaging, options: RpcServerOptions = {}) {
    if (hasServer(mq)) throw new InvalidArgumentError('this Messaging already has an RpcServer (close it first): two would both run every request')
    this.mq = mq
    this.transferExceptions = options.transferExceptions ?? rpcServerDefaults.transferExceptions
    this.log = options.logger ?? debugLogger('rpc')
    const concurrency = positiveInt(options.concurrency, 'concurrency', rpcServerDefaults.concurrency)
    this.maxQueued = positiveInt(options.maxQueued, 'maxQueued', rpcServerDefaults.maxQueued)
    this.cache = new ResultCache(
      positiveInt(options.resultCacheSize, 'resultCacheSize', rpcServerDefaults.resultCacheSize),
      positiveInt(options.resultCacheBytes, 'resultCacheBytes', rpcServerDefaults.resultCacheBytes)
    )
    this.replyTtl = options.replyTtl ?? rpcServerDefaults.replyTtl
    if (typeof this.replyTtl !== 'number' || !(this.replyTtl >= 0)) throw new InvalidArgumentError(`replyTtl must be a number of seconds >= 0, got ${String(this.replyTtl)}`)
    this.codec = options.codec
    if (this.codec !== undefined) encodeValue(null, this.codec) // checks the limits now, not at the first call
    this.limiter = new CallLimiter(concurrency)
    addServer(mq)
    // Replies too when this Messaging has no RpcClient: someone must take them.
    this.requests = mq.consume({ prefix: RPC_MAGIC, filter: (m) => !isReply(m.data) || !hasClients(mq) }, (m) => { this.onRequest(m) })
    this.pickles = mq.consume({ prefix: SNAKEMQ_REQUEST_PREFIX }, (m) => {
      this.log.error('refused a snakeMQ RPC request: it is a Python pickle, which this library never decodes', {
        from: m.from, uuid: m.uuid, bytes: m.data.length
      })
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
    this.objects.set(name, { target, signals })
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
      await this.limiter.idle()
      removeServer(this.mq)
    })()
    await this.closing
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }

  /** A request arrived (synchronously, from the Messaging's receive path). */
  private onRequest (m: Message): void {
    this.receive(m)
    // Backpressure: past maxQueued waiting calls, requests wait in the Messaging,
    // whose receive buffer then fills and stops reading from the sockets.
    if (!this.paused && this.limiter.waiting >= this.maxQueued) {
      this.paused = true
      this.requests.pause()
      void this.limiter.waitingBelow(this.maxQueued).then(() => {
        this.paused = false
        this.requests.resume()
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
          this.limiter.run(() => this.runSignal(registered!.target, fn, args, from, object, method))
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
    if (limiter.tryEnter()) {
      // A slot is free: run it now. A method that returns a plain value is
      // answered before this returns, with no closure and no promise on the way.
      const pending = this.execute(registered.target, fn, args, m, object, method, entry)
      if (pending === undefined) limiter.leave()
      else pending.then(limiter.leave, limiter.leave)
    } else {
      limiter.run(() => this.execute(registered.target, fn, args, m, object, method, entry))
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

  private execute (target: object, fn: Method, args: unknown[], m: Message, object: string, method: string, entry: RunningCall): void | Promise<void> {
    let outcome: Uint8Array | Promise<Uint8Array>
    try {
      outcome = this.runCall(target, fn, args, m.data, m.from, object, method)
    } catch (err) {
      this.callFailed(err, m, object, method, entry)
      return
    }
    if (outcome instanceof Uint8Array) { this.callDone(outcome, m, entry); return }
    return outcome.then((reply) => { this.callDone(reply, m, entry) }, (err: unknown) => { this.callFailed(err, m, object, method, entry) })
  }

  private callDone (reply: Uint8Array, m: Message, entry: RunningCall): void {
    this.cache.finish(entry, reply)
    this.reply(m, reply)
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
    return replyMessage(request, Kind.Thrown, this.encodeError(err))
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
  private encodeError (thrown: unknown): Uint8Array {
    const error = thrown instanceof Error || isNativeError(thrown) ? thrown as Error : nonError(thrown)
    try {
      return encodeValue(error, this.codec)
    } catch {
      const plain = new Error(String(error.message).slice(0, 4096))
      plain.name = typeof error.name === 'string' ? error.name.slice(0, 256) : 'Error'
      plain.stack = typeof error.stack === 'string' ? error.stack.slice(0, 16_384) : ''
      try {
        return encodeValue(plain, this.codec)
      } catch {
        return encodeValue(new Error('the remote error could not be encoded'))
      }
    }
  }

  private reply (request: Message, reply: Uint8Array): void {
    const ttl = Math.min(this.replyTtl, Math.max(1, request.ttl ?? Infinity))
    const to = request.from
    // replyTtl 0: the reply goes only to a caller connected now. A request sent
    // without acknowledgement gets its reply so too: the caller resends the call
    // if the reply is lost, and the result cache answers it (an older caller
    // relies on acknowledged delivery, and gets it).
    this.mq.post(to, reply, ttl, this.replyFailed, to, (request.flags & FLAG_UNACKED) !== 0)
  }

  private readonly replyFailed = (err: unknown, to: string): void => {
    this.log.warn('an RPC reply could not be queued', { to, error: err as Error })
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
