// Public types of the messaging layer: options, messages, events.
import type { PeerCertificate } from 'node:tls'
import type { Connection } from '../link/connection.ts'
import type { QueueStore } from '../store/types.ts'
import type { DropReason } from '../errors.ts'
import type { Logger } from '../logging.ts'

export interface KeepaliveOptions {
  /** Milliseconds of silence from the remote after which a PING is sent. */
  interval: number
  /** Milliseconds to wait for any packet after that PING before the connection is closed. */
  wait: number
}

export interface QueueLimits {
  /** Most messages queued for one peer (not yet delivered). Default 100,000. */
  messages?: number
  /** Most bytes of message data queued for one peer. Default 64 MiB. */
  bytes?: number
}

export interface MessagingOptions {
  /** This peer's identity, sent to every remote in IDENTIFICATION. 1 to 50 characters (snakeMQ's limit). */
  identity: string
  /** Where persistent messages are kept. Default: none (persistent messages live in memory only). */
  store?: QueueStore
  /**
   * Keepalive: a connection silent for `interval` ms gets a PING, and is closed
   * (KeepaliveTimeoutError) if nothing arrives within `wait` ms, so a connection
   * that died without a word (a crashed host, a NAT that forgot it, a proxy that
   * stopped forwarding) is noticed, and what waited on it goes out on the next
   * one. Default on: `{ interval: 10_000, wait: 10_000 }` (snakeMQ's default was
   * off; snakeMQ 1.6 answers every PING, so it is safe with its peers). `false`
   * turns it off.
   */
  keepalive?: KeepaliveOptions | false
  /** Milliseconds a new connection has to complete PROTOCOL_VERSION and IDENTIFICATION. Default 5,000. */
  handshakeTimeout?: number
  /** Largest packet accepted from a remote, in bytes. Default 64 MiB. */
  maxPacketSize?: number
  /**
   * What the packets that have begun to arrive and are not yet whole may hold in
   * memory, over all connections together (`maxPacketSize` bounds one), with,
   * over WebSocket, the messages still arriving. Past it, the connection holding
   * the most is closed with ReceiveBudgetError and its packet dropped (its
   * sender resends it when it reconnects); one that holds it all alone is not.
   * At least `maxPacketSize`. Default four times `maxPacketSize` (256 MiB).
   */
  maxUnfinishedBytes?: number
  /**
   * Per-peer outgoing queue limits, on the messages held in memory only (not
   * persistent, or without a store). Persistent messages in a store are bounded
   * by its disk. Default 100,000 messages and 64 MiB per peer.
   */
  queueLimits?: QueueLimits
  /**
   * How much of a peer's persistent backlog is held in memory: past this many
   * messages (or bytes of data) waiting to be sent, further persistent messages
   * stay only in the store and are read back in batches as the queue drains, so
   * memory does not grow with the depth of a queue. Default 4,096 messages and 4 MiB.
   */
  persistentWindow?: { messages?: number, bytes?: number }
  /**
   * Most messages sent to a peer of this library and not yet acknowledged. Bounds
   * what a reconnect resends. Default 8,192.
   */
  maxUnacked?: number
  /**
   * Received messages held for consumers that have not taken them yet, across all
   * consumers; past this the sockets are no longer read. Default 1,024.
   */
  receiveBuffer?: number
  /**
   * Bytes of received message data held for consumers that have not taken them
   * yet, across all consumers; past this the sockets are no longer read, whatever
   * the count. Without it a peer could make this side hold `receiveBuffer`
   * messages of `maxPacketSize` each. Default 64 MiB.
   */
  receiveBufferBytes?: number
  /** How many recent message UUIDs per peer are remembered to drop duplicates. Default 65,536. */
  dedupWindow?: number
  /**
   * Peers that are disconnected and have nothing queued whose state (duplicate
   * window, queue) is kept; past this the longest-gone are forgotten, so a remote
   * cycling through identities cannot grow memory without bound. A forgotten
   * peer that comes back starts with a fresh duplicate window. (A peer that was
   * only addressed, never connected, is forgotten as soon as nothing is queued
   * for it.) Default 10,000.
   */
  maxIdlePeers?: number
  /**
   * Bytes of duplicate windows kept for peers that are disconnected with nothing
   * queued (a full window is about 2 MiB); past this the windows of the
   * longest-gone are forgotten, as past maxIdlePeers, so a remote that sends
   * under many identities in turn cannot make this side keep a window for each.
   * Default 64 MiB.
   */
  maxIdleWindowBytes?: number
  /**
   * Turn off the acknowledged-delivery extension and behave exactly like snakeMQ
   * 1.6 (a message counts as delivered once written to the socket). Default false.
   */
  plainSnakeMQ?: boolean
  /** Where log lines go; default the `debug` namespace `snakemq:messaging`. */
  logger?: Logger
  /**
   * Bind identities to TLS certificates: a remote is accepted only if its
   * connection carries a certificate verified against the trusted CAs and the
   * identity it claims in IDENTIFICATION equals that certificate's subject CN or
   * one of its DNS subjectAltNames (exactly; wildcards do not match). Any other
   * remote, including one over plain TCP, is refused with IdentityMismatchError
   * (an `error` event and a log line) and its connection closed. Listeners must
   * then ask for client certificates (`tls.requestCert`). Default false: as in
   * snakeMQ, any remote may claim any identity.
   */
  bindIdentityToCertificate?: boolean
}

export interface SendOptions {
  /**
   * Seconds the message may wait for its peer while that peer is disconnected.
   * `undefined`, `null` or a negative number: no expiry (0xFFFFFFFF on the wire).
   * 0: sent only if the peer is connected now, dropped otherwise. Fractions are
   * kept locally; whole seconds go on the wire, as in snakeMQ. Default: no
   * expiry (snakeMQ's `Message` defaulted to 0).
   */
  ttl?: number | null
  /** Keep the message in the store until it is delivered. Default false. */
  persistent?: boolean
  /**
   * What the returned promise waits for:
   * - `'queued'` (default): the message is in the peer's queue (and, if persistent,
   *   written to the store);
   * - `'delivered'`: the peer acknowledged it (a plain snakeMQ peer: it was written
   *   to the socket). Rejects with MessageDroppedError if it is dropped instead.
   */
  wait?: 'queued' | 'delivered'
  /** When the peer's queue is full: `'wait'` (default) for room, or `'reject'` with QueueFullError. */
  whenFull?: 'wait' | 'reject'
  /** Aborts the wait (for room, for the store, or for delivery). A message already queued stays queued. */
  signal?: AbortSignal
}

export interface SendResult {
  /** The message's UUID, 32 hex digits. */
  uuid: string
}

/** A message received from a peer. */
export interface Message {
  /** The sender's identity. */
  readonly from: string
  /** The message data. */
  readonly data: Uint8Array
  /** The message UUID, 32 hex digits. */
  readonly uuid: string
  /** The TTL the sender put on the wire, in seconds; null for no expiry. */
  readonly ttl: number | null
  /** The wire flags. */
  readonly flags: number
  /** True if the sender marked it persistent. */
  readonly persistent: boolean
  /**
   * Acknowledges the message to its sender (only needed with `ack: 'manual'`;
   * idempotent). Until then a peer of this library will redeliver it after a reconnect.
   */
  ack (): void
}

export interface MessagesOptions {
  /** Only messages whose data starts with these bytes (a string is taken as UTF-8). */
  prefix?: Uint8Array | string
  /** Only messages for which this returns true. Combined with `prefix` if both are given. */
  filter?: (msg: Message) => boolean
  /**
   * When a message counts as received (and is acknowledged to its sender):
   * `'auto'` (default) once the consumer asks for the next message or leaves the
   * loop; `'manual'` when `msg.ack()` is called. With `'manual'`, messages taken
   * but not acknowledged when the iteration ends (a loop left early, a stream
   * adapter's read-ahead) are handed to the next consumer; their late `ack()` is ignored.
   */
  ack?: 'auto' | 'manual'
  /** Ends the iteration when aborted. */
  signal?: AbortSignal
}

/**
 * `messages({ batch })`: the same consumer, iterated as arrays of messages. Each
 * array holds what arrived since the last one was taken (at least one message),
 * so a loop awaits once per batch instead of once per message.
 */
export interface BatchMessagesOptions extends MessagesOptions {
  /**
   * The most messages in one array: a positive integer, or `true` for all that
   * wait (the receive buffer bounds those). With `ack: 'auto'` a batch counts as
   * received once the next one is asked for or the loop is left.
   */
  batch: true | number
}

export interface PeerEvent {
  /** The remote's identity. */
  ident: string
  /** The connection it is on. */
  connection: Connection
  /** The remote's TLS certificate (snakeMQ's `getpeercert()`); null over plain TCP or when it sent none. */
  certificate: PeerCertificate | null
}

export interface MessagingEvents {
  /** A remote completed the handshake. */
  connect: [PeerEvent]
  /** An identified remote's connection ended; `error` says why, if it was an error. */
  disconnect: [PeerEvent & { error?: Error }]
  /** A message was delivered (acknowledged, or written for a plain snakeMQ peer). */
  delivered: [{ to: string, uuid: string }]
  /** A message was dropped without being delivered. */
  drop: [{ to: string, uuid: string, reason: DropReason }]
  /** A connection was closed because of an error (bad input, timeout, ...). Only emitted if listened to; otherwise logged. */
  error: [{ error: Error, connection?: Connection, ident?: string }]
  /** close() was called. */
  closed: []
}

/** One event of `Messaging.events()`: the event's name as `type`, with its fields. */
export type MessagingEvent = {
  [K in MessagingEventType]: { type: K } & MessagingEvents[K][0]
}[MessagingEventType]

/** The events `Messaging.events()` can stream. */
export type MessagingEventType = Exclude<keyof MessagingEvents, 'closed'>

/** Counters in Messaging.stats(), since the Messaging started. */
export interface StatsCounts {
  /** Messages queued for it and not yet delivered (in flight included). */
  queued: number
  /** Messages written to it on its current connection and waiting for their acknowledgement. */
  unacked: number
  /** Messages written to it (a message sent again after a reconnect counts again). */
  sent: number
  /** Messages from it handed to the application. */
  received: number
  /** Bytes written to its connections, as on the wire (all frames, after the connection's transforms). */
  bytesOut: number
  /** Bytes read from its connections, as on the wire. */
  bytesIn: number
  /** Times it connected again after its first connection. */
  reconnects: number
}

/** One peer's counters. */
export interface PeerStats extends StatsCounts {
  /** Connected now (its `connect` was emitted and its `disconnect` not yet). */
  connected: boolean
}

/** What Messaging.stats() returns. */
export interface MessagingStats {
  /** Per peer this Messaging knows (connected, or with state kept: see maxIdlePeers), by identity (a null-prototype object). */
  peers: Record<string, PeerStats>
  /** Sums over those peers; `connected` is how many are connected now. */
  totals: StatsCounts & { connected: number }
}

export interface DrainOptions {
  /**
   * Milliseconds to wait for the queues to empty; then the Messaging closes
   * anyway and reports what it still held (a `drop` event with reason
   * `'closed'` for each message that is not kept in the store). Default: no limit.
   */
  timeout?: number
  /** Stops waiting when aborted: the Messaging closes at once, as on a timeout. */
  signal?: AbortSignal
}

export interface DrainResult {
  /** True when every queue emptied in time; false when the wait was cut short. */
  drained: boolean
  /** Messages still queued when it closed: dropped with reason `'closed'`, or (persistent) kept in the store. */
  left: number
}

export interface EventsOptions {
  /** Only these event types. Default: all. */
  types?: readonly MessagingEventType[]
  /**
   * Events held for a consumer that is not keeping up; past this the oldest are
   * discarded (and counted in the next event's `missed`). Default 1,024.
   */
  bufferSize?: number
  /** Ends the iteration when aborted. */
  signal?: AbortSignal
}
