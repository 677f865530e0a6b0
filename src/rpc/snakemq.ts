// snakeMQ 1.6's own RPC messages, which Python snakeMQ peers send and expect:
// a MESSAGE whose data is `rpcreq` or `rpcrep` and a pickle of a dict
// (docs/RPC.md, section 5; ../shared/PROTOCOL.md, "RPC"). This module makes and
// reads them through the data-only pickle codec; RpcClient and RpcServer decide
// when. Request ids: a Python client's are 16 random bytes; RpcClient's are its
// own request ids (client id and call counter), so a reply finds its call the
// same way in both formats.
import { encodePickleAfter } from './pickle-encode.ts'
import { PickleTuple, type PickleCodecOptions } from './pickle.ts'
import { PythonException } from './python-types.ts'

/** What a snakeMQ RPC request's data starts with: ASCII `rpcreq`. */
export const SNAKEMQ_REQUEST_PREFIX = 'rpcreq'
/** What a snakeMQ RPC reply's data starts with: ASCII `rpcrep`. */
export const SNAKEMQ_REPLY_PREFIX = 'rpcrep'
/** Bytes of either prefix. */
export const SNAKEMQ_PREFIX_BYTES = 6

const REQUEST_PREFIX = new TextEncoder().encode(SNAKEMQ_REQUEST_PREFIX)
const REPLY_PREFIX = new TextEncoder().encode(SNAKEMQ_REPLY_PREFIX)
/** The longest req_id taken from a Python peer (snakeMQ's are 16 bytes: a uuid4). */
const MAX_REQ_ID_BYTES = 64

/** A snakeMQ RPC request, read from its pickle. */
export interface SnakeRequest {
  readonly command: 'call' | 'signal'
  readonly object: string
  readonly method: string
  readonly args: unknown[]
  readonly kwargs: Record<string, unknown>
  /** The caller's request id (calls only). */
  readonly reqId: Uint8Array | null
}

/** A snakeMQ RPC reply, read from its pickle. */
export type SnakeReply =
  | { readonly reqId: Uint8Array, readonly ok: true, readonly value: unknown }
  | { readonly reqId: Uint8Array, readonly ok: false, readonly exception: unknown, readonly format: string }

/**
 * A request as snakeMQ 1.6's RpcClient pickles one: the keys in its order
 * (`command`, `object`, `method`, `args` as a tuple, `kwargs`, then `req_id`
 * for a call), so the bytes are those snakeMQ would send for the same values.
 */
export function snakeRequestMessage (
  request: { command: 'call' | 'signal', object: string, method: string, args: readonly unknown[], kwargs?: Record<string, unknown> | undefined, reqId?: Uint8Array },
  limits?: PickleCodecOptions
): Uint8Array {
  const dict: Record<string, unknown> = {
    command: request.command,
    object: request.object,
    method: request.method,
    args: new PickleTuple(request.args),
    kwargs: request.kwargs ?? {}
  }
  if (request.reqId !== undefined) dict.req_id = request.reqId
  return encodePickleAfter(REQUEST_PREFIX, dict, limits)
}

/** A reply to a call that returned `value`, keys in snakeMQ's order. */
export function snakeReturnMessage (reqId: Uint8Array, value: unknown, limits?: PickleCodecOptions): Uint8Array {
  return encodePickleAfter(REPLY_PREFIX, { ok: true, return: value, req_id: reqId }, limits)
}

/** A reply to a call that raised `exception`, with `format` as its traceback text, keys in snakeMQ's order. */
export function snakeExceptionMessage (reqId: Uint8Array, exception: Error, format: string, limits?: PickleCodecOptions): Uint8Array {
  return encodePickleAfter(REPLY_PREFIX, { req_id: reqId, ok: false, exception, exception_format: format }, limits)
}

/** The exception snakeMQ's RpcServer raises for an object not registered, `snakemq.rpc.NoInstanceError(name)`. */
export function noInstanceError (object: string): PythonException {
  return new PythonException('NoInstanceError', [object], { module: 'snakemq.rpc' })
}

/** The exception snakeMQ's RpcServer raises for a method the object does not have, `snakemq.rpc.NoMethodError(name)`. */
export function noMethodError (method: string): PythonException {
  return new PythonException('NoMethodError', [method], { module: 'snakemq.rpc' })
}

/** The last line of a Python traceback for `e`, as `traceback.format_exception_only` writes it (no module for builtins and __main__). */
export function formatExceptionOnly (e: PythonException): string {
  return `${e.module === 'builtins' || e.module === '__main__' ? '' : `${e.module}.`}${e.name}: ${e.message}\n`
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false
  const proto: unknown = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

function reqIdOf (v: unknown): Uint8Array | string {
  if (!(v instanceof Uint8Array) || v.length === 0 || v.length > MAX_REQ_ID_BYTES) return `a req_id that is not bytes of 1 to ${MAX_REQ_ID_BYTES}`
  return v
}

/** The request in a decoded `rpcreq` pickle, or why it is not one. */
export function readSnakeRequest (decoded: unknown): SnakeRequest | string {
  if (!isPlainObject(decoded)) return 'the pickle is not a dict with str keys'
  const { command, object, method, args, kwargs } = decoded
  if (command !== 'call' && command !== 'signal') return `an unknown command ${JSON.stringify(String(command)).slice(0, 40)}`
  if (typeof object !== 'string' || object.length === 0) return 'no object name'
  if (typeof method !== 'string' || method.length === 0) return 'no method name'
  if (!Array.isArray(args)) return 'args that are not a tuple'
  if (kwargs !== undefined && !isPlainObject(kwargs)) return 'kwargs that are not a dict with str keys'
  let reqId: Uint8Array | null = null
  if (command === 'call') {
    const id = reqIdOf(decoded.req_id)
    if (typeof id === 'string') return id
    reqId = id
  }
  return { command, object, method, args, kwargs: kwargs ?? {}, reqId }
}

/** The reply in a decoded `rpcrep` pickle, or why it is not one. */
export function readSnakeReply (decoded: unknown): SnakeReply | string {
  if (!isPlainObject(decoded)) return 'the pickle is not a dict with str keys'
  const reqId = reqIdOf(decoded.req_id)
  if (typeof reqId === 'string') return reqId
  if (decoded.ok === true) return { reqId, ok: true, value: decoded.return }
  if (decoded.ok !== false) return 'no ok flag'
  // snakeMQ 1.6 sends the traceback as one str; later versions as format_exception's list of lines.
  const raw = decoded.exception_format
  const format = typeof raw === 'string' ? raw : Array.isArray(raw) && raw.every((l) => typeof l === 'string') ? raw.join('') : ''
  return { reqId, ok: false, exception: decoded.exception, format }
}

const REQ_ID_KEY = new TextEncoder().encode('req_id')

/**
 * The 16-byte req_ids a pickle that could not be decoded seems to carry, last
 * first: the bytes after the str `req_id`, its memo opcode, and `C\x10`
 * (SHORT_BINBYTES of 16), as protocols 3 to 5 write them. Only ever used to say
 * "that call failed" to the request's own sender, or to settle one of this
 * client's own calls: a wrong guess answers nobody else.
 */
export function findReqIds (pickle: Uint8Array): Uint8Array[] {
  const found: Uint8Array[] = []
  outer: for (let i = pickle.length - REQ_ID_KEY.length; i >= 0; i--) {
    for (let k = 0; k < REQ_ID_KEY.length; k++) if (pickle[i + k] !== REQ_ID_KEY[k]) continue outer
    let at = i + REQ_ID_KEY.length
    const memo = pickle[at]
    // MEMOIZE, BINPUT n, LONG_BINPUT n, or none.
    at += memo === 0x94 ? 1 : memo === 0x71 ? 2 : memo === 0x72 ? 5 : 0
    if (pickle[at] === 0x43 && pickle[at + 1] === 16 && at + 18 <= pickle.length) found.push(pickle.slice(at + 2, at + 18))
  }
  return found
}
