// The queue stores: one interface, an in-memory and a LevelDB implementation.
export type { PeerClock, QueueStore, QueueSummary, StoreBatch, StoreContents, StoredMessage, StoredRef, StoreSummary } from './types.ts'
export { MemoryStore } from './memory.ts'
export { LevelStore, LEVEL_STORE_FORMAT } from './level-node.ts'
export type { LevelStoreOptions, SalvageReport, SalvagedQueue } from './level-node.ts'
