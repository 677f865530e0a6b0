// What a transport gives the Link: listening (channels it accepts) and
// connecting (a channel, or why not). The Link picks a transport from its table
// for each listener and connector; adding one (WebSocket) is one more entry.
import type { Channel } from './channel.ts'
import type { Logger } from '../logging.ts'

/** A bound listener as its transport keeps it. */
export interface TransportServer {
  /** The bound address. */
  readonly host: string
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number
  /** Stops accepting (the port is released at once); connections already accepted stay up. */
  close (): void
  /** Drops what is still being set up (e.g. clients in their TLS handshake): part of closing the link. */
  abort (): void
}

/** What a transport reports while it listens. */
export interface TransportEvents {
  readonly log: Logger
  /** A client failed before it became a channel (TLS handshake, certificate), or the listener failed. */
  error (error: Error): void
}

/** The options every listener takes; a transport reads the ones it knows. */
export interface TransportListenOptions {
  host: string
  port: number
  maxConnections: number
  [option: string]: unknown
}

/** The options every connector takes; a transport reads the ones it knows. */
export interface TransportConnectOptions {
  host: string
  port: number
  /** Milliseconds the attempt may take, handshakes included. */
  connectTimeout: number
  [option: string]: unknown
}

export interface Transport {
  /** `'tcp'`, `'tls'`, `'ws'`: what the transport's channels report as `transport`. */
  readonly name: string
  /** True when this transport serves a listener with these options. */
  listens (options: Readonly<Record<string, unknown>>): boolean
  /** True when this transport makes a connector's connections with these options. */
  connects (options: Readonly<Record<string, unknown>>): boolean
  /** Checks what it can of a connector's options at once (bad TLS keys), returning what each attempt uses. */
  prepare? (options: TransportConnectOptions): TransportConnectOptions
  listen (options: TransportListenOptions, accept: (channel: Channel) => void, events: TransportEvents): Promise<TransportServer>
  /** One attempt; rejects with why it failed. `signal` aborts it (the connector closed). */
  connect (options: TransportConnectOptions, signal: AbortSignal): Promise<Channel>
}
