// One live connection as a duplex of byte chunks: `source` yields what the remote
// sent, `sink` writes what an async iterable yields. Backpressure both ways: the
// socket is read only as fast as `source` is consumed, and `sink` waits for the
// socket to drain before it pulls more.
import type { Socket } from 'node:net'
import type { PeerCertificate, TLSSocket } from 'node:tls'
import { AlreadyIteratingError, ClosedError } from '../errors.ts'
import { throttle, type ThrottleRates } from '../transforms/throttle.ts'

/** What a connection's sink accepts: single chunks or batches of chunks written back to back. */
export type SinkChunk = Uint8Array | readonly Uint8Array[]

/** A duplex of byte chunks, as the transforms compose them. */
export interface Duplex<TSource, TSink = TSource> {
  source: AsyncIterable<TSource>
  sink: (source: AsyncIterable<TSink> | Iterable<TSink>) => Promise<void>
}

/** What a Connection is made with besides its socket. */
export interface ConnectionOptions {
  /** Limits on the bytes written and read, in bytes per second; none by default. */
  throttle?: ThrottleRates | null
}

/** @internal What `Connection.push()` hands the bytes from the remote to. */
export interface ChunkHandler {
  /** A chunk as read from the socket. */
  data (chunk: Buffer): void
  /** Nothing more comes: null when the remote ended (or we closed), else why it failed. */
  end (error: Error | null): void
}

/** @internal Controls a push reader: the socket is not read while paused. */
export interface PushReader {
  pause (): void
  resume (): void
  /** Stops reading for good (the socket stays open); `end` is not called. */
  stop (): void
}

let nextId = 1

/** Bytes received and not yet taken by the source's reader, past which the socket is no longer read. */
const READ_AHEAD = 256 * 1024

export class Connection implements Duplex<Uint8Array, SinkChunk> {
  /** A short id for logs, unique in this process: `c1`, `c2`, ... */
  readonly id: string
  /** Whether a connector of ours opened it (`'outbound'`) or a listener accepted it (`'inbound'`). */
  readonly direction: 'inbound' | 'outbound'
  readonly remoteAddress: string
  readonly remotePort: number
  /** The promise settles when the socket is fully closed; it never rejects. */
  readonly closed: Promise<void>
  /** Set once the connection is closed: why, if it was an error. */
  error: Error | undefined
  /** Arbitrary per-connection data for the layers above (e.g. the identity messaging learnt). */
  readonly meta = new Map<string, unknown>()
  /**
   * The remote's certificate on a TLS connection (snakeMQ's `getpeercert()`), or
   * null when there is none (plain TCP, or the remote sent no certificate). Read
   * once the handshake is done, so it stays readable after the connection closed.
   */
  readonly peerCertificate: PeerCertificate | null
  /**
   * True when the remote's certificate was verified against the trusted CAs (a
   * TLS connection whose remote sent a certificate that checked out); false on
   * plain TCP, without a certificate, or when verification was turned off and failed.
   */
  readonly peerAuthorized: boolean
  /** Why the remote's certificate did not verify, when it did not (e.g. `CERT_HAS_EXPIRED`). */
  readonly peerAuthorizationError: Error | null
  /** The bandwidth limits on this connection, if any. */
  readonly throttle: Readonly<ThrottleRates> | null
  /**
   * When bytes from the remote were last handed to `source`'s reader (ms since
   * the epoch): a sign of life even in the middle of a packet, which keepalive
   * counts (a large message through a slow throttle takes long to complete).
   */
  lastReceivedAt = Date.now()
  /** When `sink` last handed bytes to the socket without waiting for it to drain (ms since the epoch). */
  lastWrittenAt = Date.now()

  private readonly socket: Socket
  private sourceTaken = false
  private isClosed = false
  private readonly closeWaiters = new Set<() => void>()
  /** Aborts the throttles' sleeps when the connection closes. */
  private readonly closing = new AbortController()

  constructor (socket: Socket, direction: 'inbound' | 'outbound', options: ConnectionOptions = {}) {
    this.id = `c${nextId++}`
    this.socket = socket
    this.direction = direction
    this.remoteAddress = socket.remoteAddress ?? ''
    this.remotePort = socket.remotePort ?? 0
    this.throttle = options.throttle ?? null
    if (this.encrypted) {
      const tlsSocket = socket as TLSSocket
      const cert = tlsSocket.getPeerCertificate(false)
      this.peerCertificate = cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0 ? cert : null
      this.peerAuthorized = this.peerCertificate !== null && tlsSocket.authorized
      const why = tlsSocket.authorizationError as Error | string | null | undefined
      this.peerAuthorizationError = why === null || why === undefined ? null : why instanceof Error ? why : new Error(String(why))
    } else {
      this.peerCertificate = null
      this.peerAuthorized = false
      this.peerAuthorizationError = null
    }
    socket.setNoDelay(true)
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true
        this.closing.abort()
        for (const w of this.closeWaiters) w()
        this.closeWaiters.clear()
        resolve()
      })
    })
    // Always listened to: a socket error must close this connection, never the process.
    socket.on('error', (err) => { this.error ??= err })
  }

  /** True for a TLS connection. */
  get encrypted (): boolean { return 'encrypted' in this.socket && this.socket.encrypted === true }

  /** True while the socket's write buffer is full and the sink waits for it to drain. */
  get congested (): boolean { return this.socket.writableNeedDrain }

  /** True once the socket has closed. */
  get isOpen (): boolean { return !this.isClosed && !this.socket.destroyed }

  /** The bytes the remote sends, chunk by chunk (through the incoming throttle, if any). Single consumer. */
  get source (): AsyncIterable<Uint8Array> {
    if (this.sourceTaken) throw new AlreadyIteratingError(`connection ${this.id}: its source is already being read`)
    this.sourceTaken = true
    const rate = this.throttle?.incoming
    return rate === undefined ? this.readSocket() : this.throttled(throttle(rate, { signal: this.closing.signal })(this.readSocket()), true)
  }

  /**
   * A throttle whose sleep was cut short by the connection closing fails the way
   * the socket would have: the source ends quietly if we closed it ourselves,
   * otherwise the connection's error (or ClosedError) is thrown.
   */
  private async * throttled<T> (source: AsyncIterable<T>, isSource: boolean): AsyncGenerator<T> {
    try {
      if (isSource) {
        for await (const piece of source) {
          this.lastReceivedAt = Date.now()
          yield piece
        }
      } else {
        yield * source
      }
    } catch (err) {
      if (!this.closing.signal.aborted) throw err
      if (isSource && this.isClosing) return
      throw this.error ?? new ClosedError(`connection ${this.id} is closed`)
    }
  }

  private readSocket (): AsyncIterableIterator<Uint8Array> {
    // The socket in flowing mode, its chunks handed to a waiting reader directly or
    // queued, the socket paused while more than READ_AHEAD bytes wait: each chunk is
    // handed on as it was read, one promise per chunk. (socket.iterator() calls
    // read(), which concatenates whatever the stream has buffered into a new
    // Buffer, one more copy of every byte; an async generator here would add
    // several promise hops per chunk.)
    const socket = this.socket
    const queue: Buffer[] = []
    let head = 0
    let queued = 0
    let ended = false
    let failure: Error | null = null
    let finished = false
    let waiting: { resolve: (r: IteratorResult<Uint8Array>) => void, reject: (e: Error) => void } | null = null
    const DONE: IteratorResult<Uint8Array> = { value: undefined, done: true }
    let unwatch: (() => void) | null = null

    const detach = (): void => {
      if (finished) return
      finished = true
      unwatch?.()
      queue.length = 0
      head = 0
    }
    /** How the source ends on `err`: quietly for a connection we closed ourselves, else with the error. */
    const outcome = (err: Error): Promise<IteratorResult<Uint8Array>> => {
      detach()
      if (this.isClosing) return Promise.resolve(DONE)
      this.error ??= err
      return Promise.reject(err)
    }
    const settle = (): void => {
      const w = waiting
      if (w === null) return
      waiting = null
      if (failure !== null) {
        detach()
        if (this.isClosing) { w.resolve(DONE); return }
        this.error ??= failure
        w.reject(failure)
      } else if (ended) {
        detach()
        w.resolve(DONE)
      }
    }
    const onData = (chunk: Buffer): void => {
      const w = waiting
      if (w !== null && head === queue.length) {
        waiting = null
        this.lastReceivedAt = Date.now()
        w.resolve({ value: chunk, done: false })
        return
      }
      queue.push(chunk)
      queued += chunk.length
      if (queued > READ_AHEAD) socket.pause()
    }
    const onEnd = (): void => { ended = true; settle() }
    const onError = (err: Error): void => { failure ??= err; settle() }
    const onClose = (): void => {
      // Closed without an end or an error: destroyed under us.
      if (!ended) failure ??= this.error ?? new ClosedError(`connection ${this.id} closed before the remote ended it`)
      settle()
    }

    const reader: AsyncIterableIterator<Uint8Array> = {
      next: (): Promise<IteratorResult<Uint8Array>> => {
        if (finished) return Promise.resolve(DONE)
        if (head < queue.length) {
          const chunk = queue[head]!
          queue[head++] = undefined as unknown as Buffer
          if (head === queue.length) { queue.length = 0; head = 0 }
          queued -= chunk.length
          if (queued <= READ_AHEAD && socket.isPaused() && !socket.destroyed) socket.resume()
          this.lastReceivedAt = Date.now()
          return Promise.resolve({ value: chunk, done: false })
        }
        if (failure !== null) return outcome(failure)
        if (ended) { detach(); return Promise.resolve(DONE) }
        if (waiting !== null) return Promise.reject(new AlreadyIteratingError(`connection ${this.id}: next() called before the previous call settled`))
        return new Promise((resolve, reject) => { waiting = { resolve, reject } })
      },
      return: (): Promise<IteratorResult<Uint8Array>> => {
        const w = waiting
        waiting = null
        detach()
        w?.resolve(DONE)
        return Promise.resolve(DONE)
      },
      [Symbol.asyncIterator] () { return this }
    }

    if (socket.destroyed) failure = this.error ?? new ClosedError(`connection ${this.id} is closed`)
    else unwatch = this.watch(onData, onEnd, onError, onClose)
    return reader
  }

  /**
   * Listens to the socket's data, end, error and close events and lets it flow;
   * returns what removes those listeners and pauses it. Never closes it: the
   * sink may still be flushing (e.g. INCOMPATIBLE_PROTOCOL).
   */
  private watch (onData: (chunk: Buffer) => void, onEnd: () => void, onError: (err: Error) => void, onClose: () => void): () => void {
    const socket = this.socket
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.on('error', onError)
    socket.once('close', onClose)
    socket.resume()
    return () => {
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('error', onError)
      socket.off('close', onClose)
      if (!socket.destroyed) socket.pause()
    }
  }

  /**
   * @internal Reads the socket with callbacks instead of `source`, for a reader
   * that handles each chunk synchronously: no promise per chunk. Ends the way
   * `source` does: `end(null)` once the remote ended its side or, quietly, when
   * we closed the connection ourselves; `end(error)` when it failed. Returns
   * null when an incoming throttle applies (read `source` then). Single
   * consumer, as `source`.
   */
  push (handler: ChunkHandler): PushReader | null {
    if (this.throttle?.incoming !== undefined) return null
    if (this.sourceTaken) throw new AlreadyIteratingError(`connection ${this.id}: its source is already being read`)
    this.sourceTaken = true
    const socket = this.socket
    let finished = false
    let paused = false
    let unwatch: (() => void) | null = null
    const detach = (): void => {
      if (finished) return
      finished = true
      unwatch?.()
    }
    const finish = (err: Error | null): void => {
      if (finished) return
      detach()
      if (err === null || this.isClosing) { handler.end(null); return }
      this.error ??= err
      handler.end(err)
    }
    const onData = (chunk: Buffer): void => {
      this.lastReceivedAt = Date.now()
      handler.data(chunk)
    }
    const onEnd = (): void => { finish(null) }
    const onError = (err: Error): void => { finish(err) }
    // Closed without an end or an error: destroyed under us.
    const onClose = (): void => { finish(this.error ?? new ClosedError(`connection ${this.id} closed before the remote ended it`)) }
    const reader: PushReader = {
      pause: () => {
        if (finished || paused) return
        paused = true
        if (!socket.destroyed) socket.pause()
      },
      resume: () => {
        if (finished || !paused) return
        paused = false
        if (!socket.destroyed) socket.resume()
      },
      stop: detach
    }
    if (socket.destroyed) {
      // Reported after push() returns, as `source` reports it at its first next().
      queueMicrotask(() => { finish(this.error ?? new ClosedError(`connection ${this.id} is closed`)) })
    } else {
      unwatch = this.watch(onData, onEnd, onError, onClose)
    }
    return reader
  }

  private isClosing = false

  /**
   * @internal True when `writeNow()` may be used: open, no outgoing throttle, and
   * the socket's buffer below its high-water mark.
   */
  get directWritable (): boolean {
    return this.throttle?.outgoing === undefined && !this.isClosing && this.isOpen && !this.socket.writableNeedDrain
  }

  /**
   * @internal Writes `chunk` at once, without going through `sink`: for a writer
   * that owns the sink's source and knows the sink is waiting for it (so the bytes
   * cannot overtake any the sink holds). Only when `directWritable`.
   */
  writeNow (chunk: SinkChunk): void {
    this.writeChunk(chunk)
    this.lastWrittenAt = Date.now()
  }

  /** Writes one chunk to the socket; false when its buffer is over the high-water mark. */
  private writeChunk (chunk: SinkChunk): boolean {
    const socket = this.socket
    if (chunk instanceof Uint8Array) return socket.write(chunk)
    // Named explicitly: depending on the order files are checked in, the type
    // service has narrowed this branch to `any` (seen in CI's linter).
    const list = chunk as readonly Uint8Array[]
    if (list.length === 1) return socket.write(list[0]!)
    socket.cork()
    let ok = true
    for (const c of list) ok = socket.write(c)
    socket.uncork()
    return ok
  }

  /**
   * Writes everything `source` yields (through the outgoing throttle, if any),
   * waiting for the socket to drain when its buffer is full.
   */
  readonly sink = async (source: AsyncIterable<SinkChunk> | Iterable<SinkChunk>): Promise<void> => {
    const socket = this.socket
    const rate = this.throttle?.outgoing
    const chunks = rate === undefined ? source : this.throttled(throttle(rate, { signal: this.closing.signal })(source), false)
    for await (const item of chunks) {
      // Named: in some orders of checking files (CI's linter) the type service
      // makes the element of this union of iterables `any`.
      const chunk = item as SinkChunk
      if (!this.isOpen) throw this.error ?? new ClosedError(`connection ${this.id} is closed`)
      const ok = this.writeChunk(chunk)
      if (!ok && socket.writableNeedDrain) await this.drained()
      this.lastWrittenAt = Date.now()
    }
  }

  /** Resolves when the socket can take more, or when it closes. */
  private async drained (): Promise<void> {
    if (!this.isOpen) return
    await new Promise<void>((resolve) => {
      const done = (): void => { this.socket.off('drain', done); this.closeWaiters.delete(done); resolve() }
      this.socket.on('drain', done)
      this.closeWaiters.add(done)
    })
  }

  /** Flushes what was written, then ends the connection (FIN); destroys it if the remote does not close within `timeout` ms. */
  async end (timeout = 2000): Promise<void> {
    if (!this.isOpen) return
    this.isClosing = true
    this.socket.end()
    const timer = setTimeout(() => { this.socket.destroy() }, timeout)
    await this.closed
    clearTimeout(timer)
  }

  /** Closes at once, dropping unsent bytes. `error` is recorded as the reason. */
  close (error?: Error): void {
    if (error !== undefined) this.error ??= error
    this.isClosing = true
    this.socket.destroy()
  }
}
