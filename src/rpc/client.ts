// RpcClient: calls methods of objects registered on remote RpcServers, through
// typed proxies whose calls are awaited. A call waits for its peer to connect;
// after a reconnect, the calls still waiting for a result are sent again with
// the same request id, which the server recognizes, so each call runs once and
// gets its result once. Replies come off a Messaging shared with the application,
// routed by the RPC prefix (docs/RPC.md). To a Python snakeMQ peer (one whose
// connection did not agree on this library's extensions) calls and signals go in
// snakeMQ's own format, pickles read and written by the data-only codec
// (docs/RPC.md, section 5).
import type { Messaging } from '../messaging/messaging.ts'
import type { Message, MessagingEvents } from '../messaging/types.ts'
import type { Consumer } from '../messaging/inbox.ts'
import type { QueueEntry } from '../messaging/outbox.ts'
import { ClosedError, InvalidArgumentError, MessageDroppedError, SnakeMQError, abortError } from '../errors.ts'
import { INSPECT, debugLogger, type Logger } from '../logging.ts'
import { decodeValue, encodeAfter, encodeValue } from './codec.ts'
import {
  RpcCallKindError, RpcCodecError, RpcProtocolError, RpcRemoteError, RpcResultLostError, RpcTimeoutError,
  RpcUnknownMethodError, RpcUnknownObjectError
} from './errors.ts'
import { decodePickle } from './pickle-decode.ts'
import { resolvePickleLimits, type PickleCodecOptions } from './pickle.ts'
import { PythonException } from './python-types.ts'
import {
  SNAKEMQ_PREFIX_BYTES, SNAKEMQ_REPLY_PREFIX, SNAKEMQ_REQUEST_PREFIX, findReqIds,
  readSnakeReply, snakeRequestMessage, type SnakeReply
} from './snakemq.ts'
import type { CallOptions, Remote, SignalOptions } from './remote.ts'
import { addClient, hasServer, removeClient } from './registry.ts'
import { CounterTable } from './counter-table.ts'
import {
  BODY_OFFSET, CLIENT_ID_BYTES, HEADER_BYTES, ID_BYTES, Kind, RPC_MAGIC, RPC_VERSION, Status,
  copyBytes, encodeName, failedDetail, isReply, nameSegment, readCounter, tail, writeHeader, writeId
} from './wire.ts'
import { settleFields } from '../settle.ts'
import { answerOrphans, answerSnakeWithoutServer, answerWithoutServer } from './unanswered.ts'

/** V8's Error.captureStackTrace (Node, Chromium); other engines have none, and keep the stack they made. */
const captureStackTrace = (Error as { captureStackTrace?: (target: object) => void }).captureStackTrace?.bind(Error)

export interface RpcClientOptions {
  /**
   * Default timeout of every call, in milliseconds (see CallOptions.timeout).
   * Default none: like snakeMQ, a call waits as long as it takes for its peer to
   * connect and answer. `null` or `Infinity`: none.
   */
  timeout?: number | null
  /**
   * Limits on encoded arguments and decoded results: `maxDepth`, `maxBytes`,
   * `maxValues` for both formats, `maxMemo` and `maxIntegerBytes` for pickles.
   * Default: the codecs' defaults (`defaultCodecLimits`, `defaultPickleLimits`).
   */
  codec?: PickleCodecOptions
  /**
   * How requests are written. `'auto'` (the default): in this library's format to
   * a peer whose connection agreed on its extensions, in snakeMQ's (`rpcreq`
   * pickles, TTL 0, sent again with the same req_id after each reconnect) to a
   * plain snakeMQ peer; a call to a peer not connected waits for it and goes in
   * the format of the connection it leaves by. `'native'`: always this
   * library's format (calls wait in the Messaging's queue, as before there was a
   * choice). `'snakemq'`: always snakeMQ's, Node peers included (their RpcServer
   * answers it).
   */
  format?: RpcFormat
  /** Where log lines go; default the `debug` namespace `snakemq:rpc`. */
  logger?: Logger
}

/** See RpcClientOptions.format. */
export type RpcFormat = 'auto' | 'native' | 'snakemq'

/** A call waiting for its result. */
interface PendingCall {
  readonly peer: string
  readonly object: string
  readonly method: string
  /** The request in this library's format as sent, to send again after a reconnect; made when first needed. */
  message: Uint8Array | null
  /** The request in snakeMQ's format, made the first time it is needed. */
  pickled: Uint8Array | null
  /** The arguments, kept while a snakeMQ-format request may still be needed. */
  readonly args: readonly unknown[] | null
  readonly kwargs: Record<string, unknown> | undefined
  /** The object and method names as this library's format writes them. */
  readonly segment: Uint8Array
  /** Epoch.now() + timeout, or Infinity. */
  readonly deadline: number
  /** The peer's connection epoch the request was (or will be) delivered in; -1 while held for the peer to connect. */
  epoch: number
  readonly resolve: (reply: Uint8Array | SnakeReply) => void
  readonly reject: (error: Error) => void
  timer: ReturnType<typeof setTimeout> | undefined
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
  /** The request waiting in the Messaging's queue (format 'native', peer away), taken back if the call ends first. */
  queued: QueueEntry | null
}

function checkTimeout (timeout: unknown, name: string): number {
  if (timeout === undefined || timeout === null || timeout === Infinity) return Infinity
  if (typeof timeout !== 'number' || !(timeout > 0) || !Number.isFinite(timeout)) {
    throw new InvalidArgumentError(`${name} must be a positive number of milliseconds, Infinity or null, got ${typeof timeout === 'number' ? timeout : typeof timeout}`)
  }
  // setTimeout's ceiling; longer is as good as none.
  return timeout > 2 ** 31 - 1 ? Infinity : timeout
}

function checkPeer (peer: unknown): string {
  if (typeof peer !== 'string' || peer.length === 0) throw new InvalidArgumentError('the peer must be a non-empty string')
  return peer
}

function checkKwargs (kwargs: unknown): Record<string, unknown> | undefined {
  if (kwargs === undefined) return undefined
  const proto: unknown = typeof kwargs === 'object' && kwargs !== null ? Object.getPrototypeOf(kwargs) : undefined
  if (proto !== Object.prototype && proto !== null) throw new InvalidArgumentError('kwargs must be a plain object of keyword arguments')
  return kwargs as Record<string, unknown>
}

/** The arguments as this library's format carries them: keyword arguments as one more, an object. */
function withKwargs (args: readonly unknown[], kwargs: Record<string, unknown> | undefined): readonly unknown[] {
  return kwargs === undefined ? args : [...args, kwargs]
}

/** Calls methods of objects served by RpcServers of other peers. See docs/RPC.md. */
export class RpcClient implements AsyncDisposable {
  readonly log: Logger
  private readonly mq: Messaging
  private readonly timeout: number
  private readonly codec: PickleCodecOptions | undefined
  private readonly format: RpcFormat
  /** Names this client in request ids; random, so a restarted client never reuses an id. */
  private readonly clientId: Uint8Array = globalThis.crypto.getRandomValues(new Uint8Array(CLIENT_ID_BYTES))
  private counter = 0
  private readonly pending = new CounterTable<PendingCall>()
  /** Per peer: how many times it connected since this client exists. */
  private readonly epochs = new Map<string, number>()
  /** Per peer: whether its last connection was plain snakeMQ, for signals sent while it is away (format 'auto'). */
  private readonly lastPlain = new Map<string, boolean>()
  /** Takes replies off the Messaging as they arrive. */
  private readonly replies: Consumer
  /** Takes snakeMQ-format replies. */
  private readonly pickledReplies: Consumer
  /** Takes snakeMQ-format requests when this Messaging has no RpcServer, to answer them. */
  private readonly pickledRequests: Consumer
  private closed = false
  /** close() was called (rather than the Messaging closing). */
  private closedHere = false
  /** True while post() runs (see posted()), and the too-large drops seen meanwhile. */
  private posting = false
  private droppedInPost: Array<MessagingEvents['drop'][0]> = []

  private readonly onConnect = (e: MessagingEvents['connect'][0]): void => {
    if (this.format === 'auto') this.lastPlain.set(e.ident, this.mq.peerIsPlain(e.ident) === true)
    this.resend(e.ident)
  }

  /** A request larger than its peer accepts was dropped by the Messaging: its call fails with why, instead of waiting for a reply that cannot come. */
  private readonly onDrop = (e: MessagingEvents['drop'][0]): void => {
    if (e.reason !== 'too-large') return
    // Dropped inside post(), before it returned the entry to match: posted() sorts these out.
    if (this.posting) { this.droppedInPost.push(e); return }
    for (const [counter, call] of this.pending.entries()) {
      if (call.peer === e.to && call.queued !== null && call.queued.uuid === e.uuid) {
        this.settle(counter, new MessageDroppedError(e.to, e.uuid, 'too-large'))
        return
      }
    }
  }

  constructor (mq: Messaging, options: RpcClientOptions = {}) {
    if (typeof (mq as Partial<Messaging> | null)?.consume !== 'function') throw new InvalidArgumentError('new RpcClient(mq): the first argument must be a Messaging (new Messaging(link, { identity }))')
    this.mq = mq
    this.log = options.logger ?? debugLogger('rpc')
    this.timeout = checkTimeout(options.timeout, 'timeout')
    this.codec = options.codec
    // Checks the limits now, not at the first call.
    if (this.codec !== undefined) { encodeValue(null, this.codec); resolvePickleLimits(this.codec) }
    const format = options.format ?? 'auto'
    if (format !== 'auto' && format !== 'native' && format !== 'snakemq') {
      throw new InvalidArgumentError(`format must be 'auto', 'native' or 'snakemq', got ${JSON.stringify(format)}`)
    }
    this.format = format
    mq.on('connect', this.onConnect)
    mq.on('drop', this.onDrop)
    addClient(mq)
    // Requests too when this Messaging has no RpcServer: they are answered, not left waiting.
    this.replies = mq.consume(
      { prefix: RPC_MAGIC, filter: (m) => isReply(m.data) || !hasServer(mq) },
      (m) => { if (isReply(m.data)) this.onReply(m); else this.noServer(m) },
      () => { this.ended() }
    )
    this.pickledReplies = mq.consume({ prefix: SNAKEMQ_REPLY_PREFIX }, (m) => { this.onSnakeReply(m) })
    this.pickledRequests = mq.consume({ prefix: SNAKEMQ_REQUEST_PREFIX, filter: () => !hasServer(mq) }, (m) => { this.snakeNoServer(m) })
    settleFields(this, 'closed')
  }

  /**
   * A proxy of the object `objectName` on the peer `peer`: `await proxy.add(1, 2)`.
   * Every property read gives a remote method (except `then` and `toJSON`, which
   * read as undefined, so a proxy is never taken for a promise; and turned into a
   * string, or logged, it describes itself instead of calling anything); see `Remote<T>`
   * for the options each method takes. Nothing is sent until a method is called.
   */
  proxy<T = Record<string, (...args: unknown[]) => unknown>> (peer: string, objectName: string): Remote<T> {
    checkPeer(peer)
    const objectBytes = encodeName(objectName, 'the object name')
    const methods = new Map<string, unknown>()
    const description = `[RpcClient proxy of ${JSON.stringify(objectName)} on ${JSON.stringify(peer)}]`
    const describe = (): string => description
    // Node's util.inspect (console.log) shows a Proxy's target without going through
    // its traps: the target says what the proxy is, instead of `[Object: null prototype] {}`.
    const target = Object.create(null) as Record<PropertyKey, unknown>
    Object.defineProperty(target, INSPECT, { value: describe })
    const handler: ProxyHandler<object> = {
      get: (_target, prop) => {
        // String(proxy), `${proxy}` and `'' + proxy` ask for Symbol.toPrimitive first: answered here, they
        // never fall back on toString() and valueOf(), which would be two remote calls (their
        // rejections unhandled) and a TypeError.
        if (prop === Symbol.toPrimitive) return describe
        if (typeof prop !== 'string' || prop === 'then' || prop === 'toJSON') return undefined
        let m = methods.get(prop)
        if (m === undefined) {
          m = this.remoteMethod(peer, objectName, objectBytes, prop)
          methods.set(prop, m)
        }
        return m
      },
      set: () => false,
      defineProperty: () => false,
      deleteProperty: () => false
    }
    return new Proxy(target, handler) as Remote<T>
  }

  /**
   * Calls `object.method(...args)` on `peer` and resolves with its result; the
   * untyped form of `proxy(peer, object).method.with(options)(...args)`, for any name.
   */
  async call (peer: string, object: string, method: string, args: readonly unknown[] = [], options?: CallOptions): Promise<unknown> {
    const segment = nameSegment(encodeName(object, 'the object name'), encodeName(method, 'the method name'))
    return await this.invoke(checkPeer(peer), segment, object, method, args, options)
  }

  /** Sends `object.method(...args)` to `peer` as a signal; resolves once it is queued. */
  async signal (peer: string, object: string, method: string, args: readonly unknown[] = [], options?: SignalOptions): Promise<void> {
    const segment = nameSegment(encodeName(object, 'the object name'), encodeName(method, 'the method name'))
    await this.sendSignal(checkPeer(peer), segment, object, method, args, options)
  }

  /** Calls waiting for their result. */
  get pendingCalls (): number { return this.pending.size }

  /** Rejects the calls still waiting with ClosedError and stops taking replies. Does not close the Messaging. Idempotent. */
  async close (): Promise<void> {
    if (!this.closed) {
      this.closedHere = true
      this.replies.end()
    }
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }

  private remoteMethod (peer: string, object: string, objectBytes: Uint8Array, method: string): unknown {
    let segment: Uint8Array | Error
    try {
      segment = nameSegment(objectBytes, encodeName(method, 'the method name'))
    } catch (err) {
      segment = err as Error
    }
    const invoke = (args: unknown[], options: CallOptions | undefined): Promise<unknown> => {
      return segment instanceof Error ? Promise.reject(segment) : this.invoke(peer, segment, object, method, args, options)
    }
    const fn = (...args: unknown[]): Promise<unknown> => invoke(args, undefined)
    Object.defineProperty(fn, 'name', { value: method })
    Object.defineProperty(fn, 'with', {
      value: (options: CallOptions) => {
        if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('with() takes an options object')
        return (...args: unknown[]): Promise<unknown> => invoke(args, options)
      }
    })
    Object.defineProperty(fn, 'signal', {
      value: (options: SignalOptions = {}) => {
        if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('signal() takes an options object')
        return async (...args: unknown[]): Promise<void> => {
          if (segment instanceof Error) throw segment
          await this.sendSignal(peer, segment, object, method, args, options)
        }
      }
    })
    return fn
  }

  private async invoke (peer: string, segment: Uint8Array, object: string, method: string, args: readonly unknown[], options: CallOptions | undefined): Promise<unknown> {
    let reply: Uint8Array | SnakeReply
    try {
      reply = await this.request(peer, segment, object, method, args, options)
    } catch (err) {
      // Made in a timer or an event handler: give it the stack of the code that awaits the call.
      if (err instanceof SnakeMQError && !(err instanceof RpcCodecError)) captureStackTrace?.(err)
      throw err
    }
    return reply instanceof Uint8Array ? this.outcome(reply, peer, object, method) : snakeOutcome(reply, peer, object, method)
  }

  private request (peer: string, segment: Uint8Array, object: string, method: string, args: readonly unknown[], options: CallOptions | undefined): Promise<Uint8Array | SnakeReply> {
    if (this.closed) return Promise.reject(this.closedError())
    const timeout = options?.timeout === undefined ? this.timeout : checkTimeout(options.timeout, 'timeout')
    const signal = options?.signal
    if (signal?.aborted === true) return Promise.reject(abortError(signal))
    if (!Array.isArray(args)) return Promise.reject(new InvalidArgumentError('the arguments must be an array'))
    const kwargs = checkKwargs(options?.kwargs)
    const counter = ++this.counter
    const format = this.format
    // Encoded at once in the format the peer speaks now, so what cannot be sent fails the call before anything waits.
    const plain = format === 'auto' ? this.mq.peerIsPlain(peer) : format === 'snakemq'
    let message: Uint8Array | null = null
    let pickled: Uint8Array | null = null
    if (plain === true) {
      pickled = this.pickledCall(counter, object, method, args, kwargs)
    } else if (plain === false) {
      message = this.requestMessage(Kind.Call, counter, segment, withKwargs(args, kwargs))
    } else {
      // Not connected, format 'auto': either format may be needed; fails now only if neither can carry the arguments.
      try {
        message = this.requestMessage(Kind.Call, counter, segment, withKwargs(args, kwargs))
      } catch (err) {
        try {
          pickled = this.pickledCall(counter, object, method, args, kwargs)
        } catch {
          throw err
        }
      }
    }
    return new Promise<Uint8Array | SnakeReply>((resolve, reject) => {
      const call: PendingCall = {
        peer, object, method, message, pickled, args: format === 'auto' ? args : null, kwargs, segment,
        deadline: timeout === Infinity ? Infinity : Date.now() + timeout,
        epoch: 0, resolve, reject, timer: undefined, signal: undefined, onAbort: undefined, queued: null
      }
      this.pending.set(counter, call)
      if (timeout !== Infinity) {
        call.timer = setTimeout(() => { this.settle(counter, new RpcTimeoutError(peer, object, method, timeout)) }, timeout)
      }
      if (signal !== undefined) {
        call.signal = signal
        call.onAbort = () => { this.settle(counter, abortError(signal)) }
        signal.addEventListener('abort', call.onAbort, { once: true })
      }
      this.transmit(counter, call)
    })
  }

  /** Queues a call's request for its peer, in the format its connection speaks. */
  private transmit (counter: number, call: PendingCall): void {
    const epoch = this.epochs.get(call.peer) ?? 0
    if (this.format !== 'native') {
      const plain = this.mq.peerIsPlain(call.peer)
      if (plain === undefined) {
        // Not connected: the format of the next connection is not known, and
        // snakeMQ sends a call only to a peer connected now. resend() sends it.
        call.epoch = -1
        return
      }
      if (plain || this.format === 'snakemq') { this.transmitPickled(counter, call, epoch, plain); return }
    }
    if (call.message === null) {
      try {
        call.message = this.requestMessage(Kind.Call, counter, call.segment, withKwargs(call.args ?? [], call.kwargs))
      } catch (err) {
        this.settle(counter, err as Error)
        return
      }
    }
    // Queued while the peer is away, it goes out with the next connection: no resend then.
    call.epoch = this.mq.isConnected(call.peer) ? epoch : epoch + 1
    // The request may wait for the peer as long as the caller waits for the result (rounded up to whole seconds).
    const ttl = call.deadline === Infinity ? undefined : Math.max(1, Math.ceil((call.deadline - Date.now()) / 1000))
    // Without acknowledgement (FLAG_UNACKED): a request or reply lost with its
    // connection is recovered by resend() and the server's result cache, so the
    // Messaging need not hold, acknowledge or filter either of them.
    this.posting = true
    call.queued = this.mq.post(call.peer, call.message, ttl, this.notQueued, counter, true)
    this.posted(counter, call)
  }

  /**
   * After post(): a request the Messaging dropped as too large while post() ran
   * (a request queued alone may be taken for writing, and dropped, before post()
   * returns) fails its call now; drops of other requests seen meanwhile fail theirs.
   */
  private posted (counter: number, call: PendingCall): void {
    this.posting = false
    if (this.droppedInPost.length === 0) return
    const drops = this.droppedInPost
    this.droppedInPost = []
    for (const d of drops) {
      if (d.to === call.peer && call.queued !== null && call.queued.uuid === d.uuid) this.settle(counter, new MessageDroppedError(d.to, d.uuid, 'too-large'))
      else this.onDrop(d)
    }
  }

  /**
   * Sends a call in snakeMQ's format, as snakeMQ's RpcClient does: with TTL 0,
   * over the connection up now; resend() sends it again, with the same req_id,
   * each time the peer connects until a reply comes.
   */
  private transmitPickled (counter: number, call: PendingCall, epoch: number, plain: boolean): void {
    call.epoch = epoch
    if (call.pickled === null) {
      try {
        call.pickled = this.pickledCall(counter, call.object, call.method, call.args ?? [], call.kwargs)
      } catch (err) {
        this.settle(counter, err as Error)
        return
      }
    }
    // To a Node peer (format 'snakemq'), without acknowledgement, as its own requests go.
    this.posting = true
    call.queued = this.mq.post(call.peer, call.pickled, 0, this.pickledNotQueued, counter, !plain)
    this.posted(counter, call)
  }

  /** A request could not be queued: its call fails with why. */
  private readonly notQueued = (err: unknown, counter: number): void => {
    this.settle(counter, err instanceof Error ? err : new Error(String(err)))
  }

  /**
   * A snakeMQ-format request dropped because the connection went first waits for
   * the next one; other errors fail its call, a drop as too large for the peer
   * among them (it would be dropped again at every resend).
   */
  private readonly pickledNotQueued = (err: unknown, counter: number): void => {
    if (err instanceof MessageDroppedError && err.reason !== 'too-large') return
    this.notQueued(err, counter)
  }

  /** The peer connected (again): send every call that went out over an earlier connection and is still waiting. */
  private resend (peer: string): void {
    const epoch = (this.epochs.get(peer) ?? 0) + 1
    this.epochs.set(peer, epoch)
    let n = 0
    for (const [counter, call] of this.pending.entries()) {
      if (call.peer === peer && call.epoch < epoch) {
        this.transmit(counter, call)
        n++
      }
    }
    if (n > 0) this.log.debug('calls sent again after a reconnect', { peer, calls: n })
  }

  /** Ends a pending call with its reply or an error; a call already ended is left alone. */
  private settle (counter: number, outcome: Uint8Array | SnakeReply | Error): void {
    const call = this.pending.get(counter)
    if (call === undefined) return
    this.pending.delete(counter)
    if (call.timer !== undefined) clearTimeout(call.timer)
    if (call.onAbort !== undefined) call.signal!.removeEventListener('abort', call.onAbort)
    // Timed out, aborted or closed while its request still waits for the peer: it must not run late.
    if (call.queued !== null && outcome instanceof Error) this.mq.withdraw(call.peer, call.queued)
    call.queued = null
    if (outcome instanceof Error) call.reject(outcome)
    else call.resolve(outcome)
  }

  /** A call in snakeMQ's format; its req_id is this client's request id, so the reply finds the call as a native one does. */
  private pickledCall (counter: number, object: string, method: string, args: readonly unknown[], kwargs: Record<string, unknown> | undefined): Uint8Array {
    const id = new Uint8Array(BODY_OFFSET)
    writeId(id, this.clientId, counter)
    return snakeRequestMessage({ command: 'call', object, method, args, kwargs, reqId: id.subarray(HEADER_BYTES) }, this.codec)
  }

  /** A Call or Signal: the arguments encoded after room for the envelope, which is then written in front. */
  private requestMessage (kind: Kind, counter: number, segment: Uint8Array, args: readonly unknown[]): Uint8Array {
    const message = encodeAfter(BODY_OFFSET + segment.length, args, this.codec)
    writeHeader(message, kind)
    writeId(message, this.clientId, counter)
    copyBytes(message, segment, BODY_OFFSET)
    return message
  }

  private async sendSignal (peer: string, segment: Uint8Array, object: string, method: string, args: readonly unknown[], options: SignalOptions = {}): Promise<void> {
    if (this.closed) throw this.closedError()
    if (!Array.isArray(args)) throw new InvalidArgumentError('the arguments must be an array')
    const kwargs = checkKwargs(options.kwargs)
    // A signal is not held for its peer: away, it goes in the format of the peer's last connection.
    const plain = this.format === 'native'
      ? false
      : this.mq.peerIsPlain(peer) ?? (this.format === 'snakemq' || this.lastPlain.get(peer) === true)
    const message = plain || this.format === 'snakemq'
      ? snakeRequestMessage({ command: 'signal', object, method, args, kwargs }, this.codec)
      : this.requestMessage(Kind.Signal, ++this.counter, segment, withKwargs(args, kwargs))
    await this.mq.send(peer, message, { ttl: options.ttl === undefined ? 0 : options.ttl, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
  }

  /** The client or its Messaging closed: nothing can answer the calls still waiting. */
  private ended (): void {
    this.closed = true
    this.mq.off('connect', this.onConnect)
    this.mq.off('drop', this.onDrop)
    this.pickledReplies.end()
    this.pickledRequests.end()
    removeClient(this.mq)
    // The Messaging goes on: RPC messages that reach it with no server or client left are still answered or dropped.
    if (this.closedHere) answerOrphans(this.mq, this.log)
    const closed = new ClosedError(this.closedHere ? 'the RpcClient was closed' : 'the Messaging was closed')
    for (const [counter] of this.pending.entries()) this.settle(counter, closed)
  }

  /** Why a call or signal made after the end cannot go: the client's own close(), or its Messaging's. */
  private closedError (): ClosedError {
    return new ClosedError(this.closedHere
      ? 'the RpcClient is closed'
      : 'the RpcClient\'s Messaging is closed: an RpcClient lasts as long as its Messaging (make a new one on a new Messaging)')
  }

  /** A request reached this Messaging, which has no RpcServer: a call is told the object is unknown here. */
  private noServer (m: Message): void { answerWithoutServer(this.mq, this.log, m, 'without an RpcServer') }

  /** The counter of one of this client's calls that `reqId` names, or -1. */
  private counterOf (reqId: Uint8Array): number {
    if (reqId.length !== ID_BYTES) return -1
    for (let i = 0; i < CLIENT_ID_BYTES; i++) if (reqId[i] !== this.clientId[i]) return -1
    const id = new Uint8Array(BODY_OFFSET)
    id.set(reqId, HEADER_BYTES)
    return readCounter(id)
  }

  /** A snakeMQ-format reply: settles the call its req_id names, if it is one of this client's. */
  private onSnakeReply (m: Message): void {
    const body = tail(m.data, SNAKEMQ_PREFIX_BYTES)
    let reply: SnakeReply | string
    try {
      reply = readSnakeReply(decodePickle(body, this.codec))
    } catch (err) {
      // Not plain data: the call it answers, if it is ours, fails rather than waiting for ever.
      for (const reqId of findReqIds(body)) {
        const counter = this.counterOf(reqId)
        const call = counter < 0 ? undefined : this.pending.get(counter)
        if (call === undefined || call.peer !== m.from) continue
        this.settle(counter, new RpcCodecError(`${JSON.stringify(m.from)} answered ${call.object}.${call.method} with a pickle that is not plain data: ${(err as Error).message}`, { cause: err }))
        return
      }
      this.log.warn('dropped a snakeMQ RPC reply that is not plain data', { from: m.from, error: err as Error })
      return
    }
    if (typeof reply === 'string') {
      this.log.warn('dropped a malformed snakeMQ RPC reply', { from: m.from, reason: reply })
      return
    }
    const counter = this.counterOf(reply.reqId)
    // Another client's (on this Messaging, or one that is gone), or a Python caller's.
    if (counter < 0) return
    const call = this.pending.get(counter)
    if (call === undefined) {
      this.log.debug('a reply to no waiting call', { from: m.from })
      return
    }
    if (m.from !== call.peer) {
      this.log.warn('dropped an RPC reply from a peer the call was not sent to', { from: m.from, peer: call.peer })
      return
    }
    this.settle(counter, reply)
  }

  /** A snakeMQ-format request reached this Messaging, which has no RpcServer: a call gets snakeMQ's NoInstanceError. */
  private snakeNoServer (m: Message): void { answerSnakeWithoutServer(this.mq, this.log, m, 'without an RpcServer', this.codec) }

  private onReply (m: Message): void {
    const data = m.data
    if (data.length < BODY_OFFSET) {
      this.log.warn('dropped an RPC reply too short to carry a request id', { from: m.from, bytes: data.length })
      return
    }
    for (let i = 0; i < CLIENT_ID_BYTES; i++) {
      // Another RpcClient's (on this Messaging, or one that is gone).
      if (data[HEADER_BYTES + i] !== this.clientId[i]) return
    }
    if (data[6] !== RPC_VERSION) {
      this.log.warn('dropped an RPC reply of an unsupported version', { from: m.from, version: data[6] })
      return
    }
    const counter = readCounter(data)
    const call = this.pending.get(counter)
    if (call === undefined) {
      // A second answer to a resent call, or one that came after its call timed out or was aborted.
      this.log.debug('a reply to no waiting call', { from: m.from })
      return
    }
    if (m.from !== call.peer) {
      this.log.warn('dropped an RPC reply from a peer the call was not sent to', { from: m.from, peer: call.peer })
      return
    }
    this.settle(counter, data)
  }

  /** The result of a call from its reply, or the error it stands for. */
  private outcome (reply: Uint8Array, peer: string, object: string, method: string): unknown {
    const kind = reply[7]
    if (kind === Kind.Result) return decodeValue(tail(reply, BODY_OFFSET), this.codec)
    if (kind === Kind.Thrown) {
      const remote = decodeValue(tail(reply, BODY_OFFSET), this.codec)
      throw remoteError(remote, peer, object, method)
    }
    if (kind === Kind.Failed && reply.length > BODY_OFFSET) {
      const status = reply[BODY_OFFSET]
      const detail = failedDetail(reply)
      switch (status) {
        case Status.UnknownObject: throw new RpcUnknownObjectError(peer, object)
        case Status.UnknownMethod: throw new RpcUnknownMethodError(peer, object, method)
        case Status.CallKind: throw new RpcCallKindError(peer, object, method)
        case Status.BadArguments: throw new RpcCodecError(`${JSON.stringify(peer)} could not decode the arguments of ${object}.${method}: ${detail}`)
        case Status.BadResult: throw new RpcCodecError(`${JSON.stringify(peer)} could not encode the result of ${object}.${method}: ${detail}`)
        case Status.ResultLost: throw new RpcResultLostError(`${object}.${method} ran on ${JSON.stringify(peer)}, but its result was lost: the reply expired and the server no longer holds it`)
        case Status.Timeout: throw new RpcTimeoutError(peer, object, method, Number(detail), `${object}.${method} did not finish on ${JSON.stringify(peer)} within its ${detail} ms timeout`)
        case Status.Withheld: throw new RpcRemoteError(peer, object, method, { name: 'Error', message: `${object}.${method} failed on ${JSON.stringify(peer)} (the server does not transfer exceptions)` })
        case Status.BadRequest:
        case Status.UnsupportedVersion:
          throw new RpcProtocolError(`${JSON.stringify(peer)} refused the request for ${object}.${method}: ${detail}`)
      }
    }
    throw new RpcProtocolError(`${JSON.stringify(peer)} sent a reply to ${object}.${method} that this version does not understand (kind ${kind})`)
  }
}

/**
 * The result of a call from its snakeMQ-format reply, or the error it stands
 * for: snakeMQ's NoInstanceError and NoMethodError as RpcUnknownObjectError and
 * RpcUnknownMethodError (what a Node server's unknown names give), any other
 * exception as RpcRemoteError with the Python traceback as its remote stack.
 */
function snakeOutcome (reply: SnakeReply, peer: string, object: string, method: string): unknown {
  if (reply.ok) return reply.value
  const e = reply.exception
  if (e instanceof PythonException) {
    if (e.module === 'snakemq.rpc' && e.name === 'NoInstanceError') throw new RpcUnknownObjectError(peer, object)
    if (e.module === 'snakemq.rpc' && e.name === 'NoMethodError') throw new RpcUnknownMethodError(peer, object, method)
    // The cause prints as Python printed it.
    if (reply.format !== '') e.stack = reply.format
    throw new RpcRemoteError(peer, object, method, {
      name: e.name, message: e.message, stack: reply.format === '' ? undefined : reply.format, code: (e as { code?: unknown }).code
    }, { cause: e })
  }
  throw new RpcRemoteError(peer, object, method, {
    name: 'Error', message: 'the remote method failed with a value that is not an exception', stack: reply.format === '' ? undefined : reply.format
  }, { cause: e })
}

/** The error a call rejects with when the remote method threw `remote` (decoded). */
function remoteError (remote: unknown, peer: string, object: string, method: string): RpcRemoteError {
  if (remote instanceof Error) {
    const stack = Object.getOwnPropertyDescriptor(remote, 'stack')?.value as unknown
    return new RpcRemoteError(peer, object, method, {
      name: typeof remote.name === 'string' ? remote.name : 'Error',
      message: typeof remote.message === 'string' ? remote.message : '',
      stack: typeof stack === 'string' ? stack : undefined,
      code: (remote as { code?: unknown }).code
    }, { cause: remote })
  }
  return new RpcRemoteError(peer, object, method, { name: 'Error', message: 'the remote method failed with a value that is not an error' }, { cause: remote })
}
