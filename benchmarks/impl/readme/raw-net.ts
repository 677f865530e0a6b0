// The raw node:net programs an application writes by hand (issue 19): a 4-byte
// big-endian length in front of each message; the sender frames a fresh buffer
// per message, collects frames into about 64 KiB and writes them, waiting for
// `drain` when write() says so; the receiver parses the frames out of the chunks.
// For RPC, an echo server that writes back each frame, and a client that puts a
// 4-byte call id in front of the body and keeps one pending promise per call.
import net from 'node:net'
import { once } from 'node:events'
import { Received, Tenths, cpuMs, aborted, driveCalls, num, payload, wallNow, type CallArgs } from './common.ts'
import type { ProcRole } from '../../harness/proc-child.ts'

const HOST = '127.0.0.1'
const BATCH = 64 * 1024

/**
 * Calls `onFrame` with each frame's body as the chunks arrive. Chunks are kept
 * until a whole frame is there, then joined once, so a 1 MiB frame arriving in
 * 64 KiB chunks is copied once, not once per chunk.
 */
function frameReader (onFrame: (body: Buffer) => void): (chunk: Buffer) => void {
  let chunks: Buffer[] = []
  let have = 0
  let need = 4 // bytes needed before the next step can be taken
  return (chunk) => {
    chunks.push(chunk)
    have += chunk.length
    if (have < need) return
    let buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, have)
    let at = 0
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at)
      if (buf.length - at - 4 < len) { need = 4 + len; break }
      onFrame(buf.subarray(at + 4, at + 4 + len))
      at += 4 + len
      need = 4
    }
    buf = buf.subarray(at)
    chunks = buf.length > 0 ? [buf] : []
    have = buf.length
  }
}

function frame (body: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(4 + body.length)
  f.writeUInt32BE(body.length, 0)
  f.set(body, 4)
  return f
}

async function listen (server: net.Server): Promise<number> {
  server.listen({ host: HOST, port: 0 })
  await once(server, 'listening')
  return (server.address() as net.AddressInfo).port
}

export const roles: Record<string, ProcRole> = {
  async receiver (args, io) {
    const got = new Received(num(args, 'count'))
    let done!: () => void
    const all = new Promise<void>((resolve) => { done = resolve })
    const server = net.createServer((socket) => {
      socket.on('data', frameReader((body) => { if (got.add(body)) done() }))
    })
    io.ready({ port: await listen(server) })
    await all
    server.close()
    return got.report()
  },

  async sender (args) {
    const count = num(args, 'count')
    const size = num(args, 'size')
    const socket = net.connect({ host: HOST, port: num(args, 'port') })
    await once(socket, 'connect')
    const firstAt = wallNow()
    const firstCpu = cpuMs()
    const tenths = new Tenths(count)
    let frames: Buffer[] = []
    let bytes = 0
    for (let i = 0; i < count; i++) {
      const f = frame(payload(i, size))
      frames.push(f)
      bytes += f.length
      tenths.step()
      if (bytes >= BATCH || i === count - 1) {
        const ok = socket.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes))
        frames = []
        bytes = 0
        if (!ok) await once(socket, 'drain')
      }
    }
    socket.end()
    await once(socket, 'finish')
    return { firstAt, cpuMs: cpuMs() - firstCpu, tenths: tenths.report() }
  },

  async echoServer (_args, io) {
    const server = net.createServer({ noDelay: true }, (socket) => {
      socket.on('data', frameReader((body) => { socket.write(frame(body)) }))
      socket.on('error', () => {})
    })
    io.ready({ port: await listen(server) })
    const readyCpu = cpuMs()
    await aborted(io.stop)
    const cpu = cpuMs() - readyCpu
    server.close()
    return { cpuMs: cpu }
  },

  async rpcClient (args) {
    const socket = net.connect({ host: HOST, port: num(args, 'port'), noDelay: true })
    await once(socket, 'connect')
    const pending = new Map<number, (body: Buffer) => void>()
    let nextId = 0
    socket.on('data', frameReader((msg) => {
      const id = msg.readUInt32BE(0)
      const resolve = pending.get(id)
      if (resolve === undefined) throw new Error(`a reply to unknown call ${id}`)
      pending.delete(id)
      resolve(msg.subarray(4))
    }))
    const call = (body: Buffer): Promise<Buffer> => {
      const id = nextId
      nextId = (nextId + 1) >>> 0
      const msg = Buffer.allocUnsafe(4 + body.length)
      msg.writeUInt32BE(id, 0)
      body.copy(msg, 4)
      return new Promise((resolve) => {
        pending.set(id, resolve)
        socket.write(frame(msg))
      })
    }
    const r = await driveCalls(call, args as unknown as CallArgs)
    socket.destroy()
    return r
  }
}
