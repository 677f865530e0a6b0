// What a process holds after a full GC: its JS heap plus its array buffers.
// For the benchmarks that count bytes per peer or per call (run them with
// node --expose-gc).
const gc = globalThis.gc
if (gc === undefined) throw new Error('run with node --expose-gc')

export function held (): number {
  gc!()
  gc!()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}
