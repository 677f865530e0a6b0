// Errors raised by the RPC layer, each a SnakeMQError with its own stable code.
import { SnakeMQError } from '../errors.ts'

/**
 * An RPC value could not be encoded or decoded: a value the codec does not carry
 * (function, symbol, class instance, cycle), bytes that are not a valid encoding
 * (truncated, corrupted, hostile), or a limit (depth, size, value count) exceeded.
 */
export class RpcCodecError extends SnakeMQError {
  static override readonly name = 'RpcCodecError'
  override name = 'RpcCodecError'
  override readonly code = 'ERR_RPC_CODEC'
}

/** The remote peer has no object registered under the name called. */
export class RpcUnknownObjectError extends SnakeMQError {
  static override readonly name = 'RpcUnknownObjectError'
  override name = 'RpcUnknownObjectError'
  override readonly code = 'ERR_RPC_UNKNOWN_OBJECT'
  constructor (
    /** The peer that was called. */
    readonly peer: string,
    /** The object name it does not know. */
    readonly objectName: string
  ) {
    super(`${JSON.stringify(peer)} has no RPC object named ${JSON.stringify(objectName)}`)
  }
}

/**
 * The remote object has no callable method of that name. Only functions that are
 * own properties of the object or of its prototypes (up to, not including,
 * Object.prototype and Function.prototype) count; `constructor` and `__proto__` never do.
 */
export class RpcUnknownMethodError extends SnakeMQError {
  static override readonly name = 'RpcUnknownMethodError'
  override name = 'RpcUnknownMethodError'
  override readonly code = 'ERR_RPC_UNKNOWN_METHOD'
  constructor (readonly peer: string, readonly objectName: string, readonly methodName: string) {
    super(`the RPC object ${JSON.stringify(objectName)} of ${JSON.stringify(peer)} has no method ${JSON.stringify(methodName)}`)
  }
}

/**
 * A method marked as a signal on the server was called as a regular method (it
 * must be sent with `.signal()`). The reverse, a regular method sent as a signal,
 * cannot be answered: the server logs a warning and does not run it.
 */
export class RpcCallKindError extends SnakeMQError {
  static override readonly name = 'RpcCallKindError'
  override name = 'RpcCallKindError'
  override readonly code = 'ERR_RPC_CALL_KIND'
  constructor (readonly peer: string, readonly objectName: string, readonly methodName: string) {
    super(`${objectName}.${methodName} of ${JSON.stringify(peer)} is a signal: send it with .signal(), it has no result to wait for`)
  }
}

/** A call got no result within its timeout. It may still run (or have run) on the remote. */
export class RpcTimeoutError extends SnakeMQError {
  static override readonly name = 'RpcTimeoutError'
  override name = 'RpcTimeoutError'
  override readonly code = 'ERR_RPC_TIMEOUT'
  constructor (readonly peer: string, readonly objectName: string, readonly methodName: string, readonly timeout: number, message?: string) {
    super(message ?? `no result for ${objectName}.${methodName} from ${JSON.stringify(peer)} within ${timeout} ms`)
  }
}

/** An RPC message that does not follow the RPC wire format (docs/RPC.md), or a version this side does not speak. */
export class RpcProtocolError extends SnakeMQError {
  static override readonly name = 'RpcProtocolError'
  override name = 'RpcProtocolError'
  override readonly code = 'ERR_RPC_PROTOCOL'
}

/**
 * The call ran on the server, but the server no longer holds its result: the reply
 * was lost (its TTL ran out while this peer was away) and the result had been
 * dropped from the server's bounded result cache. The call is not run twice.
 */
export class RpcResultLostError extends SnakeMQError {
  static override readonly name = 'RpcResultLostError'
  override name = 'RpcResultLostError'
  override readonly code = 'ERR_RPC_RESULT_LOST'
}

/**
 * The remote method threw (or its promise rejected). `message` is the remote
 * message; `remoteName`, `remoteStack` and `remoteCode` are the remote error's
 * name, stack and `code`; `code` is the remote `code` when it is a string, else
 * `ERR_RPC_REMOTE`; `cause` is the remote error rebuilt as data (its own
 * properties included). `stack` is the local one, where the call was awaited.
 * When the server does not transfer exceptions, only the fact that the method
 * failed crosses the wire: `remoteName` is `Error` and there is no remote stack.
 */
export class RpcRemoteError extends SnakeMQError {
  static override readonly name = 'RpcRemoteError'
  override name = 'RpcRemoteError'
  override readonly code: string
  /** The remote error's `code`, whatever its type; undefined if it had none. */
  readonly remoteCode: unknown
  /** The remote error's name, e.g. `TypeError`. */
  readonly remoteName: string
  /** The remote error's stack, as the remote printed it; undefined when not transferred. */
  readonly remoteStack: string | undefined
  constructor (
    readonly peer: string,
    readonly objectName: string,
    readonly methodName: string,
    remote: { name: string, message: string, stack?: string | undefined, code?: unknown },
    options?: ErrorOptions
  ) {
    super(remote.message, options)
    this.remoteName = remote.name
    this.remoteStack = remote.stack
    this.remoteCode = remote.code
    this.code = typeof remote.code === 'string' ? remote.code : 'ERR_RPC_REMOTE'
  }
}

/**
 * True for an error made by the engine, in this realm or another (a vm context,
 * an iframe), which `instanceof Error` misses: it has the internal slot that
 * makes Object.prototype.toString say `[object Error]`, and no made-up
 * Symbol.toStringTag. What node:util's types.isNativeError tells, in any runtime.
 */
export function isNativeError (v: unknown): boolean {
  return typeof v === 'object' && v !== null && !(Symbol.toStringTag in v) && Object.prototype.toString.call(v) === '[object Error]'
}
