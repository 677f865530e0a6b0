// The typed face of RPC: what a proxy of a remote object looks like to TypeScript
// (every method returns a Promise), per-call options, and the marker that makes a
// method a signal (called without waiting for a result).

/** Options of one call, given with `proxy.method.with(options)(...args)`. */
export interface CallOptions {
  /**
   * Milliseconds to wait for the result, counted from the call (time spent waiting
   * for the peer to connect included); then the call rejects with RpcTimeoutError.
   * `null` or `Infinity`: no timeout. Default: the client's `timeout` option, itself
   * none by default. The request's message TTL is set to the timeout, so a request
   * that waited too long for the peer is dropped rather than run late.
   */
  timeout?: number | null
  /** Aborting rejects the call with AbortError. The remote may still run it if the request already left. */
  signal?: AbortSignal
  /**
   * Keyword arguments, for a Python snakeMQ peer's method: `add(2, b=5)` is
   * `calc.add.with({ kwargs: { b: 5 } })(2)`. A Node peer's method gets them as
   * one more argument after the others, this object (as a Python caller's
   * keyword arguments reach it). Default none.
   */
  kwargs?: Record<string, unknown>
}

/** Options of one signal, given with `proxy.method.signal(options)(...args)`. */
export interface SignalOptions {
  /**
   * Seconds the signal may wait for the peer while the peer is disconnected; then it
   * is dropped without running. Default 0, as in snakeMQ: sent only if the peer is
   * connected now (otherwise the returned promise rejects with MessageDroppedError).
   * `null` or a negative number: no expiry.
   */
  ttl?: number | null
  /** Aborts waiting for room in a full queue. */
  signal?: AbortSignal
  /** Keyword arguments, as CallOptions.kwargs. */
  kwargs?: Record<string, unknown>
}

// A type-only brand: nothing of this name exists at run time.
declare const signalBrand: unique symbol

/** A function marked as an RPC signal, by `asSignal` (or a type to write in the interface given to `proxy<T>()`). */
export type Signal<F> = F & { readonly [signalBrand]: true }

/** The run-time mark `asSignal` puts on a function. */
const SIGNAL_MARK = Symbol.for('snakemq.rpc.signal')

/**
 * Marks a method as a signal on the server side, like snakeMQ's `@as_signal`: the
 * server runs it only when it is sent as a signal (no reply), and refuses a regular
 * call to it with RpcCallKindError. Use as a wrapper, `mysignal: asSignal(() => {...})`,
 * or as a (TC39) method decorator, `@asSignal mysignal () {...}`; or list the names
 * in `register(name, obj, { signals: [...] })`. The function itself is marked and
 * returned. For the client's types, its type becomes `Signal<F>`, which
 * `Remote<T>` turns into a method that only has `.signal()`.
 */
export function asSignal<F extends (...args: never) => unknown> (fn: F, _context?: ClassMethodDecoratorContext): Signal<F> {
  if (typeof fn !== 'function') throw new TypeError('asSignal takes a function')
  Object.defineProperty(fn, SIGNAL_MARK, { value: true, configurable: true })
  return fn as Signal<F>
}

/** True when `fn` was marked by asSignal. */
export function isMarkedSignal (fn: unknown): boolean {
  return typeof fn === 'function' && Object.hasOwn(fn, SIGNAL_MARK)
}

/** A remote method called for its result. */
export type RemoteCall<A extends unknown[], R> = (...args: A) => Promise<Awaited<R>>
/** A remote method sent as a signal: resolves once the signal is queued for the peer. */
export type RemoteSignalSend<A extends unknown[]> = (...args: A) => Promise<void>

/** A regular remote method: call it, call it with options, or send it as a signal. */
export type RemoteMethod<A extends unknown[], R> = RemoteCall<A, R> & {
  /** The same method with per-call options: `calc.add.with({ timeout: 1000 })(1, 2)`. */
  with (options: CallOptions): RemoteCall<A, R>
  /** The method sent as a signal, with a TTL: `obj.notify.signal({ ttl: 10 })(...)`. */
  signal (options?: SignalOptions): RemoteSignalSend<A>
}

/** A remote method marked as a signal: it can only be sent with `.signal()`. */
export interface RemoteSignal<A extends unknown[]> {
  signal (options?: SignalOptions): RemoteSignalSend<A>
}

/** Names a proxy never forwards: `then` (a proxy is never a thenable) and `toJSON` (serializing a proxy calls nothing). */
export type ReservedName = 'then' | 'toJSON'

/**
 * The proxy of a remote object of type T: each method of T (by string name, except
 * `then` and `toJSON`; optional ones too) becomes one returning a Promise of its awaited result; methods
 * typed `Signal<F>` can only be sent as signals. Other properties are left out.
 * Use `RpcClient.call` for names a proxy cannot express.
 */
export type Remote<T> = {
  readonly [K in keyof T as K extends ReservedName ? never : K extends string ? (NonNullable<T[K]> extends (...args: never) => unknown ? K : never) : never]-?:
  NonNullable<T[K]> extends { readonly [signalBrand]: true } & ((...args: infer A) => unknown)
    ? RemoteSignal<A>
    : NonNullable<T[K]> extends (...args: infer A) => infer R ? RemoteMethod<A, R> : never
}
