// What the two WebSocket channels (the `ws` package's on Node, a browser's own)
// share: the chunks that come in go to one reader, held while it is paused or
// not there yet (up to holdLimit bytes, for a source that cannot stop reading);
// the reader is ended once; writers wait for a drain.
import { AlreadyIteratingError, ClosedError } from '../errors.ts'
import { channelId, type ChannelReader } from './channel.ts'

export abstract class MessageChannelBase {
  readonly id = channelId()
  error: Error | undefined = undefined
  protected reader: ChannelReader | null = null
  protected paused = false
  protected closing = false
  protected isClosed = false
  protected readEnded = false
  /** Chunks that came before read(), or while paused (a source may still deliver a few after it was paused). */
  private held: Uint8Array[] = []
  /** The bytes of `held`. */
  private heldBytes = 0
  /**
   * Bytes `held` may reach before overflow() is called: a bound for a source
   * that cannot stop reading (a browser's WebSocket). One that can pauses and
   * holds no more than it delivered after the pause.
   */
  protected readonly holdLimit: number = Infinity
  private drainWaiters: Array<() => void> = []

  abstract get isOpen (): boolean
  abstract get writable (): boolean

  read (reader: ChannelReader): void {
    if (this.reader !== null) throw new AlreadyIteratingError(`connection ${this.id}: it already has a reader`)
    this.reader = reader
    if (!this.isOpen) {
      queueMicrotask(() => { this.finishRead(this.error ?? new ClosedError(`connection ${this.id} is closed`)) })
      return
    }
    this.resume()
  }

  /** Ends the reader, once: quietly when this side closed the channel. */
  protected finishRead (error: Error | null): void {
    const reader = this.reader
    if (reader === null || this.readEnded) return
    this.readEnded = true
    this.held = []
    this.heldBytes = 0
    reader.end(error === null || this.closing ? null : error)
  }

  pause (): void {
    this.paused = true
    this.pauseSource()
  }

  resume (): void {
    if (this.reader === null || this.readEnded) return
    this.paused = false
    // What was held goes first; a reader may pause again on any chunk.
    while (this.held.length > 0 && !this.paused && !this.readEnded) {
      const chunk = this.held.shift()!
      this.heldBytes -= chunk.length
      this.reader.data(chunk)
    }
    if (!this.paused && this.isOpen) this.resumeSource()
  }

  /** Stops the source from delivering, where it can (a browser's WebSocket cannot). */
  protected pauseSource (): void {}
  protected resumeSource (): void {}
  /** What is held went past holdLimit (`held` bytes): the channel ends its reader and closes. */
  protected overflow (_held: number): void {}

  /** A chunk from the remote: to the reader, or held. */
  protected push (chunk: Uint8Array): void {
    if (this.reader !== null && !this.paused && this.held.length === 0) {
      this.reader.data(chunk)
      return
    }
    this.held.push(chunk)
    this.heldBytes += chunk.length
    if (this.heldBytes > this.holdLimit) this.overflow(this.heldBytes)
  }

  drained (): Promise<void> {
    if (!this.isOpen || this.writable) return Promise.resolve()
    return new Promise((resolve) => { this.drainWaiters.push(resolve) })
  }

  protected get waitingForDrain (): boolean { return this.drainWaiters.length > 0 }

  /** Wakes the writers waiting for a drain, once the channel takes writes again (or is closed). */
  protected notifyDrained (): void {
    // An ended channel stays unwritable: its waiters go on waiting, for the close.
    if (this.drainWaiters.length === 0 || (this.isOpen && !this.writable)) return
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const w of waiters) w()
  }
}
