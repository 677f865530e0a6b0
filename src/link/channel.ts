// The one interface every transport implements: a channel is one live
// connection's bytes. Reading is pushed (a data callback, with pause() and
// resume() for backpressure); writing is write(chunks), which returns false once
// the channel is congested, plus drained() to wait for it. TCP, TLS and
// WebSocket are implementations; the session above sees nothing else.
import type { PeerCertificate } from 'node:tls'

/** Whether a connector of ours opened the connection (`'outbound'`) or a listener accepted it (`'inbound'`). */
export type Direction = 'inbound' | 'outbound'

/** What is known about a channel's far end and how it is reached. */
export interface ChannelInfo {
  /** A short id for logs, unique in this process: `c1`, `c2`, ... */
  readonly id: string
  /** The transport that made it: `'tcp'`, `'tls'`, `'ws'`, `'wss'`, or a test's own. */
  readonly transport: string
  readonly direction: Direction
  /** The remote's address as the transport saw it (`''` when unknown, e.g. in a browser). */
  readonly remoteAddress: string
  /** The remote's port (0 when unknown). */
  readonly remotePort: number
  /** True when the bytes are encrypted on the way (TLS, `wss:`). */
  readonly encrypted: boolean
  /**
   * The remote's certificate on a TLS connection (snakeMQ's `getpeercert()`), or
   * null when there is none (plain TCP, or the remote sent no certificate).
   */
  readonly peerCertificate: PeerCertificate | null
  /** True when the remote's certificate was verified against the trusted CAs. */
  readonly peerAuthorized: boolean
  /** Why the remote's certificate did not verify, when it did not (e.g. `CERT_HAS_EXPIRED`). */
  readonly peerAuthorizationError: Error | null
  /**
   * Set when the transport refuses this remote but let the connection come up
   * so that it can be told why (a TLS client whose certificate did not verify):
   * the layer above sends the refusal and closes; it reads nothing from it.
   */
  readonly refusal?: Error | undefined
}

/** What a channel pushes its bytes to. */
export interface ChannelReader {
  /** A chunk from the remote. The bytes stay valid after the call (they are not reused). */
  data (chunk: Uint8Array): void
  /**
   * Nothing more comes: null when the remote ended its side (or this side closed
   * the channel), else the error that ended it. Called once.
   */
  end (error: Error | null): void
  /**
   * The transport now holds `bytes` of the remote's data that it pushes only
   * once they are whole (a WebSocket message still arriving); 0 once pushed.
   * Counted with the reader's own unfinished packets (maxUnfinishedBytes).
   */
  pending? (bytes: number): void
}

/** One live connection's bytes, both ways. */
export interface Channel extends ChannelInfo {
  /** Starts pushing the remote's bytes to `reader`. One reader per channel; throws AlreadyIteratingError for a second. */
  read (reader: ChannelReader): void
  /** Stops pushing (the transport stops reading, so the remote is slowed by its flow control). */
  pause (): void
  resume (): void
  /**
   * Writes `chunks` back to back. Always takes them (unless closed, when they are
   * dropped); returns false once the channel holds more than it should, after
   * which the writer waits for `drained()` before writing more.
   */
  write (chunks: Uint8Array | readonly Uint8Array[]): boolean
  /** True when open and not congested: a write now would not be held back. */
  readonly writable: boolean
  /** Bytes taken by write() and not yet handed to the operating system or the transport below. */
  readonly writableLength: number
  /** Bytes handed to the operating system (or the transport below) so far, as they go on the wire. */
  readonly bytesOut: number
  /** Bytes received from the remote so far, as they came off the wire. */
  readonly bytesIn: number
  /** Resolves once the channel can take more (at once if it can), or when it closes. */
  drained (): Promise<void>
  /**
   * Sends what was written, then ends this side; resolves once the channel is
   * closed (the remote closes its side too, or it is destroyed after a timeout).
   * `error`, if given, is recorded as the reason (e.g. a refused handshake).
   */
  end (error?: Error): Promise<void>
  /** Closes at once, dropping unsent bytes. `error` is recorded as the reason. */
  close (error?: Error): void
  /** Settles once the channel is closed; never rejects. */
  readonly closed: Promise<void>
  /** True until the channel closes. */
  readonly isOpen: boolean
  /** Why the channel closed, if it was an error (set by close(error) or by the transport). */
  readonly error: Error | undefined
}

let nextChannelId = 1

/** A fresh id for a channel's logs: `c1`, `c2`, ... */
export function channelId (): string { return `c${nextChannelId++}` }
