// The queue-store interface: where outgoing messages that must survive a
// restart are kept. Messaging keeps every queue in memory and mirrors its
// persistent messages into a store; the store only has to load, write and delete.

/** One persisted outgoing message. */
export interface StoredMessage {
  /** The recipient's identity (any string; the store must encode it safely). */
  peer: string
  /** Position in that peer's queue: strictly increasing per peer, a safe integer >= 0. */
  seq: number
  /** The message UUID, 16 bytes. */
  uuid: Uint8Array
  /**
   * When the message expires, in milliseconds on the peer's offline clock
   * (see PeerClock); `Infinity` when it never expires.
   */
  expiry: number
  /** Wire flags (bit 0 = persistent). */
  flags: number
  /** The message data. */
  data: Uint8Array
}

/**
 * The TTL clock of one peer. A message's TTL runs down only while its peer is
 * disconnected, so each peer has a clock that advances only then:
 * `offline` is the clock's reading at wall time `since` (ms since the epoch), and
 * when `connected` is false the clock has been running since `since`.
 */
export interface PeerClock {
  offline: number
  since: number
  connected: boolean
}

/** A reference to a stored message. */
export interface StoredRef { peer: string, seq: number }

/** One atomic change to the store. */
export interface StoreBatch {
  put?: readonly StoredMessage[]
  del?: readonly StoredRef[]
  clocks?: ReadonlyArray<readonly [peer: string, clock: PeerClock]>
}

/** Everything a store holds, as loaded at start. */
export interface StoreContents {
  /** Messages ordered by peer, then by seq. */
  messages: StoredMessage[]
  clocks: Map<string, PeerClock>
}

/** Storage for persistent outgoing queues. */
export interface QueueStore {
  /** True if what is written survives a process restart. */
  readonly durable: boolean
  /** Reads everything stored. */
  load (): Promise<StoreContents>
  /**
   * Applies a batch atomically. Concurrent calls may be merged into one write;
   * the promise resolves once this batch is written (rejects with StoreError if not).
   */
  write (batch: StoreBatch): Promise<void>
  /** Finishes pending writes and releases the store; idempotent. */
  close (): Promise<void>
}
