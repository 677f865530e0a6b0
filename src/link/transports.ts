// The transports a Link on Node picks from, first match first: WebSocket when
// asked for (`websocket`, `server` or `url`), TLS when given TLS options, else
// plain TCP.
import type { Transport } from './transport.ts'
import { tcpTransport, tlsTransport } from './tcp.ts'
import { wssTransport, wsTransport } from './ws.ts'

export const nodeTransports: readonly Transport[] = [wssTransport, wsTransport, tlsTransport, tcpTransport]
