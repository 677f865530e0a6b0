// Reference implementation: zeromq.js 6 (libzmq), used the way its documentation
// shows: Push/Pull for the one-way streams, Dealer/Router for request/response, one
// awaited send() or receive() per message. `zeromq` is a devDependency with prebuilt
// binaries and is imported lazily, so the harness can report why it is missing.
import { HOST, type Impl, type RpcConnection } from '../harness/types.ts'
import { stopped } from '../harness/sockets.ts'

type Zmq = typeof import('zeromq')

async function zmq (): Promise<Zmq> {
  return await import('zeromq')
}

function portOf (endpoint: string | null): number {
  const m = /:(\d+)$/.exec(endpoint ?? '')
  if (m?.[1] === undefined) throw new Error(`cannot read the port of ${endpoint}`)
  return Number(m[1])
}


const impl: Impl = {
  async unavailable () {
    try {
      const z = await zmq()
      if (typeof z.Push !== 'function') return 'the zeromq module loaded but has no Push socket'
      return undefined
    } catch (err) {
      const why = err instanceof Error ? err.message.split('\n')[0] : String(err)
      return `cannot load zeromq (npm install -D zeromq; it ships prebuilt binaries): ${why}`
    }
  },

  async streamReceiver (_args, ctl) {
    const z = await zmq()
    const pull = new z.Pull()
    await pull.bind(`tcp://${HOST}:*`)
    ctl.stop.addEventListener('abort', () => { pull.close() })
    ctl.ready({ port: portOf(pull.lastEndpoint) })
    for (;;) {
      const [msg] = await pull.receive()
      if (msg === undefined) throw new Error('empty message')
      if (ctl.deliver(msg)) break
    }
    pull.close()
  },

  async streamSender (args, ctl) {
    const z = await zmq()
    const push = new z.Push()
    push.connect(`tcp://${HOST}:${args.port}`)
    const payload = Buffer.alloc(args.size, 0x61)
    for (let i = 0; i < args.count; i++) await push.send(payload)
    // Queued messages would be lost by closing now: wait until the receiver has them all.
    await stopped(ctl)
    push.linger = 0
    push.close()
  },

  async rpcServer (_args, ctl) {
    const z = await zmq()
    const router = new z.Router()
    await router.bind(`tcp://${HOST}:*`)
    ctl.ready({ port: portOf(router.lastEndpoint) })
    const done = stopped(ctl).then(() => { router.linger = 0; router.close() })
    try {
      for (;;) {
        const [peer, req] = await router.receive()
        if (peer === undefined || req === undefined) continue
        await router.send([peer, req])
      }
    } catch (err) {
      if (!router.closed) throw err
    }
    await done
  },

  async rpcConnect (args): Promise<RpcConnection> {
    const z = await zmq()
    const dealer = new z.Dealer()
    dealer.connect(`tcp://${HOST}:${args.port}`)
    const pending = new Map<number, { resolve: (b: Uint8Array) => void, reject: (e: Error) => void }>()
    let nextId = 0
    const failAll = (e: unknown): void => {
      const err = e instanceof Error ? e : new Error(String(e))
      for (const p of pending.values()) p.reject(err)
      pending.clear()
    }
    // Only one send() may wait at a time: queue behind it rather than fail with EBUSY.
    const queue: Buffer[] = []
    let sending = false
    const pump = async (): Promise<void> => {
      sending = true
      try {
        for (let m = queue.shift(); m !== undefined; m = queue.shift()) await dealer.send(m)
      } catch (err) {
        failAll(err)
      } finally {
        sending = false
      }
    }
    const receiving = (async () => {
      try {
        for (;;) {
          const [msg] = await dealer.receive()
          if (msg === undefined || msg.length < 4) throw new Error('short reply')
          const id = msg.readUInt32BE(0)
          const p = pending.get(id)
          if (p === undefined) throw new Error(`reply to unknown call ${id}`)
          pending.delete(id)
          p.resolve(msg.subarray(4))
        }
      } catch (err) {
        if (!dealer.closed) failAll(err)
      }
    })()
    return {
      call (req) {
        const id = nextId
        nextId = (nextId + 1) >>> 0
        const msg = Buffer.allocUnsafe(4 + req.length)
        msg.writeUInt32BE(id, 0)
        req.copy(msg, 4)
        return new Promise<Uint8Array>((resolve, reject) => {
          pending.set(id, { resolve, reject })
          queue.push(msg)
          if (!sending) void pump()
        })
      },
      async close () {
        dealer.linger = 0
        dealer.close()
        await receiving
      }
    }
  }
}

export default impl
