// The public surface of snakemq (Node): the shared part, and Node's Link,
// transports and LevelStore.
export * from './surface.ts'
export { Link } from './link/node-link.ts'
export { tcpTransport, tlsTransport, DEFAULT_TLS_MIN_VERSION, DEFAULT_TLS_HANDSHAKE_TIMEOUT } from './link/tcp.ts'
export { wsTransport, wssTransport } from './link/ws.ts'
export { LevelStore, LEVEL_STORE_FORMAT } from './store/level-node.ts'
export type { LevelStoreOptions, SalvageReport, SalvagedQueue } from './store/level-node.ts'
