// V8 takes an object field that has only been written once (its initial value)
// for a constant, and optimized code that reads it relies on that. The first
// later write to it, on any object of that shape, then throws that code away to
// be compiled again. For fields that change only late in an object's life
// (when a connection closes, when draining starts) that happened in the middle
// of traffic: the first connection to close discarded the optimized send and
// receive path of every other one. Writing such fields a second time while the
// object is made settles them as variable before anything is compiled.

/**
 * Writes each field `keys` of `obj` again with its own value (see above): call
 * it at the end of a constructor, with the fields that change after it.
 * Throws for a name that is not one of the object's own fields (it would add a
 * field, or call an inherited setter, instead).
 */
export function settleFields (obj: object, ...keys: string[]): void {
  const o = obj as Record<string, unknown>
  for (const k of keys) {
    if (!Object.hasOwn(o, k)) throw new TypeError(`settleFields: no field ${k}`)
    const value = o[k]
    o[k] = value
  }
}
