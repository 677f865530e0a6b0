// The Link of a browser: WebSocket connectors through the browser's own
// WebSocket. Listening, TLS options and the incoming throttle (which works by
// pausing the socket, which a browser's WebSocket cannot do) are refused with
// InvalidArgumentError.
import { InvalidArgumentError } from '../errors.ts'
import type { ThrottleSetting } from '../transforms/throttle.ts'
import { browserWebSocketTransport } from './browser-websocket.ts'
import { LinkBase, type ConnectOptions, type Connector, type LinkOptions } from './link.ts'
import type { Transport } from './transport.ts'

function checkThrottle (throttle: ThrottleSetting | undefined, what: string): void {
  if (typeof throttle === 'object' && throttle !== null && throttle.incoming !== undefined) {
    throw new InvalidArgumentError(`${what}: an incoming throttle cannot work in a browser (its WebSocket cannot stop reading); an outgoing one can`)
  }
}

/**
 * Listeners and connectors, and the connections they make, in a browser:
 * `connect({ url: 'ws://host:port/path' })` (or `wss://`) to a peer that listens
 * with `websocket: true`. A connector reconnects with backoff, as on Node.
 */
export class Link extends LinkBase {
  protected static override readonly defaultTransports: readonly Transport[] = [browserWebSocketTransport]

  constructor (options: LinkOptions = {}) {
    checkThrottle(options.throttle, 'Link')
    super(options)
  }

  override connect (options: ConnectOptions): Connector {
    checkThrottle(options.throttle, 'connect')
    return super.connect(options)
  }
}
