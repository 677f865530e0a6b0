// Reference implementation: bare node:net with hand-written 4-byte big-endian length
// framing, written the way most applications write it rather than tuned:
// - writes: every message is framed into a buffer of its own and handed to the
//   socket with its own `socket.write`; the sender waits for 'drain' when write()
//   returns false;
// - reads: each chunk is appended to what was left over (Buffer.concat) and the
//   complete frames are cut out with subarray.
// Nagle is off on both ends, as any latency-minded application would set it.
// Issue 6's reference figures (543k msg/s, 164 µs, 66.6k calls/s) were measured
// with a writer like this one; `raw-net.ts` is the batched, tuned variant.
import net from 'node:net'
import { once } from 'node:events'
import type { Impl, RpcConnection } from '../harness/types.ts'
import { connect, listen, stopped } from '../harness/sockets.ts'

const MAX_FRAME = 64 * 1024 * 1024

/** One frame: the length header and the payload, copied into one buffer. */
function frame (payload: Uint8Array, id?: number): Buffer {
  const extra = id === undefined ? 0 : 4
  const buf = Buffer.allocUnsafe(4 + extra + payload.length)
  buf.writeUInt32BE(extra + payload.length, 0)
  if (id !== undefined) buf.writeUInt32BE(id, 4)
  buf.set(payload, 4 + extra)
  return buf
}

/** Calls `onFrame` for each complete frame in the byte stream. */
function reader (onFrame: (frame: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0)
  return (chunk) => {
    const buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let off = 0
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off)
      if (len > MAX_FRAME) throw new Error(`frame of ${len} bytes exceeds ${MAX_FRAME}`)
      if (buf.length - off - 4 < len) break
      onFrame(buf.subarray(off + 4, off + 4 + len))
      off += 4 + len
    }
    pending = buf.subarray(off)
  }
}




const impl: Impl = {
  async streamReceiver (_args, ctl) {
    const server = net.createServer({ noDelay: true })
    const port = await listen(server)
    const conn = once(server, 'connection') as Promise<[net.Socket]>
    ctl.ready({ port })
    const [socket] = await conn
    server.close()
    socket.on('data', reader((f) => { ctl.deliver(f) }))
    const closed = new Promise<never>((_resolve, reject) => {
      socket.once('error', reject)
      socket.once('close', () => { reject(new Error('sender closed the connection early')) })
    })
    await Promise.race([ctl.delivered, closed])
    socket.destroy()
  },

  async streamSender (args, ctl) {
    const socket = await connect(args.port)
    const payload = Buffer.alloc(args.size, 0x61)
    for (let i = 0; i < args.count; i++) {
      if (!socket.write(frame(payload))) await once(socket, 'drain')
    }
    socket.on('error', () => {})
    const closed = once(socket, 'close')
    socket.end()
    await Promise.race([closed, stopped(ctl)])
    socket.destroy()
  },

  async rpcServer (_args, ctl) {
    const server = net.createServer({ noDelay: true }, (socket) => {
      // Echo: the reply carries the request's id and payload.
      socket.on('data', reader((f) => { socket.write(frame(f)) }))
      socket.on('error', () => { socket.destroy() })
    })
    const port = await listen(server)
    ctl.ready({ port })
    await stopped(ctl)
    server.close()
  },

  async rpcConnect (args): Promise<RpcConnection> {
    const socket = await connect(args.port)
    const pending = new Map<number, { resolve: (b: Uint8Array) => void, reject: (e: Error) => void }>()
    let nextId = 0
    const failAll = (e: Error): void => {
      for (const p of pending.values()) p.reject(e)
      pending.clear()
    }
    socket.on('data', reader((f) => {
      const id = f.readUInt32BE(0)
      const p = pending.get(id)
      if (p === undefined) throw new Error(`reply to unknown call ${id}`)
      pending.delete(id)
      p.resolve(f.subarray(4))
    }))
    socket.on('error', failAll)
    socket.on('close', () => { failAll(new Error('connection closed')) })
    return {
      call (req) {
        const id = nextId
        nextId = (nextId + 1) >>> 0
        return new Promise<Uint8Array>((resolve, reject) => {
          pending.set(id, { resolve, reject })
          socket.write(frame(req, id))
        })
      },
      async close () {
        socket.end()
        socket.destroy()
      }
    }
  }
}

export default impl
