// Bandwidth throttle: a transform that passes byte chunks on no faster than a
// given rate, measured with a token bucket. Large chunks are cut into pieces so
// the bytes flow evenly instead of in bursts a second long; while the bucket is
// empty the transform sleeps on a timer (it never spins). It goes on either side
// of a connection: in front of its sink for outgoing bytes, after its source for
// incoming ones (the socket is then read only as fast as the throttle lets bytes
// through, so the remote is slowed down by TCP's own flow control).
import { pipe } from 'it-pipe'
import { InvalidArgumentError, abortError } from '../errors.ts'
import type { Duplex, TransformContext } from '../link/duplex.ts'

export interface ThrottleOptions {
  /**
   * Most bytes that may pass at once after an idle spell (the bucket's size).
   * Default: 50 ms worth of bytes at the rate, at least 1 byte. Larger values
   * tolerate late timers better; smaller ones keep the flow smoother.
   */
  burst?: number
  /**
   * Largest piece a chunk is cut into, in bytes. Default: 20 ms worth of bytes
   * at the rate, from 64 bytes to 64 KiB. The bytes and their order are never changed.
   */
  maxChunk?: number
  /** Ends the waiting (and the iteration) with an AbortError when aborted. */
  signal?: AbortSignal
}

/** Outgoing and incoming limits of a connection, in bytes per second; an absent side is not limited. */
export interface ThrottleRates {
  /** Bytes per second written to the remote. */
  outgoing?: number
  /** Bytes per second read from the remote. */
  incoming?: number
}

/**
 * How a link's throttle options may be written: a number limits outgoing bytes
 * only (bytes per second, as the CLI's `--throttle` takes it); an object sets
 * either side; `false` turns a link-wide throttle off for one listener or connector.
 */
export type ThrottleSetting = number | ThrottleRates | false

/** What a throttle passes through: single chunks, or batches of chunks written back to back. */
export type ThrottleChunk = Uint8Array | readonly Uint8Array[]

/** A single chunk in gives single chunks out; a batch in gives batches out. */
export type Throttled<T extends ThrottleChunk> = T extends Uint8Array ? Uint8Array : Uint8Array[]

/**
 * What `throttle()` returns: a connection transform (for `transforms` on a Link,
 * listener or connector: it limits the bytes going out, and coming in when an
 * incoming rate was given), and a transform of a stream of chunks (for `it-pipe`
 * or direct use: it limits them at the outgoing rate).
 */
export interface ThrottleTransform {
  (duplex: Duplex<Uint8Array>, context?: TransformContext): Duplex<Uint8Array>
  <T extends ThrottleChunk> (source: AsyncIterable<T> | Iterable<T>): AsyncGenerator<Throttled<T>>
}

/** Waits `ms`, or rejects with AbortError once `signal` aborts. */
async function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted === true) throw abortError(signal)
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(timer); reject(abortError(signal!)) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Shortest sleep worth arming a timer for: Node's timers do not fire sooner than about 1 ms anyway. */
const MIN_SLEEP_MS = 1

/** Checks a rate; throws InvalidArgumentError naming the option. */
export function checkRate (rate: unknown, name: string): number {
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0) {
    throw new InvalidArgumentError(`${name} must be a positive number of bytes per second, got ${String(rate)}`)
  }
  return rate
}

/**
 * Reads a link's throttle setting into rates (each checked), or null when
 * nothing is limited. `name` is the option's name for error messages.
 */
export function throttleRates (setting: ThrottleSetting | undefined, name = 'throttle'): ThrottleRates | null {
  if (setting === undefined || setting === false) return null
  if (typeof setting === 'number') return { outgoing: checkRate(setting, name) }
  if (typeof setting !== 'object' || setting === null) {
    throw new InvalidArgumentError(`${name} must be a number of bytes per second, { outgoing?, incoming? } or false`)
  }
  const rates: ThrottleRates = {}
  if (setting.outgoing !== undefined) rates.outgoing = checkRate(setting.outgoing, `${name}.outgoing`)
  if (setting.incoming !== undefined) rates.incoming = checkRate(setting.incoming, `${name}.incoming`)
  return rates.outgoing === undefined && rates.incoming === undefined ? null : rates
}

/**
 * A token bucket. Tokens are bytes; they accrue at `rate` per second up to
 * `burst`. A take may overdraw the bucket (a piece is never held back for lack
 * of a few bytes): the debt is slept off before the next take. Over any span the
 * bytes passed are rate × time + burst at most, so the long-run rate is exact
 * whatever the timers' lateness, as long as a late timer is not later than
 * `burst / rate` seconds.
 */
export class TokenBucket {
  private tokens = 0
  private last = performance.now()

  constructor (readonly rate: number, readonly burst: number) {}

  /** Waits until the bucket is not in debt, then takes `bytes` from it. */
  async take (bytes: number, signal?: AbortSignal): Promise<void> {
    this.refill()
    while (this.tokens < 0) {
      const ms = Math.max(MIN_SLEEP_MS, Math.ceil(-this.tokens / this.rate * 1000))
      await sleep(ms, signal)
      this.refill()
    }
    this.tokens -= bytes
  }

  private refill (): void {
    const now = performance.now()
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.rate / 1000)
    this.last = now
  }
}

/**
 * A transform that limits throughput. `rate` is bytes per second: a number
 * limits the bytes going out, `{ outgoing, incoming }` either side. The same
 * bytes come out in the same order, cut into pieces of at most `maxChunk` bytes
 * (a batch comes out as smaller batches).
 *
 * ```ts
 * new Link({ transforms: [throttle(100_000)] })                     // 100 kB/s out, per connection
 * link.connect({ port, transforms: [throttle({ incoming: 1e6 })] }) // 1 MB/s in
 * await pipe(source, throttle(100_000), connection.sink)            // a stream of chunks
 * ```
 */
export function throttle (rate: number | ThrottleRates, options: ThrottleOptions = {}): ThrottleTransform {
  const rates = typeof rate === 'number' ? { outgoing: checkRate(rate, 'throttle: bytesPerSecond') } : throttleRates(rate, 'throttle')
  if (options.burst !== undefined) checkRate(options.burst, 'throttle: burst')
  if (options.maxChunk !== undefined && Math.floor(checkRate(options.maxChunk, 'throttle: maxChunk')) < 1) {
    throw new InvalidArgumentError('throttle: maxChunk must be at least 1 byte')
  }
  const transform = (input: Duplex<Uint8Array> | AsyncIterable<ThrottleChunk> | Iterable<ThrottleChunk>, context?: TransformContext): unknown => {
    if (isDuplex(input)) {
      const signal = context === undefined ? options.signal : options.signal === undefined ? context.signal : AbortSignal.any([options.signal, context.signal])
      const limit = (r: number | undefined) => r === undefined ? null : limiter(r, { ...options, ...(signal !== undefined ? { signal } : {}) })
      const out = limit(rates?.outgoing)
      const inn = limit(rates?.incoming)
      return {
        source: inn === null ? input.source : pipe(input.source, inn) as AsyncIterable<Uint8Array>,
        sink: out === null ? input.sink : async (source: AsyncIterable<Uint8Array>) => { await pipe(source, out as (s: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>, input.sink) }
      } satisfies Duplex<Uint8Array>
    }
    if (rates?.outgoing === undefined) throw new InvalidArgumentError('throttle: a stream is limited at the outgoing rate, and none was given')
    return limiter(rates.outgoing, options)(input)
  }
  return transform as ThrottleTransform
}

function isDuplex (x: unknown): x is Duplex<Uint8Array> {
  return typeof x === 'object' && x !== null && typeof (x as { sink?: unknown }).sink === 'function' && 'source' in x
}

/** The stream transform that passes chunks on at `bytesPerSecond`. */
function limiter (bytesPerSecond: number, options: ThrottleOptions) {
  const rate = bytesPerSecond
  const burst = options.burst === undefined ? Math.max(1, rate / 20) : options.burst
  const maxChunk = options.maxChunk === undefined ? Math.min(65_536, Math.max(64, Math.floor(rate / 50))) : Math.floor(options.maxChunk)
  const { signal } = options

  return async function * throttled<T extends ThrottleChunk> (source: AsyncIterable<T> | Iterable<T>): AsyncGenerator<Throttled<T>> {
    const bucket = new TokenBucket(rate, burst)
    for await (const item of source as AsyncIterable<ThrottleChunk>) {
      if (item instanceof Uint8Array) {
        if (item.length === 0) { yield item as Throttled<T>; continue }
        for (let off = 0; off < item.length; off += maxChunk) {
          const piece = item.subarray(off, off + maxChunk)
          await bucket.take(piece.length, signal)
          yield piece as Throttled<T>
        }
        continue
      }
      // A batch: consecutive small chunks travel together (the sink writes a
      // batch corked); a chunk larger than a piece is cut across batches.
      let out: Uint8Array[] = []
      let outBytes = 0
      for (const chunk of item) {
        let off = 0
        while (off < chunk.length) {
          const n = Math.min(chunk.length - off, maxChunk - outBytes)
          out.push(off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n))
          outBytes += n
          off += n
          if (outBytes === maxChunk) {
            await bucket.take(outBytes, signal)
            yield out as Throttled<T>
            out = []
            outBytes = 0
          }
        }
      }
      if (outBytes > 0) {
        await bucket.take(outBytes, signal)
        yield out as Throttled<T>
      }
    }
  }
}
