// setImmediate and clearImmediate in any runtime: Node's own where it has them,
// elsewhere (a browser) a task posted through a MessageChannel, which runs after
// pending I/O callbacks as Node's does, without the 4 ms clamp that nested
// setTimeout(0) calls get in browsers.

/** What setImmediate returns, for clearImmediate. */
export type ImmediateHandle = object | number

interface ImmediateFunctions {
  setImmediate?: (callback: () => void) => ImmediateHandle
  clearImmediate?: (handle: ImmediateHandle) => void
}

/** The part of a MessageChannel's ports used here (typed here: Node's and the DOM's types differ). */
interface Port {
  onmessage: ((event: { data: unknown }) => void) | null
  postMessage (message: unknown): void
}

const own = globalThis as unknown as ImmediateFunctions & { MessageChannel?: new () => { port1: Port, port2: Port } }

function posted (): Required<ImmediateFunctions> {
  const pending = new Map<number, () => void>()
  let next = 1
  if (own.MessageChannel === undefined) throw new Error('this runtime has neither setImmediate nor MessageChannel')
  const channel = new own.MessageChannel()
  channel.port1.onmessage = (event) => {
    const id = event.data as number
    const callback = pending.get(id)
    if (callback === undefined) return
    pending.delete(id)
    callback()
  }
  return {
    setImmediate (callback) {
      const id = next++
      pending.set(id, callback)
      channel.port2.postMessage(id)
      return id
    },
    clearImmediate (handle) { pending.delete(handle as number) }
  }
}

const chosen: Required<ImmediateFunctions> = own.setImmediate !== undefined && own.clearImmediate !== undefined
  ? { setImmediate: own.setImmediate.bind(globalThis), clearImmediate: own.clearImmediate.bind(globalThis) }
  : posted()

/** Runs `callback` in a task of its own, after the current one and the I/O already pending. */
export const setImmediate: (callback: () => void) => ImmediateHandle = chosen.setImmediate
/** Cancels a callback of setImmediate that has not run yet; undefined is ignored. */
export const clearImmediate: (handle: ImmediateHandle | undefined) => void = (handle) => { if (handle !== undefined) chosen.clearImmediate(handle) }
