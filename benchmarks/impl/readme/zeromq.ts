// zeromq.js 6 programs as its documentation shows them: Push/Pull with one
// `await push.send()` per message and `for await (const [msg] of pull)`; for
// RPC a Router that sends each request back to its sender, and a Dealer client
// with a 4-byte call id in front of the body and one pending promise per call
// (zeromq.js allows one send() that has to wait at a time and rejects a second
// one with EBUSY, which 100 calls in flight do meet: the client chains its
// sends, each after the previous one, as an application has to).
import { Received, Tenths, cpuMs, aborted, driveCalls, num, payload, wallNow, type CallArgs } from './common.ts'
import type { ProcRole } from '../../harness/proc-child.ts'

const HOST = '127.0.0.1'

function portOf (endpoint: string | null): number {
  const m = /:(\d+)$/.exec(endpoint ?? '')
  if (m?.[1] === undefined) throw new Error(`cannot read the port of ${endpoint}`)
  return Number(m[1])
}

export const roles: Record<string, ProcRole> = {
  async receiver (args, io) {
    const zmq = await import('zeromq')
    const got = new Received(num(args, 'count'))
    const pull = new zmq.Pull()
    await pull.bind(`tcp://${HOST}:*`)
    io.ready({ port: portOf(pull.lastEndpoint) })
    for await (const [msg] of pull) {
      if (got.add(msg!)) break
    }
    pull.close()
    return got.report()
  },

  async sender (args) {
    const zmq = await import('zeromq')
    const count = num(args, 'count')
    const size = num(args, 'size')
    const push = new zmq.Push()
    push.connect(`tcp://${HOST}:${num(args, 'port')}`)
    const firstAt = wallNow()
    const firstCpu = cpuMs()
    const tenths = new Tenths(count)
    for (let i = 0; i < count; i++) {
      await push.send(payload(i, size))
      tenths.step()
    }
    // The socket stays open (the process exits when the harness says stop): closing it
    // now could lose what libzmq has not written yet.
    return { firstAt, cpuMs: cpuMs() - firstCpu, tenths: tenths.report() }
  },

  async echoServer (_args, io) {
    const zmq = await import('zeromq')
    const router = new zmq.Router()
    await router.bind(`tcp://${HOST}:*`)
    io.ready({ port: portOf(router.lastEndpoint) })
    const readyCpu = cpuMs()
    let cpu = 0
    void aborted(io.stop).then(() => { cpu = cpuMs() - readyCpu; router.linger = 0; router.close() })
    try {
      for await (const [peer, req] of router) await router.send([peer!, req!])
    } catch (err) {
      if (!router.closed) throw err
    }
    return { cpuMs: cpu }
  },

  async rpcClient (args) {
    const zmq = await import('zeromq')
    const dealer = new zmq.Dealer()
    dealer.connect(`tcp://${HOST}:${num(args, 'port')}`)
    const pending = new Map<number, (body: Buffer) => void>()
    let nextId = 0
    let sending: Promise<void> = Promise.resolve()
    const replies = (async () => {
      for await (const [msg] of dealer) {
        const id = msg!.readUInt32BE(0)
        const resolve = pending.get(id)
        if (resolve === undefined) throw new Error(`a reply to unknown call ${id}`)
        pending.delete(id)
        resolve(msg!.subarray(4))
      }
    })()
    replies.catch(() => {})
    const call = async (body: Buffer): Promise<Buffer> => {
      const id = nextId
      nextId = (nextId + 1) >>> 0
      const msg = Buffer.allocUnsafe(4 + body.length)
      msg.writeUInt32BE(id, 0)
      body.copy(msg, 4)
      const reply = new Promise<Buffer>((resolve) => { pending.set(id, resolve) })
      sending = sending.then(() => dealer.send(msg))
      await sending
      return await reply
    }
    const r = await driveCalls(call, args as unknown as CallArgs)
    dealer.linger = 0
    dealer.close()
    return r
  }
}
