// The floor under S1: what the per-message shape README.md teaches costs with no
// transport and no library at all, in a fresh process, cold like S1 itself. A
// library used that way pays at least this on each side before it moves a byte:
//
// - sender: `await send(payload(i))` per message, where send() returns an
//   already-resolved promise of a result object (`payload` alone as well);
// - receiver: `for await (const m of messages())` over messages already made,
//   from the cheapest async iterator there is (next() returns a resolved
//   promise), putting each counter into the Set as every S1 receiver does
//   (the Set alone as well).
//
// Set beside raw node:net's CPU per message in the same run, it says how much is
// left for a library's framing, protocol and queues if it is to tie raw.
import { Received, cpuMs, num, payload, str } from './common.ts'
import type { ProcRole } from '../../harness/proc-child.ts'

/** The kinds of floor, each measured in a process of its own. */
export const FLOOR_KINDS = ['payload', 'send', 'set', 'iterate'] as const
export type FloorKind = typeof FLOOR_KINDS[number]

interface Result { uuid: string }
const RESULT: Result = { uuid: '' }

export const roles: Record<string, ProcRole> = {
  async shape (args) {
    const count = num(args, 'count')
    const size = num(args, 'size')
    const kind = str(args, 'kind') as FloorKind
    let sink: Uint8Array | undefined
    const perMsg = (cpu0: number): number => ((cpuMs() - cpu0) * 1000) / count
    if (kind === 'payload' || kind === 'send') {
      // A send() that keeps the data and resolves at once: nothing a library could do for less.
      const send = (to: string, data: Uint8Array): Promise<Result> => { sink = to.length > 0 ? data : undefined; return Promise.resolve(RESULT) }
      const cpu0 = cpuMs()
      if (kind === 'payload') for (let i = 0; i < count; i++) sink = payload(i, size)
      else for (let i = 0; i < count; i++) await send('bob', payload(i, size))
      return { cpu_us_per_msg: perMsg(cpu0), kept: sink?.length ?? 0 }
    }
    // The messages as a receiver gets them: views of the bytes that came in.
    const data: Uint8Array[] = []
    for (let i = 0; i < count; i++) data.push(payload(i, size).subarray(0, size))
    const got = new Received(count)
    const cpu0 = cpuMs()
    if (kind === 'set') {
      for (const d of data) if (got.add(d)) break
    } else {
      let i = 0
      const messages: AsyncIterableIterator<{ data: Uint8Array }> = {
        [Symbol.asyncIterator] () { return this },
        next () { return Promise.resolve(i < data.length ? { done: false, value: { data: data[i++]! } } : { done: true, value: undefined }) }
      }
      for await (const m of messages) if (got.add(m.data)) break
    }
    const cpu = perMsg(cpu0)
    // Every counter once, as the S1 receivers check.
    got.report()
    return { cpu_us_per_msg: cpu }
  }
}
