// One live connection as the Link hands it up: a channel (the transport's,
// seen through the connection's transforms) with its info, and a duplex view
// of it for packet-level code: `source` yields what the remote sent, `sink`
// writes what an async iterable yields, with backpressure both ways.
import type { Channel, ChannelReader, Direction } from './channel.ts'
import { channelSink, channelSource, type Duplex, type SinkChunk } from './duplex.ts'
import { AlreadyIteratingError } from '../errors.ts'
import type { ThrottleRates } from '../transforms/throttle.ts'

export type { SinkChunk }

export class Connection implements Channel, Duplex<Uint8Array, SinkChunk> {
  readonly id: string
  readonly transport: string
  readonly direction: Direction
  readonly remoteAddress: string
  readonly remotePort: number
  readonly encrypted: boolean
  readonly peerCertificate: Channel['peerCertificate']
  readonly peerAuthorized: boolean
  readonly peerAuthorizationError: Error | null
  readonly refusal: Error | undefined
  readonly closed: Promise<void>
  private sourceTaken = false

  /**
   * `channel`: what the connection reads and writes (the transport's channel,
   * through the transforms if any); `throttle`: the bandwidth limits the link put
   * on it, if any (shown here, applied by a transform).
   */
  constructor (private readonly channel: Channel, readonly throttle: Readonly<ThrottleRates> | null = null) {
    this.id = channel.id
    this.transport = channel.transport
    this.direction = channel.direction
    this.remoteAddress = channel.remoteAddress
    this.remotePort = channel.remotePort
    this.encrypted = channel.encrypted
    this.peerCertificate = channel.peerCertificate
    this.peerAuthorized = channel.peerAuthorized
    this.peerAuthorizationError = channel.peerAuthorizationError
    this.refusal = channel.refusal
    this.closed = channel.closed
  }

  get isOpen (): boolean { return this.channel.isOpen }
  get error (): Error | undefined { return this.channel.error }
  get writable (): boolean { return this.channel.writable }
  get writableLength (): number { return this.channel.writableLength }
  get bytesOut (): number { return this.channel.bytesOut }
  get bytesIn (): number { return this.channel.bytesIn }
  /** True while the write side holds more than it should (see `writable`). */
  get congested (): boolean { return this.channel.isOpen && !this.channel.writable }

  read (reader: ChannelReader): void {
    if (this.sourceTaken) throw new AlreadyIteratingError(`connection ${this.id}: its source is already being read`)
    this.sourceTaken = true
    this.channel.read(reader)
  }

  pause (): void { this.channel.pause() }
  resume (): void { this.channel.resume() }
  write (chunks: Uint8Array | readonly Uint8Array[]): boolean { return this.channel.write(chunks) }
  drained (): Promise<void> { return this.channel.drained() }
  end (error?: Error): Promise<void> { return this.channel.end(error) }
  close (error?: Error): void { this.channel.close(error) }

  /** The bytes the remote sends, chunk by chunk. Single consumer (a second one, or read(), throws AlreadyIteratingError). */
  get source (): AsyncIterable<Uint8Array> {
    if (this.sourceTaken) throw new AlreadyIteratingError(`connection ${this.id}: its source is already being read`)
    this.sourceTaken = true
    return channelSource(this.channel)
  }

  /** Writes everything `source` yields (single chunks or batches written back to back), waiting for the connection to drain when it is congested. */
  readonly sink = async (source: AsyncIterable<SinkChunk> | Iterable<SinkChunk>): Promise<void> => {
    await channelSink(this.channel, source)
  }
}
