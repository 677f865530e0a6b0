// snakemq, used the way its README shows: a Link, a Messaging on it, `await
// mq.send()` in a loop on one side and `for await (const m of mq.messages())` on
// the other. Default options everywhere, except where a scenario needs otherwise
// (the memory scenario raises the queue limits so a million messages fit).
//
// S3 runs over the RPC layer (src/rpc) when it exists, else over plain Messaging
// request/reply (a 4-byte call id in front of the payload, echoed by the server);
// `rpcMode()` says which, and the harness prints it in the error list if neither works.
// S4 comes from `snakemq-s4.ts`.
import { existsSync } from 'node:fs'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { HOST, type Impl, type MemoryResult, type RoleFn, type RpcConnection } from '../harness/types.ts'
import { stopped } from '../harness/sockets.ts'
import type { Messaging } from '../../src/index.ts'
import { s4, s4Roles } from './snakemq-s4.ts'

type Lib = typeof import('../../src/index.ts')

async function lib (): Promise<Lib> {
  return await import('../../src/index.ts')
}


/** Resolves once nothing is queued for anyone (everything acknowledged). */
function allDelivered (mq: Messaging): Promise<void> {
  if (mq.queued() === 0) return Promise.resolve()
  return new Promise((resolve) => {
    const check = (): void => {
      if (mq.queued() === 0) { mq.off('delivered', check); mq.off('drop', check); resolve() }
    }
    mq.on('delivered', check)
    mq.on('drop', check)
  })
}

/** Listens on HOST, port 0; resolves with the Messaging and the port. */
async function listening (identity: string): Promise<{ mq: Messaging, port: number }> {
  const { Link, Messaging } = await lib()
  const link = new Link()
  const listener = await link.listen({ host: HOST, port: 0 })
  return { mq: new Messaging(link, { identity }), port: listener.port }
}

/**
 * Connects to the peer on `port` and resolves once the handshake is done, as the
 * references start sending once their socket is connected. (Sending before that
 * works too: the messages wait in the queue.)
 */
async function connected (identity: string, port: number): Promise<Messaging> {
  const { Link, Messaging } = await lib()
  const link = new Link()
  const mq = new Messaging(link, { identity })
  const up = new Promise<void>((resolve) => { mq.once('connect', () => { resolve() }) })
  link.connect({ host: HOST, port })
  await up
  return mq
}

/** The RPC layer, if it is there (it is being written alongside this file). */
const RPC_FILES = ['../../src/rpc/client.ts', '../../src/rpc/server.ts'].map((f) => new URL(f, import.meta.url))
const hasRpc = RPC_FILES.every((u) => existsSync(u))

interface RpcModules {
  RpcServer: new (mq: Messaging) => { register(name: string, impl: object): unknown, close?(): unknown }
  RpcClient: new (mq: Messaging) => { proxy<T>(peer: string, name: string): T, close?(): unknown }
}

async function rpcModules (): Promise<RpcModules> {
  const [client, server] = await Promise.all(RPC_FILES.map(async (u) => await import(u.href) as Record<string, unknown>))
  return { RpcClient: client!.RpcClient as RpcModules['RpcClient'], RpcServer: server!.RpcServer as RpcModules['RpcServer'] }
}

// The proxy's shape (the server's echo itself returns its argument as is).
interface Echo { echo(data: Uint8Array): Promise<Uint8Array> }


/** Memory: RSS per message with `queued` messages held for an absent peer. */
const memoryRoles: Record<string, RoleFn> = {
  async hold (args) {
    const queued = args.queued as number
    const size = args.size as number
    const shared = args.shared === true
    const { Link, Messaging } = await lib()
    const link = new Link()
    const mq = new Messaging(link, { identity: 'tx', queueLimits: { messages: queued + 1, bytes: 2 ** 40 } })
    await mq.ready()
    const payload = Buffer.alloc(size, 0x61)
    // The payloads of a real application are separate buffers; `shared` measures the library's own cost only.
    const data = (i: number): Uint8Array => {
      if (shared) return payload
      const b = Buffer.allocUnsafe(size)
      b.fill(0x61)
      b.writeUInt32BE(i >>> 0, 0)
      return b
    }
    // Warm up (code, pools) so the baseline measures the same process state.
    for (let i = 0; i < 1000; i++) await mq.send('warmup', data(i))
    // A full collection before each reading, so only what is still referenced counts.
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const settle = (): number => { gc(); gc(); return process.memoryUsage().rss }
    const before = settle()
    const heapBefore = process.memoryUsage().heapUsed
    for (let i = 0; i < queued; i++) await mq.send('absent', data(i))
    const after = settle()
    const heapAfter = process.memoryUsage().heapUsed
    if (mq.queued('absent') !== queued) throw new Error(`queued ${mq.queued('absent')} of ${queued}`)
    await mq.close()
    return { rss: (after - before) / queued, heap: (heapAfter - heapBefore) / queued }
  }
}

/**
 * S3 over plain Messaging: the client puts a 4-byte call id in front of the
 * payload, the server sends each message back to its sender, the client routes
 * replies by id. What the RPC layer is built on, without it.
 */
export const messagingServer: NonNullable<Impl['rpcServer']> = async (_args, ctl) => {
  const { mq, port } = await listening('server')
  ctl.ready({ port, mode: 'messaging' })
  const serve = (async () => {
    for await (const m of mq.messages()) await mq.send(m.from, m.data)
  })()
  await Promise.race([stopped(ctl), serve])
  await mq.close()
}

export const messagingConnect: NonNullable<Impl['rpcConnect']> = async (args) => {
  const mq = await connected('client', args.port)
  const pending = new Map<number, (b: Uint8Array) => void>()
  let nextId = 0
  const replies = (async () => {
    for await (const m of mq.messages()) {
      const d = m.data
      const id = ((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0
      const resolve = pending.get(id)
      if (resolve === undefined) throw new Error(`reply to unknown call ${id}`)
      pending.delete(id)
      resolve(d.subarray(4))
    }
  })()
  replies.catch(() => {})
  return {
    async call (req) {
      const id = nextId
      nextId = (nextId + 1) >>> 0
      const msg = Buffer.allocUnsafe(4 + req.length)
      msg.writeUInt32BE(id, 0)
      msg.set(req, 4)
      const reply = new Promise<Uint8Array>((resolve) => { pending.set(id, resolve) })
      await mq.send('server', msg)
      return await reply
    },
    async close () { await mq.close() }
  }
}

const impl: Impl = {
  async streamReceiver (_args, ctl) {
    const { mq, port } = await listening('receiver')
    ctl.ready({ port })
    for await (const m of mq.messages()) {
      if (ctl.deliver(m.data)) break
    }
    await mq.close()
  },

  async streamSender (args, ctl) {
    const mq = await connected('sender', args.port)
    const payload = Buffer.alloc(args.size, 0x61)
    for (let i = 0; i < args.count; i++) await mq.send('receiver', payload)
    // send() resolves once queued: close only when the receiver acknowledged everything.
    await Promise.race([allDelivered(mq), stopped(ctl)])
    await mq.close()
  },

  async rpcServer (args, ctl) {
    if (!hasRpc) { await messagingServer(args, ctl); return }
    const { mq, port } = await listening('server')
    const { RpcServer } = await rpcModules()
    new RpcServer(mq).register('echo', { echo (data: Uint8Array) { return data } })
    ctl.ready({ port, mode: 'rpc' })
    await stopped(ctl)
    await mq.close()
  },

  async rpcConnect (args): Promise<RpcConnection> {
    if (!hasRpc) return await messagingConnect(args)
    const mq = await connected('client', args.port)
    const { RpcClient } = await rpcModules()
    const api = new RpcClient(mq).proxy<Echo>('server', 'echo')
    return {
      // The proxy's promise as it is, as the raw references hand back theirs.
      call (req) { return api.echo(req) },
      async close () { await mq.close() }
    }
  },

  // S4: persistent queues in a LevelStore (snakemq-s4.ts).
  s4,

  async memory (h, { queued, size }): Promise<MemoryResult> {
    const run = async (shared: boolean): Promise<{ rss: number, heap: number }> => {
      const r = await h.spawn('hold', { queued, size, shared }).result
      return r.value as { rss: number, heap: number }
    }
    const own = await run(false)
    const lib = await run(true)
    return {
      bytes_per_queued_msg: own.rss,
      heap_bytes_per_queued_msg: own.heap,
      bytes_per_queued_msg_shared_payload: lib.rss
    } as MemoryResult
  },

  roles: { ...s4Roles, ...memoryRoles }
}

export default impl
