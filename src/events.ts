// A typed EventEmitter, and the rule for 'error' events: this library emits them
// only when someone listens, so bad input from the network never turns into an
// uncaught exception (EventEmitter throws an unheard 'error').
//
// The bare 'events' specifier is Node's own module in Node, and the `events`
// package (the same EventEmitter, for any runtime) when bundled for a browser.
import { EventEmitter } from 'events'

/** EventEmitter whose event names and arguments are checked by TypeScript. */
export class TypedEmitter<E extends { [K in keyof E]: unknown[] }> extends EventEmitter {
  override on<K extends keyof E & string> (event: K, listener: (...args: E[K]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void)
  }

  override once<K extends keyof E & string> (event: K, listener: (...args: E[K]) => void): this {
    return super.once(event, listener as (...args: unknown[]) => void)
  }

  override off<K extends keyof E & string> (event: K, listener: (...args: E[K]) => void): this {
    return super.off(event, listener as (...args: unknown[]) => void)
  }

  override emit<K extends keyof E & string> (event: K, ...args: E[K]): boolean {
    if (event === 'error' && this.listenerCount('error') === 0) return false
    return super.emit(event, ...args)
  }
}
