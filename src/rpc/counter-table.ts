// A map keyed by RPC call counters. Counters come mostly in increasing order and
// are mostly removed soon after they are added, so the live ones sit in a short
// window: they are kept in a ring indexed by the counter's low bits, with a Map
// only for the stragglers left behind the window (a call that runs for long while
// thousands of others come and go). Costs an array read where a Map would hash,
// probe and, after many deletes, rehash. The ring grows only while at least one
// slot in 8 would be used and shrinks once fewer than one in 32 are, so counters
// sent far apart (by a hostile client, to the server's cache) cost a Map entry
// each, never a ring sized to their spread.

/** Most slots a ring grows to; past that, old entries move to the Map. */
const MAX_SLOTS = 1 << 16
const FIRST_SLOTS = 64

/**
 * @internal A map from counters (non-negative integers, as RPC request ids carry
 * them) to values, for keys that mostly increase. A slot is the counter's low
 * bits, so two counters closer than the ring's size never share one.
 */
export class CounterTable<V> {
  /** Entries held. */
  size = 0
  private slots: Array<V | undefined> = new Array<V | undefined>(FIRST_SLOTS).fill(undefined)
  private mask = FIRST_SLOTS - 1
  /** The first counter of the window the ring covers: [base, base + slots.length). */
  private base = 0
  private inRing = 0
  /**
   * Entries outside the ring: left behind its window, beyond it after a shrink,
   * or past 2^53 (where counting on from them would not be exact).
   */
  private far: Map<number, V> | null = null

  get (key: number): V | undefined {
    const d = key - this.base
    if (d >= 0 && d <= this.mask && key <= Number.MAX_SAFE_INTEGER) {
      const v = this.slots[key & this.mask]
      if (v !== undefined) return v
    }
    return this.far === null ? undefined : this.far.get(key)
  }

  /** Adds or replaces the value of `key`. `value` must not be undefined. */
  set (key: number, value: V): void {
    // A request id's counter can be any 64-bit number; past 2^53 a double is no longer exact.
    if (key > Number.MAX_SAFE_INTEGER) { this.setFar(key, value); return }
    if (this.inRing === 0) this.base = key
    const d = key - this.base
    // Behind the window: kept aside.
    if (d < 0) { this.setFar(key, value); return }
    if (d > this.mask) this.slide(key, d)
    const i = key & this.mask
    if (this.slots[i] === undefined) {
      // Left behind once, then the window came back over it (it restarts at the next key whenever the ring empties).
      if (this.far?.has(key) === true) { this.far.set(key, value); return }
      this.inRing++
      this.size++
    }
    this.slots[i] = value
  }

  delete (key: number): boolean {
    const d = key - this.base
    if (d >= 0 && d <= this.mask && key <= Number.MAX_SAFE_INTEGER) {
      const i = key & this.mask
      if (this.slots[i] !== undefined) {
        this.slots[i] = undefined
        this.inRing--
        this.size--
        // Mostly empty: a smaller ring (a burst of calls should not hold memory for ever).
        while (this.slots.length > FIRST_SLOTS && this.inRing * 32 < this.slots.length) this.resize(ringSize(this.inRing * 8))
        return true
      }
    }
    if (this.far !== null && this.far.delete(key)) {
      this.size--
      if (this.far.size === 0) this.far = null
      return true
    }
    return false
  }

  /** Slots in the ring (its memory, besides the Map's entries). */
  get capacity (): number { return this.slots.length }

  /** Every entry, oldest counter first. A copy: the table may change meanwhile. */
  entries (): Array<[number, V]> {
    const out: Array<[number, V]> = []
    for (let d = 0; d <= this.mask && out.length < this.inRing; d++) {
      const key = this.base + d
      const v = this.slots[key & this.mask]
      if (v !== undefined) out.push([key, v])
    }
    if (this.far !== null) {
      out.push(...this.far)
      out.sort((a, b) => a[0] - b[0])
    }
    return out
  }

  private setFar (key: number, value: V): void {
    this.far ??= new Map()
    const had = this.far.has(key)
    this.far.set(key, value)
    if (!had) this.size++
  }

  /** Makes the window reach `key`, `d` ahead of its start. */
  private slide (key: number, d: number): void {
    const slots = this.slots
    // Empty slots at the front are dropped first.
    while (d > this.mask && slots[this.base & this.mask] === undefined) {
      this.base = this.base + 1
      d--
    }
    if (d <= this.mask) return
    // A larger ring only while it stays dense: a client that numbers its calls
    // sparsely (or a hostile one) gets a Map, not a ring sized to its counters.
    const size = ringSize(d + 1)
    if (size <= MAX_SLOTS && size <= 8 * (this.inRing + 1)) { this.resize(size); return }
    // Otherwise the entries left behind go to the Map: all of them when the key is
    // a whole ring or more past the window, else a slot at a time.
    if (d - this.mask > slots.length) {
      for (let o = 0; o <= this.mask && this.inRing > 0; o++) {
        const k = this.base + o
        if (slots[k & this.mask] !== undefined) this.moveFar(k)
      }
      this.base = key
      return
    }
    while (d > this.mask) {
      if (slots[this.base & this.mask] !== undefined) this.moveFar(this.base)
      this.base = this.base + 1
      d--
    }
  }

  private moveFar (key: number): void {
    const i = key & this.mask
    this.far ??= new Map()
    this.far.set(key, this.slots[i]!)
    this.slots[i] = undefined
    this.inRing--
  }

  /**
   * A ring of `n` slots for the entries now in the ring, from the oldest on; those
   * that do not fit (only when shrinking) go to the Map.
   */
  private resize (n: number): void {
    const old = this.slots
    const oldMask = this.mask
    const slots = new Array<V | undefined>(n).fill(undefined)
    const mask = n - 1
    let first = -1
    for (let o = 0, seen = 0, count = this.inRing; o <= oldMask && seen < count; o++) {
      const key = this.base + o
      const v = old[key & oldMask]
      if (v === undefined) continue
      seen++
      if (first < 0) first = key
      if (key - first <= mask) {
        slots[key & mask] = v
      } else {
        this.far ??= new Map()
        this.far.set(key, v)
        this.inRing--
      }
    }
    if (first >= 0) this.base = first
    this.slots = slots
    this.mask = mask
  }
}

/** The power of two, at least FIRST_SLOTS, that holds `n` slots. */
function ringSize (n: number): number {
  let size = FIRST_SLOTS
  while (size < n) size *= 2
  return size
}
