// Remembers the UUIDs of the last N messages received from one peer, so a message
// redelivered after a reconnect is recognised and dropped. Each UUID is either
// still with the application ('pending') or received ('done'); a duplicate of a
// done one is acknowledged again.
//
// Every received message passes through here, so it works on the UUID's bytes
// where they lie in the packet: no string, no Map entry, no allocation per
// message. UUIDs are kept in a ring (the oldest is forgotten first) and found
// through an open-addressing hash table over the ring's slots. The hash mixes all
// 16 bytes with a random per-process seed, so UUIDs that are not random (a plain
// snakeMQ peer, or a hostile one) cannot pile up in one probe chain on purpose.
//
// A window holds nothing until its first UUID, then starts small and doubles:
// most peers send few messages, and a listener can have thousands of them.
import { sameUuid } from './uuid.ts'

const seed = globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!

/** What DedupWindow.admit() returns for a UUID the application still has. */
export const SEEN_PENDING = -1
/** What DedupWindow.admit() returns for a UUID the application was done with. */
export const SEEN_DONE = -2

/** Ring slots allocated with the first UUID; doubled as needed up to the window's size. */
const INITIAL_SLOTS = 16
/** What an empty window holds: no ring, and one empty bucket, so every lookup ends at once. Never written to. */
const NO_RING = new Uint8Array(0)
const NO_TABLE = new Int32Array(2)

function word (b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24))
}

function hash (b: Uint8Array, at: number): number {
  let h = seed
  h = Math.imul(h ^ word(b, at), 0x9e3779b1)
  h = Math.imul((h ^ (h >>> 15)) ^ word(b, at + 4), 0x85ebca77)
  h = Math.imul((h ^ (h >>> 13)) ^ word(b, at + 8), 0xc2b2ae3d)
  h = Math.imul((h ^ (h >>> 16)) ^ word(b, at + 12), 0x27d4eb2f)
  return (h ^ (h >>> 15)) >>> 0
}

export class DedupWindow {
  /** Most UUIDs remembered. */
  private readonly window: number
  /** Ring of UUIDs: 16 bytes per slot. */
  private ring: Uint8Array
  /** Per ring slot: 1 once the application is done with the message. */
  private done: Uint8Array
  /**
   * Hash table, linear probing, at most half full. Each bucket is two int32s side
   * by side: ring slot + 1 (0 for an empty bucket) and the UUID's hash, so a probe
   * reads one cache line and the ring is touched only when the hashes match.
   */
  private table: Int32Array
  /** Buckets - 1 (a power of two, minus one). */
  private mask: number
  /** UUIDs added so far; the next one goes to slot `added % slots`. */
  private added = 0
  private slots: number

  constructor (window: number) {
    this.window = window
    // Allocated by the first insert() (see grow()).
    this.slots = 0
    this.ring = NO_RING
    this.done = NO_RING
    this.table = NO_TABLE
    this.mask = 0
  }

  /** Bytes of buffers this window holds: 0 until its first UUID. */
  get bytes (): number {
    return this.slots === 0 ? 0 : this.ring.byteLength + this.done.byteLength + this.table.byteLength
  }

  /**
   * Looks up the UUID at `at` of `bytes`: undefined if it is new, false if the
   * application still has it, true if it was received.
   */
  get (bytes: Uint8Array, at: number): boolean | undefined {
    const h = hash(bytes, at) | 0
    const table = this.table
    const mask = this.mask
    for (let b = h & mask; ; b = (b + 1) & mask) {
      const s = table[2 * b]!
      if (s === 0) return undefined
      if (table[2 * b + 1] === h && sameUuid(this.ring, (s - 1) * 16, bytes, at)) return this.done[s - 1] === 1
    }
  }

  /**
   * Remembers a new UUID (one `get` said is new) as pending, forgetting the
   * oldest if the window is full; returns a ticket for `markDone`.
   */
  add (bytes: Uint8Array, at: number): number {
    return this.insert(bytes, at, hash(bytes, at) | 0)
  }

  /**
   * get() and, for a new UUID, add() with one hash of it (every received message
   * comes through here): the ticket of a new UUID (0 or more), else SEEN_PENDING
   * or SEEN_DONE.
   */
  admit (bytes: Uint8Array, at: number): number {
    const h = hash(bytes, at) | 0
    const table = this.table
    const mask = this.mask
    for (let b = h & mask; ; b = (b + 1) & mask) {
      const s = table[2 * b]!
      if (s === 0) break
      if (table[2 * b + 1] === h && sameUuid(this.ring, (s - 1) * 16, bytes, at)) return this.done[s - 1] === 1 ? SEEN_DONE : SEEN_PENDING
    }
    return this.insert(bytes, at, h)
  }

  private insert (bytes: Uint8Array, at: number, h: number): number {
    if (this.added === this.slots && this.slots < this.window) this.grow()
    const slot = this.added % this.slots
    if (this.added >= this.slots) this.unlink(slot)
    const ring = this.ring
    const o = slot * 16
    for (let i = 0; i < 16; i++) ring[o + i] = bytes[at + i]!
    this.done[slot] = 0
    this.link(slot, h)
    return this.added++
  }

  /** The application is done with the message `add` gave `ticket` for (if it is still remembered). */
  markDone (ticket: number): void {
    if (ticket < this.added && this.added - ticket <= this.slots) this.done[ticket % this.slots] = 1
  }

  private link (slot: number, h: number): void {
    const table = this.table
    const mask = this.mask
    let b = h & mask
    while (table[2 * b] !== 0) b = (b + 1) & mask
    table[2 * b] = slot + 1
    table[2 * b + 1] = h
  }

  /** Removes a ring slot from the table, shifting later members of its probe chain back (no tombstones). */
  private unlink (slot: number): void {
    const table = this.table
    const mask = this.mask
    // The slot's hash is not kept apart: recompute it from the ring.
    let b = hash(this.ring, slot * 16) & mask
    while (table[2 * b] !== slot + 1) b = (b + 1) & mask
    let hole = b
    for (let j = (hole + 1) & mask; table[2 * j] !== 0; j = (j + 1) & mask) {
      const home = table[2 * j + 1]! & mask
      // Bucket j may move into the hole if its home bucket is not within (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        table[2 * hole] = table[2 * j]!
        table[2 * hole + 1] = table[2 * j + 1]!
        hole = j
      }
    }
    table[2 * hole] = 0
  }

  /**
   * Allocates the ring, or doubles it (it is full and has never wrapped, so its
   * slots are in order), and rebuilds the table.
   */
  private grow (): void {
    const slots = Math.min(this.window, Math.max(INITIAL_SLOTS, this.slots * 2))
    const ring = new Uint8Array(slots * 16)
    ring.set(this.ring)
    const done = new Uint8Array(slots)
    done.set(this.done)
    this.ring = ring
    this.done = done
    this.slots = slots
    const buckets = bucketsFor(slots)
    this.table = new Int32Array(buckets * 2)
    this.mask = buckets - 1
    for (let s = 0; s < this.added; s++) this.link(s, hash(ring, s * 16) | 0)
  }
}

/** Buckets for `slots` UUIDs: a power of two, at least twice as many. */
function bucketsFor (slots: number): number {
  let n = 16
  while (n < slots * 2) n *= 2
  return n
}
