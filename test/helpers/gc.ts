// Heap measurements for tests that claim memory stays bounded: a full garbage
// collection, whether or not node was started with --expose-gc.
import v8 from 'node:v8'
import vm from 'node:vm'

let gcFn: (() => void) | undefined = (globalThis as { gc?: () => void }).gc

/** Runs a full GC (exposing it at runtime if needed). */
export function collectGarbage (): void {
  if (gcFn === undefined) {
    v8.setFlagsFromString('--expose-gc')
    gcFn = vm.runInNewContext('gc') as () => void
  }
  gcFn()
}

/** heapUsed in bytes after a full GC, after letting pending callbacks finish. */
export async function settledHeap (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    collectGarbage()
  }
  return process.memoryUsage().heapUsed
}
