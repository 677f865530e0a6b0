// The public surface of snakemq in a browser, which the package's `browser`
// export condition picks: the shared part (src/surface.ts), a Link with
// WebSocket connectors (the browser's own WebSocket), and LevelStore on
// IndexedDB; no Node built-in is reachable from here.
export * from './surface.ts'
export { Link } from './link/browser-link.ts'
export { browserWebSocketTransport, BrowserWebSocketChannel, RECEIVE_HOLD_LIMIT } from './link/browser-websocket.ts'
export { LevelStore, LEVEL_STORE_FORMAT } from './store/level-browser.ts'
export type { BrowserLevelStoreOptions as LevelStoreOptions, SalvageReport, SalvagedQueue } from './store/level-browser.ts'
