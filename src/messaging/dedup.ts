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
import { randomBytes } from 'node:crypto'
import { sameUuid } from './uuid.ts'

const seed = randomBytes(4).readUInt32LE(0)

/** Ring slots allocated at first; doubled as needed up to the window's size. */
const INITIAL_SLOTS = 256

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
  /** Per ring slot: its UUID's hash. */
  private hashes: Uint32Array
  /** Per ring slot: 1 once the application is done with the message. */
  private done: Uint8Array
  /** Hash table: ring slot + 1, or 0 for an empty bucket. Linear probing, at most half full. */
  private table: Int32Array
  private mask: number
  /** UUIDs added so far; the next one goes to slot `added % slots`. */
  private added = 0

  constructor (window: number) {
    this.window = window
    const slots = Math.min(window, INITIAL_SLOTS)
    this.ring = new Uint8Array(slots * 16)
    this.hashes = new Uint32Array(slots)
    this.done = new Uint8Array(slots)
    this.table = new Int32Array(tableSize(slots))
    this.mask = this.table.length - 1
  }

  private get slots (): number { return this.hashes.length }

  /**
   * Looks up the UUID at `at` of `bytes`: undefined if it is new, false if the
   * application still has it, true if it was received.
   */
  get (bytes: Uint8Array, at: number): boolean | undefined {
    const h = hash(bytes, at)
    const table = this.table
    for (let b = h & this.mask; ; b = (b + 1) & this.mask) {
      const s = table[b]!
      if (s === 0) return undefined
      if (this.hashes[s - 1] === h && sameUuid(this.ring, (s - 1) * 16, bytes, at)) return this.done[s - 1] === 1
    }
  }

  /**
   * Remembers a new UUID (one `get` said is new) as pending, forgetting the
   * oldest if the window is full; returns a ticket for `markDone`.
   */
  add (bytes: Uint8Array, at: number): number {
    if (this.added === this.slots && this.slots < this.window) this.grow()
    const slot = this.added % this.slots
    if (this.added >= this.slots) this.unlink(slot)
    const ring = this.ring
    const o = slot * 16
    for (let i = 0; i < 16; i++) ring[o + i] = bytes[at + i]!
    const h = hash(bytes, at)
    this.hashes[slot] = h
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
    let b = h & this.mask
    while (table[b] !== 0) b = (b + 1) & this.mask
    table[b] = slot + 1
  }

  /** Removes a ring slot from the table, shifting later members of its probe chain back (no tombstones). */
  private unlink (slot: number): void {
    const table = this.table
    const mask = this.mask
    let b = this.hashes[slot]! & mask
    while (table[b] !== slot + 1) b = (b + 1) & mask
    let hole = b
    for (let j = (hole + 1) & mask; table[j] !== 0; j = (j + 1) & mask) {
      const home = this.hashes[table[j]! - 1]! & mask
      // Entry j may move into the hole if its home bucket is not within (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        table[hole] = table[j]!
        hole = j
      }
    }
    table[hole] = 0
  }

  /** Doubles the ring (it is full and has never wrapped, so its slots are in order) and rebuilds the table. */
  private grow (): void {
    const slots = Math.min(this.window, this.slots * 2)
    const ring = new Uint8Array(slots * 16)
    ring.set(this.ring)
    const hashes = new Uint32Array(slots)
    hashes.set(this.hashes)
    const done = new Uint8Array(slots)
    done.set(this.done)
    this.ring = ring
    this.hashes = hashes
    this.done = done
    this.table = new Int32Array(tableSize(slots))
    this.mask = this.table.length - 1
    for (let s = 0; s < this.added; s++) this.link(s, hashes[s]!)
  }
}

/** A power of two at least twice `slots`. */
function tableSize (slots: number): number {
  let n = 16
  while (n < slots * 2) n *= 2
  return n
}
