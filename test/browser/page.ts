// The page of the browser tests, bundled by esbuild for the browser from the
// package's browser entry: a peer named 'page' whose steps the test drives
// through `globalThis.harness` (page.evaluate). Its queues persist in IndexedDB.
import { Link, LevelStore, Messaging, RpcClient, RpcServer, InvalidArgumentError, type Message } from '../../src/index.browser.ts'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

let link: Link | null = null
let mq: Messaging | null = null
let lone: LevelStore | null = null
let stalled: AsyncIterableIterator<Message> | null = null
/** The Messaging's 'error' events since start(), as "name: message". */
const errors: string[] = []
/** The same errors' name, code and numeric fields. */
const errorFields: Array<Record<string, unknown>> = []
let errorWaiters: Array<() => void> = []
let deliveredCount = 0
let deliveredWaiters: Array<() => void> = []

interface Calc { add (a: number, b: number): number }

const harness = {
  /** Opens the store and connects to `url`; resolves once the store is loaded (not when connected). */
  async start (url: string, storeName: string): Promise<{ queued: number }> {
    const store = await LevelStore.open(storeName)
    link = new Link()
    mq = new Messaging(link, { identity: 'page', store })
    deliveredCount = 0
    errors.length = 0
    errorFields.length = 0
    mq.on('error', ({ error }) => {
      errors.push(`${error.name}: ${error.message}`)
      const fields: Record<string, unknown> = { name: error.name, code: (error as { code?: unknown }).code }
      for (const [k, v] of Object.entries(error)) if (typeof v === 'number') fields[k] = v
      errorFields.push(fields)
      const waiters = errorWaiters
      errorWaiters = []
      for (const w of waiters) w()
    })
    mq.on('delivered', ({ to }) => {
      if (to !== 'node') return
      deliveredCount++
      const waiters = deliveredWaiters
      deliveredWaiters = []
      for (const w of waiters) w()
    })
    new RpcServer(mq).register('page', { mul: (a: number, b: number) => a * b, where: () => 'in a browser' })
    link.connect({ url, reconnect: { minDelay: 50, maxDelay: 400 } })
    await mq.ready()
    return { queued: mq.stats().peers.node?.queued ?? 0 }
  },

  async connected (timeout = 15_000): Promise<string> {
    await mq!.whenConnected('node', { timeout })
    return [...link!.connectionsOpen][0]?.transport ?? ''
  },

  async disconnected (): Promise<void> {
    if (!mq!.isConnected('node')) return
    await new Promise<void>((resolve) => {
      const on = ({ ident }: { ident: string }): void => { if (ident === 'node') { mq!.off('disconnect', on); resolve() } }
      mq!.on('disconnect', on)
    })
  },

  /** Sends `n` messages to node and takes `n` from it; returns what arrived, checked for order. */
  async exchange (n: number): Promise<{ received: number, inOrder: boolean }> {
    const taking = (async () => {
      let i = 0
      let inOrder = true
      if (n === 0) return { received: 0, inOrder }
      for await (const m of mq!.messages({ filter: (m) => m.from === 'node' })) {
        if (decoder.decode(m.data) !== `to page ${i}`) inOrder = false
        if (++i === n) break
      }
      return { received: i, inOrder }
    })()
    const sends: Array<Promise<unknown>> = []
    for (let i = 0; i < n; i++) sends.push(mq!.send('node', encoder.encode(`from page ${i}`)))
    await Promise.all(sends)
    return await taking
  },

  async callNode (a: number, b: number): Promise<number> {
    return await new RpcClient(mq!).proxy<Calc>('node', 'calc').add(a, b)
  },

  /** Queues `n` persistent messages for node; resolves once all are written to IndexedDB. */
  async queuePersistent (n: number): Promise<{ queued: number }> {
    const sends: Array<Promise<unknown>> = []
    for (let i = 0; i < n; i++) sends.push(mq!.send('node', encoder.encode(`kept ${i}`), { persistent: true, ttl: 600 }))
    await Promise.all(sends)
    return { queued: mq!.stats().peers.node?.queued ?? 0 }
  },

  /** Resolves once `n` messages to node were delivered (acknowledged) since start(). */
  async delivered (n: number): Promise<number> {
    while (deliveredCount < n) await new Promise<void>((resolve) => { deliveredWaiters.push(resolve) })
    return deliveredCount
  },

  /** Resolves with the 'error' events since start() once there are at least `n`. */
  async errors (n: number): Promise<string[]> {
    while (errors.length < n) await new Promise<void>((resolve) => { errorWaiters.push(resolve) })
    return [...errors]
  },

  /** Resolves with the 'error' events since start() as their name, code and numeric fields once there are at least `n`. */
  async errorFields (n: number): Promise<Array<Record<string, unknown>>> {
    await harness.errors(n)
    return [...errorFields]
  },

  /** Makes a consumer that takes nothing until takeUntil(): what arrives fills the receive buffer, and reading pauses. */
  stall (): void {
    stalled = mq!.messages()
  },

  /** Takes messages with the stalled consumer until one starts with `last`: the first `prefix` characters of each. */
  async takeUntil (last: string, prefix: number): Promise<string[]> {
    const got: string[] = []
    for await (const m of stalled!) {
      const head = decoder.decode(m.data.subarray(0, prefix))
      got.push(head)
      if (head.startsWith(last)) break
    }
    stalled = null
    return got
  },

  /** Opens the store `name` on its own (no Messaging), kept open until closeStore(); what the open did. */
  async openStore (name: string): Promise<{ opened: true } | { name: string, message: string }> {
    try {
      lone = await LevelStore.open(name)
      return { opened: true }
    } catch (err) {
      return { name: (err as Error).name, message: (err as Error).message }
    }
  },

  async closeStore (): Promise<void> {
    await lone?.close()
    lone = null
  },

  /** What a browser cannot do, each refused with InvalidArgumentError: the messages. */
  async refusals (): Promise<string[]> {
    const l = new Link()
    const out: string[] = []
    const check = async (f: () => unknown): Promise<void> => {
      try {
        await f()
        out.push('accepted')
      } catch (err) {
        out.push(err instanceof InvalidArgumentError ? err.message : `not InvalidArgumentError: ${String(err)}`)
      }
    }
    await check(async () => await l.listen({ port: 0 }))
    await check(() => l.connect({ host: '127.0.0.1', port: 1 }))
    await check(() => l.connect({ url: 'ws://127.0.0.1:1/mq#part' }))
    await check(() => l.connect({ url: 'wss://127.0.0.1:1', tls: { rejectUnauthorized: false } }))
    await check(() => l.connect({ url: 'ws://127.0.0.1:1', throttle: { incoming: 1000 } }))
    await check(async () => await LevelStore.open('refused', { sync: true } as never))
    await l.close()
    return out
  },

  async close (): Promise<void> {
    await mq?.close()
    mq = null
    link = null
  }
}

;(globalThis as unknown as { harness: typeof harness }).harness = harness

export type Harness = typeof harness
