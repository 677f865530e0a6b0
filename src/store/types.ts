// The queue-store interface: where outgoing messages that must survive a
// restart are kept. The store keeps, per peer, a FIFO of messages under
// increasing seqs, that peer's TTL clock, and a count of its messages and their
// bytes, kept with the messages (never recounted at start), so that a restart can
// learn what is queued without reading the queues, and then page each queue in
// as it drains.

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
  /**
   * No stored message of this peer expires before this reading of its offline
   * clock (ms; Infinity: none expires). A lower bound kept by Messaging, so that
   * after a restart it knows when to look for expired messages in a queue it has
   * not read. Absent: unknown (a store written before it was kept).
   */
  minExpiry?: number
}

/** A stored message, named for deletion. */
export interface StoredRef {
  peer: string
  seq: number
  /**
   * Bytes of the message's data (`data.byteLength` of what was put): the store
   * takes it off the peer's byte count without reading the message.
   */
  size: number
}

/**
 * One atomic change to the store.
 *
 * The store keeps its per-peer counts from the batches alone, without reading
 * what is already stored, so a batch must keep to this: each `put` is a new
 * message (no message with that peer and seq is stored, after the batch's
 * earlier operations in call order), and each `del` names a message that is
 * stored, with its data size. MemoryStore refuses a batch that breaks this
 * (InvalidArgumentError, nothing written); LevelStore cannot tell without
 * reading, and its counts would go wrong, which it later reports as corruption
 * (StoreCorruptError).
 */
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

/** What is stored for one peer, as {@link QueueStore.summary} tells it. */
export interface QueueSummary {
  peer: string
  /** Messages stored for the peer (at least 1). */
  count: number
  /** Bytes of their data. */
  bytes: number
  /** The peer's highest stored seq + 1: where its next message goes. */
  nextSeq: number
}

/** What a store holds, without the messages: see {@link QueueStore.summary}. */
export interface StoreSummary {
  /** One entry per peer with stored messages, ordered by peer. */
  queues: QueueSummary[]
  clocks: Map<string, PeerClock>
}

/** Storage for persistent outgoing queues. */
export interface QueueStore {
  /** True if what is written survives a process restart. */
  readonly durable: boolean
  /**
   * Makes `owner` (a Messaging) the one user of this store until it calls
   * `release(owner)` or the store is closed. Two owners would both write seq 0
   * of a peer, one over the other. Throws StoreInUseError if another owner
   * holds it; claiming again as the same owner is a no-op.
   */
  claim (owner: object): void
  /** Ends `owner`'s claim (a no-op if it holds none). */
  release (owner: object): void
  /** Reads everything stored, and checks the counts against it. */
  load (): Promise<StoreContents>
  /**
   * Each peer's count of messages and bytes, its next seq, and every clock,
   * without reading the messages: its cost grows with the number of peers, not
   * with the depth of their queues. Sees every write() that resolved before it
   * was called.
   */
  summary (): Promise<StoreSummary>
  /**
   * Up to `limit` messages of `peer` with seq >= `fromSeq`, in seq order: one
   * range read, as cheap at any depth. Sees every write() that resolved before
   * it was called.
   */
  read (peer: string, fromSeq: number, limit: number): Promise<StoredMessage[]>
  /**
   * Applies a batch atomically. Concurrent calls may be merged into one write;
   * the promise resolves once this batch is written where it survives the
   * process (LevelStore in Node: its journal, with LevelDB written behind it),
   * and rejects with StoreError if it is not.
   */
  write (batch: StoreBatch): Promise<void>
  /** Finishes pending writes and releases the store (and any claim); idempotent. */
  close (): Promise<void>
}
