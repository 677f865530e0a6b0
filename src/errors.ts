// Every error this library raises: one class per failure, each with a stable `name`
// and a `code`, so callers can tell what happened without parsing messages.

/** Base class of every error raised by snakemq. */
export class SnakeMQError extends Error {
  static override readonly name: string = 'SnakeMQError'
  override name = 'SnakeMQError'
  /** A stable, machine-readable code, e.g. `ERR_FRAME_TOO_LARGE`. */
  readonly code: string = 'ERR_SNAKEMQ'
}

/** A length header announced a packet larger than the configured maximum. */
export class PacketTooLargeError extends SnakeMQError {
  static override readonly name = 'PacketTooLargeError'
  override name = 'PacketTooLargeError'
  override readonly code = 'ERR_PACKET_TOO_LARGE'
  /** `when`: the limit is not maxPacketSize but a stricter one of that moment ('before IDENTIFICATION'). */
  constructor (readonly length: number, readonly limit: number, when?: string) {
    super(`packet of ${length} bytes exceeds the limit of ${limit} bytes${when === undefined ? '' : ` ${when}`}`)
  }
}

/**
 * The packets not yet whole, over all of a Messaging's connections, held more
 * than `maxUnfinishedBytes`: the connection holding the most was closed, its
 * unfinished packet dropped (a sender of this library resends it after
 * reconnecting; nothing acknowledged is lost).
 */
export class ReceiveBudgetError extends SnakeMQError {
  static override readonly name = 'ReceiveBudgetError'
  override name = 'ReceiveBudgetError'
  override readonly code = 'ERR_RECEIVE_BUDGET'
  /** `held`: what this connection's unfinished packet held; `total`: all connections' then; `limit`: maxUnfinishedBytes. */
  constructor (readonly held: number, readonly total: number, readonly limit: number) {
    super(`unfinished packets held ${total} bytes over all connections, more than maxUnfinishedBytes (${limit}); this connection held the most (${held} bytes) and was closed`)
  }
}

/**
 * The remote sent more than `limit` bytes while this side was not reading them
 * (its consumers had not taken what came before). A browser's WebSocket cannot
 * stop reading, so what arrives then is held; past the limit the connection is
 * closed (close code 4008) and what it held dropped. A sender of this library
 * resends what was not acknowledged after reconnecting; nothing acknowledged is lost.
 */
export class ReceiveOverflowError extends SnakeMQError {
  static override readonly name = 'ReceiveOverflowError'
  override name = 'ReceiveOverflowError'
  override readonly code = 'ERR_RECEIVE_OVERFLOW'
  /** `held`: the bytes held when the connection was closed; `limit`: what may be held. */
  constructor (readonly held: number, readonly limit: number) {
    super(`the remote sent ${held} bytes while this side was not reading, more than the limit of ${limit} bytes; a browser's WebSocket cannot stop reading, so the connection was closed (a sender of this library resends what was not acknowledged)`)
  }
}

/** The byte stream ended in the middle of a packet. */
export class TruncatedPacketError extends SnakeMQError {
  static override readonly name = 'TruncatedPacketError'
  override name = 'TruncatedPacketError'
  override readonly code = 'ERR_TRUNCATED_PACKET'
}

/** A frame that does not follow the protocol (too short, bad identity, wrong order, ...). */
export class ProtocolError extends SnakeMQError {
  static override readonly name: string = 'ProtocolError'
  override name: string = 'ProtocolError'
  override readonly code: string = 'ERR_PROTOCOL'
}

/**
 * A WebSocket message larger than the connection takes (`websocket.maxPayload`
 * of a listener or connector) arrived; the connection is closed. Peers of this
 * library never send a message above 1 MiB: a packet larger than that spans
 * several messages.
 */
export class WebSocketMessageTooLargeError extends ProtocolError {
  static override readonly name = 'WebSocketMessageTooLargeError'
  override name = 'WebSocketMessageTooLargeError'
  override readonly code = 'ERR_WEBSOCKET_MESSAGE_TOO_LARGE'
  /** `when`: the limit is a stricter one of that moment than maxPayload ('before IDENTIFICATION'). */
  constructor (readonly limit: number, options?: ErrorOptions & { when?: string }) {
    super(`a WebSocket message larger than the limit of ${limit} bytes arrived${options?.when === undefined ? '' : ` ${options.when}`}`, options)
  }
}

/** The remote speaks a protocol version other than 1. */
export class IncompatibleProtocolError extends SnakeMQError {
  static override readonly name = 'IncompatibleProtocolError'
  override name = 'IncompatibleProtocolError'
  override readonly code = 'ERR_INCOMPATIBLE_PROTOCOL'
  constructor (readonly remoteVersion: number | null, message?: string) {
    super(message ?? (remoteVersion === null ? 'the remote refused our protocol version' : `the remote speaks protocol version ${remoteVersion}, not 1`))
  }
}

/**
 * A connection's handshake was refused, by this side or (`byRemote`) by the
 * remote, which said why before closing. A connector that gets one backs off
 * and reports it as a `connect-error`; no `connect` is emitted for it.
 */
export class HandshakeRefusedError extends SnakeMQError {
  static override readonly name: string = 'HandshakeRefusedError'
  override name = 'HandshakeRefusedError'
  override readonly code: string = 'ERR_HANDSHAKE_REFUSED'
  /** True when the remote refused this side (it sent REFUSED); false when this side refused the remote. */
  byRemote = false
}

/** A second connection identified itself with an identity that is already connected. */
export class DuplicateIdentityError extends HandshakeRefusedError {
  static override readonly name = 'DuplicateIdentityError'
  override name = 'DuplicateIdentityError'
  override readonly code = 'ERR_DUPLICATE_IDENTITY'
  constructor (readonly identity: string, message?: string, options?: ErrorOptions) {
    super(message ?? `a peer named ${JSON.stringify(identity)} is already connected, and this connection is not provably from it`, options)
  }
}

/** The handshake (PROTOCOL_VERSION and IDENTIFICATION) did not complete in time. */
export class HandshakeTimeoutError extends SnakeMQError {
  static override readonly name = 'HandshakeTimeoutError'
  override name = 'HandshakeTimeoutError'
  override readonly code = 'ERR_HANDSHAKE_TIMEOUT'
}

/** A connector's attempt did not connect within `connectTimeout`; it is retried like any failed attempt. */
export class ConnectTimeoutError extends SnakeMQError {
  static override readonly name = 'ConnectTimeoutError'
  override name = 'ConnectTimeoutError'
  override readonly code = 'ERR_CONNECT_TIMEOUT'
  constructor (
    /** Where it was connecting: `host:port`, or the WebSocket URL. */
    readonly target: string,
    /** The timeout that ran out, ms. */
    readonly timeout: number
  ) {
    super(`connecting to ${target} timed out after ${timeout} ms`)
  }
}

/** A connector's attempt failed without a reason from the operating system (a browser tells a page nothing about why a WebSocket failed); it is retried like any failed attempt. */
export class ConnectFailedError extends SnakeMQError {
  static override readonly name = 'ConnectFailedError'
  override name = 'ConnectFailedError'
  override readonly code = 'ERR_CONNECT_FAILED'
}

/**
 * A WebSocket connector's HTTP upgrade was answered with something other than
 * 101 Switching Protocols (a wrong path's 404, a proxy's 502, a listener at its
 * connection limit's 503); it is retried like any failed attempt.
 */
export class WebSocketUpgradeError extends SnakeMQError {
  static override readonly name = 'WebSocketUpgradeError'
  override name = 'WebSocketUpgradeError'
  override readonly code = 'ERR_WEBSOCKET_UPGRADE'
  constructor (
    readonly url: string,
    /** The HTTP status the server answered with. */
    readonly status: number,
    statusText = ''
  ) {
    super(`${url} answered the WebSocket upgrade with HTTP ${status} ${statusText}`.trimEnd())
  }
}

/** Keepalive: the remote stayed silent after a PING. */
export class KeepaliveTimeoutError extends SnakeMQError {
  static override readonly name = 'KeepaliveTimeoutError'
  override name = 'KeepaliveTimeoutError'
  override readonly code = 'ERR_KEEPALIVE_TIMEOUT'
}

/** A message was dropped before delivery (its TTL ran out, or it could not be sent now). */
export class MessageDroppedError extends SnakeMQError {
  static override readonly name = 'MessageDroppedError'
  override name = 'MessageDroppedError'
  override readonly code = 'ERR_MESSAGE_DROPPED'
  constructor (readonly to: string, readonly uuid: string, readonly reason: DropReason) {
    super(`message ${uuid} to ${JSON.stringify(to)} was dropped: ${reason}`)
  }
}

/**
 * Why a message was dropped: its TTL ran out (`expired`), it had TTL 0 and its
 * peer was not connected (`not-connected`), the Messaging closed with it queued
 * and no store keeping it (`closed`), or its peer announced a maxPacketSize it
 * does not fit in (`too-large`: sending it would only get the connection closed).
 */
export type DropReason = 'expired' | 'not-connected' | 'closed' | 'too-large'

/** The per-peer queue is full and the caller asked not to wait. */
export class QueueFullError extends SnakeMQError {
  static override readonly name = 'QueueFullError'
  override name = 'QueueFullError'
  override readonly code = 'ERR_QUEUE_FULL'
}

/** The object (Link, Messaging, store, ...) was closed. */
export class ClosedError extends SnakeMQError {
  static override readonly name = 'ClosedError'
  override name = 'ClosedError'
  override readonly code = 'ERR_CLOSED'
}

/** An operation was aborted by its AbortSignal or its timeout. */
export class AbortError extends SnakeMQError {
  static override readonly name = 'AbortError'
  override name = 'AbortError'
  override readonly code = 'ERR_ABORTED'
}

/** A caller passed a bad argument or option; the message names it. */
export class InvalidArgumentError extends SnakeMQError {
  static override readonly name = 'InvalidArgumentError'
  override name = 'InvalidArgumentError'
  override readonly code = 'ERR_INVALID_ARGUMENT'
}

/** The queue store failed (locked by another process, write failed, closed). */
export class StoreError extends SnakeMQError {
  static override readonly name: string = 'StoreError'
  override name = 'StoreError'
  override readonly code: string = 'ERR_STORE'
}

/**
 * The store directory is already opened by another process (in a browser: by
 * another tab or worker of the origin, `holder`), or by another LevelStore in
 * this one (`inThisProcess`).
 */
export class StoreLockedError extends StoreError {
  static override readonly name = 'StoreLockedError'
  override name = 'StoreLockedError'
  override readonly code = 'ERR_STORE_LOCKED'
  constructor (readonly directory: string, options?: ErrorOptions & { inThisProcess?: boolean, holder?: string }) {
    super(options?.inThisProcess === true
      ? `the queue store ${directory} is already open in this process: close that LevelStore first`
      : `the queue store ${directory} is in use by ${options?.holder ?? 'another process'}`, options)
  }
}

/**
 * The queue store in `directory` has lost records, or its files are damaged
 * (LevelDB dropped records while recovering its log, its CURRENT file is
 * missing, or the per-peer counts disagree with the messages there). Opening
 * it as it is would read as a shorter queue; `LevelStore.open(directory,
 * { salvage: true })` opens it anyway and reports what was lost.
 */
export class StoreCorruptError extends StoreError {
  static override readonly name = 'StoreCorruptError'
  override name = 'StoreCorruptError'
  override readonly code = 'ERR_STORE_CORRUPT'
  constructor (
    readonly directory: string,
    /** What was found wrong, one line each. */
    readonly problems: readonly string[],
    options?: ErrorOptions
  ) {
    super(`the queue store ${directory} is corrupt: ${problems.join('; ')}; open it with { salvage: true } to keep what is left`, options)
  }
}

/** A second owner (a second Messaging) tried to claim a queue store another one holds. */
export class StoreInUseError extends StoreError {
  static override readonly name = 'StoreInUseError'
  override name = 'StoreInUseError'
  override readonly code = 'ERR_STORE_IN_USE'
}

/** A second consumer tried to iterate a single-consumer iterable. */
export class AlreadyIteratingError extends SnakeMQError {
  static override readonly name = 'AlreadyIteratingError'
  override name = 'AlreadyIteratingError'
  override readonly code = 'ERR_ALREADY_ITERATING'
}

/** Turns an AbortSignal's reason into the AbortError this library rejects with. */
export function abortError (signal: AbortSignal): AbortError {
  const reason: unknown = signal.reason
  if (reason instanceof AbortError) return reason
  const timedOut = reason instanceof DOMException && reason.name === 'TimeoutError'
  return new AbortError(timedOut ? 'the operation timed out' : 'the operation was aborted', { cause: reason })
}

/**
 * With `bindIdentityToCertificate`: a remote claimed an identity its TLS
 * certificate does not carry (as subject CN or DNS subjectAltName), or it had no
 * verified certificate at all.
 */
export class IdentityMismatchError extends HandshakeRefusedError {
  static override readonly name = 'IdentityMismatchError'
  override name = 'IdentityMismatchError'
  override readonly code = 'ERR_IDENTITY_MISMATCH'
  constructor (
    /** The identity the remote claimed. */
    readonly identity: string,
    /** The names its certificate carries (CN, then DNS names); empty without a certificate. */
    readonly certificateNames: readonly string[],
    message?: string
  ) {
    super(message ?? `the remote identified as ${JSON.stringify(identity)} but its certificate names ${certificateNames.length === 0 ? 'nothing' : certificateNames.map((n) => JSON.stringify(n)).join(', ')}`)
  }
}

/**
 * A second connection between the same two peers (each side opened one) was
 * closed because both sides keep the other one. Expected with two-way
 * topologies; logged, not emitted as an error.
 */
export class RedundantConnectionError extends HandshakeRefusedError {
  static override readonly name = 'RedundantConnectionError'
  override name = 'RedundantConnectionError'
  override readonly code = 'ERR_REDUNDANT_CONNECTION'
}

/** A TLS listener refused a client's certificate (untrusted issuer, expired, ...); `reason` is OpenSSL's code for it. */
export class PeerCertificateError extends HandshakeRefusedError {
  static override readonly name = 'PeerCertificateError'
  override name = 'PeerCertificateError'
  override readonly code = 'ERR_PEER_CERTIFICATE'
  constructor (
    /** Why verification failed, e.g. `CERT_HAS_EXPIRED`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`. */
    readonly reason: string,
    options?: ErrorOptions
  ) {
    super(`the client's certificate was refused: ${reason}`, options)
  }
}
