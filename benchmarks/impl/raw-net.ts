// Reference implementation: bare node:net with hand-written 4-byte big-endian length
// framing. Meant as the practical limit for messaging in Node, so it does what a
// tuned transport would do and nothing more:
// - writes: frames are copied into a 64 KiB slab and handed to the socket in one
//   write per batch (a full slab, the end of an input chunk, or the end of the
//   current microtask); large payloads go out uncopied behind their header, corked.
// - reads: each chunk is parsed synchronously in a loop; complete small frames are
//   zero-copy views of the chunk; a large frame is assembled with one copy.
// - Nagle is off, and writers wait for 'drain' when the socket asks them to.
import net from 'node:net'
import { once } from 'node:events'
import type { Impl, RpcConnection } from '../harness/types.ts'
import { connect, listen, stopped } from '../harness/sockets.ts'

const SLAB = 64 * 1024
/** Payloads at least this big are written without copying. */
const LARGE = 16 * 1024
/** Partial frames at least this big are assembled in place instead of re-concatenated. */
const ASSEMBLE = 64 * 1024
const MAX_FRAME = 64 * 1024 * 1024

/** Batches length-prefixed frames into few socket writes. */
export class FrameWriter {
  private slab = Buffer.allocUnsafe(SLAB)
  private start = 0
  private pos = 0
  private scheduled = false
  private readonly flushTask = (): void => { this.scheduled = false; this.flush() }

  constructor (private readonly socket: net.Socket) {}

  /** Room in the slab for a frame of `n` payload bytes; flushes/replaces it as needed. */
  private reserve (n: number): void {
    if (this.pos + n > this.slab.length) {
      this.flush()
      this.slab = Buffer.allocUnsafe(Math.max(SLAB, n))
      this.start = this.pos = 0
    }
  }

  /** Queues one frame (optionally prefixed by a 4-byte id inside the payload). */
  push (payload: Uint8Array, id?: number): void {
    const extra = id === undefined ? 0 : 4
    const len = payload.length + extra
    if (payload.length >= LARGE) {
      this.reserve(4 + extra)
      this.slab.writeUInt32BE(len, this.pos)
      if (id !== undefined) this.slab.writeUInt32BE(id, this.pos + 4)
      this.pos += 4 + extra
      this.socket.cork()
      this.flush()
      this.socket.write(payload)
      this.socket.uncork()
      return
    }
    this.reserve(4 + len)
    const s = this.slab
    let p = this.pos
    s.writeUInt32BE(len, p)
    p += 4
    if (id !== undefined) { s.writeUInt32BE(id, p); p += 4 }
    if (payload.length <= 32) {
      for (let i = 0; i < payload.length; i++) s[p + i] = payload[i]!
    } else {
      s.set(payload, p)
    }
    this.pos = p + payload.length
  }

  /** Flush at the end of the current microtask queue (coalesces a burst of calls). */
  schedule (): void {
    if (!this.scheduled) {
      this.scheduled = true
      queueMicrotask(this.flushTask)
    }
  }

  /** Writes what is batched; the written bytes of the slab are never touched again. */
  flush (): void {
    if (this.pos === this.start) return
    this.socket.write(this.slab.subarray(this.start, this.pos))
    this.start = this.pos
  }

  /** True when the socket has more buffered than its high-water mark. */
  get congested (): boolean {
    return this.socket.writableNeedDrain
  }
}

/** Splits a byte stream into frames, synchronously, one chunk at a time. */
export class FrameParser {
  /** The start of a frame cut by the end of the last chunk (shorter than ASSEMBLE). */
  private rest: Buffer | undefined
  /** A large frame being assembled in place, and how much of it has arrived. */
  private big: Buffer | undefined
  private bigFilled = 0

  constructor (private readonly onFrame: (frame: Buffer) => void) {}

  push (chunk: Buffer): void {
    let off = 0
    if (this.rest !== undefined) {
      off = this.stitch(chunk)
      if (off < 0) return
    }
    if (this.big !== undefined) {
      off = this.fill(chunk, off)
      if (off < 0) return
    }
    const end = chunk.length
    while (end - off >= 4) {
      const len = chunk.readUInt32BE(off)
      if (len > MAX_FRAME) throw new Error(`frame of ${len} bytes exceeds ${MAX_FRAME}`)
      const stop = off + 4 + len
      if (stop <= end) {
        this.onFrame(chunk.subarray(off + 4, stop))
        off = stop
        continue
      }
      if (len >= ASSEMBLE) {
        this.big = Buffer.allocUnsafe(len)
        this.bigFilled = chunk.copy(this.big, 0, off + 4, end)
        return
      }
      break
    }
    if (off < end) this.rest = chunk.subarray(off)
  }

  /** Completes the frame begun in `rest` from the head of `chunk`; the offset after it, or -1 if the chunk was used up. */
  private stitch (chunk: Buffer): number {
    let rest = this.rest!
    let off = 0
    if (rest.length < 4) {
      off = Math.min(4 - rest.length, chunk.length)
      rest = Buffer.concat([rest, chunk.subarray(0, off)])
      if (rest.length < 4) { this.rest = rest; return -1 }
    }
    this.rest = undefined
    const len = rest.readUInt32BE(0)
    if (len > MAX_FRAME) throw new Error(`frame of ${len} bytes exceeds ${MAX_FRAME}`)
    if (len >= ASSEMBLE) {
      this.big = Buffer.allocUnsafe(len)
      this.bigFilled = rest.copy(this.big, 0, 4)
      return off
    }
    const need = 4 + len - rest.length
    if (chunk.length - off < need) {
      this.rest = Buffer.concat([rest, chunk.subarray(off)])
      return -1
    }
    this.onFrame(Buffer.concat([rest.subarray(4), chunk.subarray(off, off + need)], len))
    return off + need
  }

  /** Copies the head of `chunk` into the frame being assembled; the offset after it, or -1 if the chunk was used up. */
  private fill (chunk: Buffer, off: number): number {
    const big = this.big!
    const n = Math.min(big.length - this.bigFilled, chunk.length - off)
    chunk.copy(big, this.bigFilled, off, off + n)
    this.bigFilled += n
    if (this.bigFilled < big.length) return -1
    this.big = undefined
    this.onFrame(big)
    return off + n
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
    const parser = new FrameParser((frame) => { ctl.deliver(frame) })
    socket.on('data', (chunk: Buffer) => { parser.push(chunk) })
    const closed = new Promise<never>((_resolve, reject) => {
      socket.once('error', reject)
      socket.once('close', () => { reject(new Error('sender closed the connection early')) })
    })
    await Promise.race([ctl.delivered, closed])
    socket.destroy()
  },

  async streamSender (args, ctl) {
    const socket = await connect(args.port)
    const writer = new FrameWriter(socket)
    const payload = Buffer.alloc(args.size, 0x61)
    for (let i = 0; i < args.count; i++) {
      writer.push(payload)
      if (writer.congested) {
        writer.flush()
        await once(socket, 'drain')
      }
    }
    writer.flush()
    // Everything is written: from here on the receiver is the judge of delivery, and
    // its closing the connection (possibly with a reset) is the normal end.
    socket.on('error', () => {})
    const closed = once(socket, 'close')
    socket.end()
    await Promise.race([closed, stopped(ctl)])
    socket.destroy()
  },

  async rpcServer (_args, ctl) {
    const server = net.createServer({ noDelay: true }, (socket) => {
      const writer = new FrameWriter(socket)
      // Echo: the reply frame carries the request's id and payload.
      const parser = new FrameParser((frame) => { writer.push(frame) })
      socket.on('data', (chunk: Buffer) => { parser.push(chunk); writer.flush() })
      socket.on('error', () => { socket.destroy() })
    })
    const port = await listen(server)
    ctl.ready({ port })
    await stopped(ctl)
    server.close()
  },

  async rpcConnect (args): Promise<RpcConnection> {
    const socket = await connect(args.port)
    const writer = new FrameWriter(socket)
    const pending = new Map<number, { resolve: (b: Uint8Array) => void, reject: (e: Error) => void }>()
    let nextId = 0
    const parser = new FrameParser((frame) => {
      const id = frame.readUInt32BE(0)
      const p = pending.get(id)
      if (p === undefined) throw new Error(`reply to unknown call ${id}`)
      pending.delete(id)
      p.resolve(frame.subarray(4))
    })
    const failAll = (e: Error): void => {
      for (const p of pending.values()) p.reject(e)
      pending.clear()
    }
    socket.on('data', (chunk: Buffer) => { parser.push(chunk) })
    socket.on('error', failAll)
    socket.on('close', () => { failAll(new Error('connection closed')) })
    return {
      call (req) {
        const id = nextId
        nextId = (nextId + 1) >>> 0
        return new Promise<Uint8Array>((resolve, reject) => {
          pending.set(id, { resolve, reject })
          writer.push(req, id)
          writer.schedule()
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
