// The Link of Node: listeners and connectors over TCP, TLS and WebSocket.
import { LinkBase } from './link.ts'
import type { Transport } from './transport.ts'
import { nodeTransports } from './transports.ts'

/**
 * Listeners and connectors, and the connections they make: TCP, TLS (`tls`),
 * WebSocket (`websocket: true` to listen, `url: 'ws://...'` or `'wss://...'` to
 * connect). Connections are handed out through the `connection` event and
 * `connections()`.
 */
export class Link extends LinkBase {
  protected static override readonly defaultTransports: readonly Transport[] = nodeTransports
}
