// The transports a Link on Node picks from, first match first: WebSocket when
// asked for, TLS when given TLS options, else plain TCP.
import type { Transport } from './transport.ts'
import { tcpTransport, tlsTransport } from './tcp.ts'

export const nodeTransports: readonly Transport[] = [tlsTransport, tcpTransport]
