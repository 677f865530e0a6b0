// A map keyed by RPC call counters. Counters come mostly in increasing order and
// are mostly removed soon after they are added, so the live ones sit in a short
// window: they are kept in a ring indexed by the counter's low bits, with a Map
// only for the stragglers left behind the window (a call that runs for long while
// thousands of others come and go). Costs an array read where a Map would hash,
// probe and, after many deletes, rehash.

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
  /** Entries whose counter is behind the window. */
  private far: Map<number, V> | null = null

  get (key: number): V | undefined {
    const d = key - this.base
    if (d >= 0 && d <= this.mask) {
      const v = this.slots[key & this.mask]
      if (v !== undefined) return v
    }
    return this.far === null ? undefined : this.far.get(key)
  }

  /** Adds or replaces the value of `key`. `value` must not be undefined. */
  set (key: number, value: V): void {
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
    if (d >= 0 && d <= this.mask) {
      const i = key & this.mask
      if (this.slots[i] !== undefined) {
        this.slots[i] = undefined
        this.inRing--
        this.size--
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

  /** Every entry, oldest counter first (those outside the window, then the window's). A copy: the table may change meanwhile. */
  entries (): Array<[number, V]> {
    const out: Array<[number, V]> = []
    if (this.far !== null) out.push(...[...this.far].sort((a, b) => a[0] - b[0]))
    for (let d = 0; d <= this.mask && this.inRing > 0; d++) {
      const key = this.base + d
      const v = this.slots[key & this.mask]
      if (v !== undefined) out.push([key, v])
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
    if (d < MAX_SLOTS) { this.grow(d); return }
    // Far ahead: the entries left behind go to the Map, a slot at a time, or all at once for a long jump.
    if (d >= 2 * MAX_SLOTS) {
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

  /** Doubles the ring until `d` fits, keeping each entry at its counter's slot. */
  private grow (d: number): void {
    let n = this.slots.length * 2
    while (d >= n) n *= 2
    const old = this.slots
    const oldMask = this.mask
    const slots = new Array<V | undefined>(n).fill(undefined)
    const mask = n - 1
    for (let o = 0, seen = 0; o <= oldMask && seen < this.inRing; o++) {
      const key = this.base + o
      const v = old[key & oldMask]
      if (v !== undefined) { slots[key & mask] = v; seen++ }
    }
    this.slots = slots
    this.mask = mask
  }
}
