// The duplex views of a channel, and connection transforms over them. A channel
// is turned into the `{ source, sink }` duplex that it-pipe composes (its source
// is an async iterator built on the channel's push reader, not beside it), user
// transforms and the throttle map that duplex to another one, and the result is
// turned back into a channel for the session. A connection without transforms
// never goes through here.
import { pipe } from 'it-pipe'
import { copyBytes } from '../bytes.ts'
import { AlreadyIteratingError, ClosedError } from '../errors.ts'
import type { Channel, ChannelInfo, ChannelReader } from './channel.ts'

/** A duplex of byte chunks, as it-pipe composes them. */
export interface Duplex<TSource = Uint8Array, TSink = TSource> {
  source: AsyncIterable<TSource>
  sink: (source: AsyncIterable<TSink>) => Promise<void>
}

/** What a transform learns about the connection it is put on. */
export interface TransformContext {
  /** The connection, as its transport made it. */
  readonly info: ChannelInfo
  /** Aborted once the connection is closed: a transform stops waiting (timers, sleeps) then. */
  readonly signal: AbortSignal
}

/**
 * A stage between a connection's socket and the framing: it takes the duplex of
 * byte chunks below it and returns the duplex the stage above sees. `source`
 * yields the chunks coming in (after this stage); `sink` takes the chunks going
 * out (before this stage). Compression, encryption, a metrics tap or the
 * bandwidth throttle are transforms. The chunks a transform is given are its
 * own: it may keep or modify them.
 */
export type ConnectionTransform = (duplex: Duplex<Uint8Array>, context: TransformContext) => Duplex<Uint8Array>

/** Bytes a duplex source reads ahead of its consumer before the channel is paused. */
const READ_AHEAD = 256 * 1024
/** Bytes written to a transformed channel and not yet taken by its transforms, past which write() says it is congested. */
const WRITE_HIGH_WATER = 64 * 1024

const DONE: IteratorResult<Uint8Array> = { value: undefined, done: true }

/**
 * The source of a channel: its chunks as an async iterator, the channel paused
 * while more than READ_AHEAD bytes wait for the consumer. Ends when the channel's
 * reader ends (throws the error, if it ended with one); `return()` stops reading.
 */
export function channelSource (channel: Channel): AsyncIterableIterator<Uint8Array> {
  const queue: Uint8Array[] = []
  let head = 0
  let queued = 0
  let paused = false
  let ended = false
  let failure: Error | null = null
  let waiting: { resolve: (r: IteratorResult<Uint8Array>) => void, reject: (e: Error) => void } | null = null
  const reader: ChannelReader = {
    data (chunk) {
      if (ended) return
      const w = waiting
      if (w !== null) { waiting = null; w.resolve({ value: chunk, done: false }); return }
      queue.push(chunk)
      queued += chunk.length
      if (queued > READ_AHEAD && !paused) { paused = true; channel.pause() }
    },
    end (error) {
      if (ended) return
      ended = true
      failure = error
      const w = waiting
      if (w === null) return
      waiting = null
      if (error === null) w.resolve(DONE)
      else w.reject(error)
    }
  }
  channel.read(reader)
  return {
    next () {
      if (head < queue.length) {
        const chunk = queue[head]!
        queue[head++] = undefined as unknown as Uint8Array
        if (head === queue.length) { queue.length = 0; head = 0 }
        queued -= chunk.length
        if (paused && queued <= READ_AHEAD) { paused = false; channel.resume() }
        return Promise.resolve({ value: chunk, done: false })
      }
      if (ended) return failure === null ? Promise.resolve(DONE) : Promise.reject(failure)
      if (waiting !== null) return Promise.reject(new AlreadyIteratingError(`connection ${channel.id}: next() called before the previous call settled`))
      return new Promise((resolve, reject) => { waiting = { resolve, reject } })
    },
    return () {
      ended = true
      queue.length = 0
      head = 0
      const w = waiting
      waiting = null
      w?.resolve(DONE)
      // Left early: the channel stops being read (it stays open for its writer).
      channel.pause()
      return Promise.resolve(DONE)
    },
    [Symbol.asyncIterator] () { return this }
  }
}

/** What a channel's sink accepts: single chunks, or batches of chunks written back to back. */
export type SinkChunk = Uint8Array | readonly Uint8Array[]

/** Writes everything `source` yields to `channel`, waiting for it to drain whenever it is congested. */
export async function channelSink (channel: Channel, source: AsyncIterable<SinkChunk> | Iterable<SinkChunk>): Promise<void> {
  for await (const item of source) {
    // Named: in some orders of checking files the type service makes this element `any`.
    const chunk = item as SinkChunk
    if (!channel.isOpen) throw channel.error ?? new ClosedError(`connection ${channel.id} is closed`)
    if (!channel.write(chunk)) await channel.drained()
  }
}

/** A channel as a duplex of byte chunks. */
export function channelDuplex (channel: Channel): Duplex<Uint8Array> {
  return {
    source: { [Symbol.asyncIterator]: () => channelSource(channel) },
    sink: async (source) => { await channelSink(channel, source) }
  }
}

/**
 * The chunks written to a transformed channel, waiting for its top transform's
 * sink to take them: an async iterable fed by write().
 */
class WriteQueue implements AsyncIterable<Uint8Array> {
  private chunks: Uint8Array[] = []
  private head = 0
  bytes = 0
  private ended = false
  private waiting: ((r: IteratorResult<Uint8Array>) => void) | null = null
  private drainWaiters: Array<() => void> = []

  push (chunk: Uint8Array): void {
    if (this.ended) return
    const w = this.waiting
    if (w !== null) { this.waiting = null; w({ value: chunk, done: false }); return }
    this.chunks.push(chunk)
    this.bytes += chunk.length
  }

  /** No more chunks: the iteration ends once the queued ones are taken. */
  end (): void {
    this.ended = true
    const w = this.waiting
    this.waiting = null
    if (w !== null) w(DONE)
  }

  /** Drops what is queued and ends. */
  clear (): void {
    this.chunks = []
    this.head = 0
    this.bytes = 0
    this.end()
    this.wakeDrain()
  }

  drained (): Promise<void> {
    if (this.bytes < WRITE_HIGH_WATER) return Promise.resolve()
    return new Promise((resolve) => { this.drainWaiters.push(resolve) })
  }

  private wakeDrain (): void {
    if (this.drainWaiters.length === 0) return
    const ws = this.drainWaiters
    this.drainWaiters = []
    for (const w of ws) w()
  }

  [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        if (this.head < this.chunks.length) {
          const chunk = this.chunks[this.head]!
          this.chunks[this.head++] = undefined as unknown as Uint8Array
          if (this.head === this.chunks.length) { this.chunks = []; this.head = 0 }
          this.bytes -= chunk.length
          if (this.bytes < WRITE_HIGH_WATER) this.wakeDrain()
          return Promise.resolve({ value: chunk, done: false })
        }
        if (this.ended) return Promise.resolve(DONE)
        return new Promise((resolve) => { this.waiting = resolve })
      },
      return: () => { this.clear(); return Promise.resolve(DONE) }
    }
  }
}

/**
 * A duplex back into a channel: its source is read into the channel's reader
 * (paused while the reader is paused), and what is written goes to its sink. The
 * far end is `base`, the channel under the transforms: it gives the info, and
 * closing either closes both.
 */
export class DuplexChannel implements Channel {
  readonly id: string
  readonly transport: string
  readonly direction: Channel['direction']
  readonly remoteAddress: string
  readonly remotePort: number
  readonly encrypted: boolean
  readonly peerCertificate: Channel['peerCertificate']
  readonly peerAuthorized: boolean
  readonly peerAuthorizationError: Error | null
  readonly refusal: Error | undefined
  private readonly queue = new WriteQueue()
  private readonly sinkDone: Promise<void>
  private reader: ChannelReader | null = null
  private paused: Promise<void> | null = null
  private unpause: (() => void) | null = null
  private failure: Error | undefined = undefined
  /** Closed or ended by this side: the reader then ends quietly. */
  private closedHere = false

  constructor (private readonly duplex: Duplex<Uint8Array>, private readonly base: Channel) {
    this.id = base.id
    this.transport = base.transport
    this.direction = base.direction
    this.remoteAddress = base.remoteAddress
    this.remotePort = base.remotePort
    this.encrypted = base.encrypted
    this.peerCertificate = base.peerCertificate
    this.peerAuthorized = base.peerAuthorized
    this.peerAuthorizationError = base.peerAuthorizationError
    this.refusal = base.refusal
    this.sinkDone = pipe(this.queue, duplex.sink).catch((err: unknown) => {
      // A transform that fails on the way out fails the connection.
      this.close(err instanceof Error ? err : new Error(String(err)))
    })
    void base.closed.then(() => { this.queue.clear(); this.unpause?.() })
  }

  get closed (): Promise<void> { return this.base.closed }
  get isOpen (): boolean { return this.base.isOpen }
  get error (): Error | undefined { return this.failure ?? this.base.error }
  get writable (): boolean { return this.base.isOpen && this.queue.bytes < WRITE_HIGH_WATER }
  get writableLength (): number { return this.queue.bytes + this.base.writableLength }
  get bytesOut (): number { return this.base.bytesOut }
  get bytesIn (): number { return this.base.bytesIn }

  read (reader: ChannelReader): void {
    if (this.reader !== null) throw new AlreadyIteratingError(`connection ${this.id}: it already has a reader`)
    this.reader = reader
    const consume = pipe(this.duplex.source, async (source) => {
      for await (const chunk of source) {
        reader.data(chunk)
        if (this.paused !== null) await this.paused
      }
    })
    consume.then(() => { reader.end(null) }, (err: unknown) => {
      const error = err instanceof Error ? err : new Error(String(err))
      // Closed by this side: the transforms' errors about it are not the remote's fault.
      if (this.closedHere) { reader.end(null); return }
      // A transform that stopped because the socket failed under it reports the socket's error.
      const why = this.base.error ?? error
      reader.end(why)
      this.close(why)
    })
  }

  pause (): void {
    if (this.paused !== null) return
    this.paused = new Promise((resolve) => { this.unpause = resolve })
  }

  resume (): void {
    const u = this.unpause
    this.paused = null
    this.unpause = null
    u?.()
  }

  write (chunks: Uint8Array | readonly Uint8Array[]): boolean {
    if (!this.base.isOpen) return false
    // A copy, in one chunk: what the session writes may be views of its queue (see FrameWriter.framed), and a transform may change what it is given.
    this.queue.push(copyBytes(chunks instanceof Uint8Array ? [chunks] : chunks))
    return this.queue.bytes < WRITE_HIGH_WATER
  }

  drained (): Promise<void> { return this.queue.drained() }

  async end (error?: Error): Promise<void> {
    if (error !== undefined) this.failure ??= error
    this.closedHere = true
    this.queue.end()
    await this.sinkDone
    await this.base.end(error)
  }

  close (error?: Error): void {
    if (error !== undefined) this.failure ??= error
    this.closedHere = true
    this.queue.clear()
    this.base.close(error)
  }
}

/**
 * `channel` seen through `transforms`, the first one next to the channel; the
 * channel itself when there are none. `signal` is aborted when the channel closes.
 */
export function transformChannel (channel: Channel, transforms: readonly ConnectionTransform[]): Channel {
  if (transforms.length === 0) return channel
  const closing = new AbortController()
  void channel.closed.then(() => { closing.abort(new ClosedError(`connection ${channel.id} closed`)) })
  const context: TransformContext = { info: channel, signal: closing.signal }
  let duplex = channelDuplex(channel)
  for (const t of transforms) duplex = t(duplex, context)
  return new DuplexChannel(duplex, channel)
}
