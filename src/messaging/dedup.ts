// Remembers the UUIDs of the last N messages received from one peer, so a message
// redelivered after a reconnect is recognised and dropped. Each UUID is either
// still with the application ('pending') or received ('done'); a duplicate of a
// done one is acknowledged again.
//
// Every received message passes through here, so it works on the UUID's bytes
// where they lie in the packet: no string, no Map entry, no allocation per
// message. A UUID is read once, as four 32-bit words, and those words are what
// is hashed, compared and kept: UUIDs are kept in a ring of words (the oldest is
// forgotten first) and found through an open-addressing hash table over the
// ring's slots. Copying and comparing four words instead of sixteen bytes, and
// no modulo per message, made admit() quicker: 156-204 to 107-131 ns a new
// UUID, 70-108 to 36-49 ns a duplicate (`npx tsx benchmarks/dedup.ts`, three
// runs alternated with the byte-wise window of 331bb8d, 2026-12-07).
// The hash mixes the words with a random per-process seed, so UUIDs that are not
// random (a plain snakeMQ peer, or a hostile one) cannot pile up in one probe
// chain on purpose.
//
// A window holds nothing until its first UUID, then starts small and doubles:
// most peers send few messages, and a listener can have thousands of them.
const seed = globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!

/** What DedupWindow.admit() returns for a UUID the application still has. */
export const SEEN_PENDING = -1
/** What DedupWindow.admit() returns for a UUID the application was done with. */
export const SEEN_DONE = -2

/** A ring slot's `done` mark once its UUID was forgotten (see forget()): not in the table. */
const FORGOTTEN = 2

/** Ring slots allocated with the first UUID; doubled as needed up to the window's size. */
const INITIAL_SLOTS = 16
/** What an empty window holds: no ring, and one empty bucket, so every lookup ends at once. Never written to. */
const NO_RING = new Int32Array(0)
const NO_DONE = new Uint8Array(0)
const NO_TABLE = new Int32Array(2)

/** The 4 bytes at `i` as a little-endian int32. */
function word (b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24))
}

/** A UUID's hash, from its four words (int32). */
function mix (w0: number, w1: number, w2: number, w3: number): number {
  let h = seed
  h = Math.imul(h ^ w0, 0x9e3779b1)
  h = Math.imul((h ^ (h >>> 15)) ^ w1, 0x85ebca77)
  h = Math.imul((h ^ (h >>> 13)) ^ w2, 0xc2b2ae3d)
  h = Math.imul((h ^ (h >>> 16)) ^ w3, 0x27d4eb2f)
  return (h ^ (h >>> 15)) | 0
}

export class DedupWindow {
  /** Most UUIDs remembered. */
  private readonly window: number
  /** Ring of UUIDs: four int32 words per slot. */
  private ring: Int32Array
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
  /** UUIDs added so far: the next one's ticket. */
  private added = 0
  /** The ring slot the next UUID goes to (`added` modulo `slots`, kept without a division). */
  private next = 0
  private slots: number

  constructor (window: number) {
    this.window = window
    // Allocated by the first insert() (see grow()).
    this.slots = 0
    this.ring = NO_RING
    this.done = NO_DONE
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
    const w0 = word(bytes, at)
    const w1 = word(bytes, at + 4)
    const w2 = word(bytes, at + 8)
    const w3 = word(bytes, at + 12)
    const s = this.find(w0, w1, w2, w3, mix(w0, w1, w2, w3))
    return s === 0 ? undefined : this.done[s - 1] === 1
  }

  /**
   * Remembers a new UUID (one `get` said is new) as pending, forgetting the
   * oldest if the window is full; returns a ticket for `markDone`.
   */
  add (bytes: Uint8Array, at: number): number {
    const w0 = word(bytes, at)
    const w1 = word(bytes, at + 4)
    const w2 = word(bytes, at + 8)
    const w3 = word(bytes, at + 12)
    return this.insert(w0, w1, w2, w3, mix(w0, w1, w2, w3))
  }

  /**
   * get() and, for a new UUID, add() with one reading and one hash of it (every
   * received message comes through here): the ticket of a new UUID (0 or more),
   * else SEEN_PENDING or SEEN_DONE.
   */
  admit (bytes: Uint8Array, at: number): number {
    const w0 = word(bytes, at)
    const w1 = word(bytes, at + 4)
    const w2 = word(bytes, at + 8)
    const w3 = word(bytes, at + 12)
    const h = mix(w0, w1, w2, w3)
    const s = this.find(w0, w1, w2, w3, h)
    if (s !== 0) return this.done[s - 1] === 1 ? SEEN_DONE : SEEN_PENDING
    return this.insert(w0, w1, w2, w3, h)
  }

  /** The ring slot + 1 holding the UUID of these words (whose hash is `h`), or 0. */
  private find (w0: number, w1: number, w2: number, w3: number, h: number): number {
    const table = this.table
    const ring = this.ring
    const mask = this.mask
    for (let b = h & mask; ; b = (b + 1) & mask) {
      const s = table[2 * b]!
      if (s === 0) return 0
      const o = (s - 1) * 4
      if (table[2 * b + 1] === h && ring[o] === w0 && ring[o + 1] === w1 && ring[o + 2] === w2 && ring[o + 3] === w3) return s
    }
  }

  private insert (w0: number, w1: number, w2: number, w3: number, h: number): number {
    if (this.added === this.slots && this.slots < this.window) this.grow()
    const slot = this.next
    this.next = slot + 1 === this.slots ? 0 : slot + 1
    if (this.added >= this.slots && this.done[slot] !== FORGOTTEN) this.unlink(slot)
    const ring = this.ring
    const o = slot * 4
    ring[o] = w0
    ring[o + 1] = w1
    ring[o + 2] = w2
    ring[o + 3] = w3
    this.done[slot] = 0
    this.link(slot, h)
    return this.added++
  }

  /** The application is done with the message `add` gave `ticket` for (if it is still remembered). */
  markDone (ticket: number): void {
    const slot = this.slotOf(ticket)
    if (slot >= 0 && this.done[slot] === 0) this.done[slot] = 1
  }

  /**
   * Forgets the UUID `add` gave `ticket` for, while the application still has
   * not had its message (it was set aside unacknowledged): its sender's resend
   * is then new, not a duplicate. Its ring slot stays, unlinked, until reused.
   */
  forget (ticket: number): void {
    const slot = this.slotOf(ticket)
    if (slot < 0 || this.done[slot] !== 0) return
    this.unlink(slot)
    this.done[slot] = FORGOTTEN
  }

  /** The ring slot of `ticket` if it is still remembered, else -1. */
  private slotOf (ticket: number): number {
    // The ticket's slot is `back` slots behind the next one.
    const back = this.added - ticket
    if (back <= 0 || back > this.slots) return -1
    const slot = this.next - back
    return slot < 0 ? slot + this.slots : slot
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
    const ring = this.ring
    const o = slot * 4
    // The slot's hash is not kept apart: recompute it from the ring.
    let b = mix(ring[o]!, ring[o + 1]!, ring[o + 2]!, ring[o + 3]!) & mask
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
   * slots are in order and the next one is `added`), and rebuilds the table.
   */
  private grow (): void {
    const slots = Math.min(this.window, Math.max(INITIAL_SLOTS, this.slots * 2))
    const ring = new Int32Array(slots * 4)
    ring.set(this.ring)
    const done = new Uint8Array(slots)
    done.set(this.done)
    this.ring = ring
    this.done = done
    this.slots = slots
    this.next = this.added
    const buckets = bucketsFor(slots)
    this.table = new Int32Array(buckets * 2)
    this.mask = buckets - 1
    for (let s = 0; s < this.added; s++) {
      if (done[s] !== FORGOTTEN) this.link(s, mix(ring[4 * s]!, ring[4 * s + 1]!, ring[4 * s + 2]!, ring[4 * s + 3]!))
    }
  }
}

/** Buckets for `slots` UUIDs: a power of two, at least twice as many. */
function bucketsFor (slots: number): number {
  let n = 16
  while (n < slots * 2) n *= 2
  return n
}
