// What a remote identity leaves behind on a listener once it has gone: `peers`
// raw TCP clients connect one after another (`parallel` at a time), each
// identifies with its own name, sends one message, and disconnects once the
// application has it. Then, after a GC, the listener's heap plus array buffers
// against the same before the first one, divided by `peers`. The clients are raw
// sockets, so nothing of theirs is counted once they are closed.
//
//   node --expose-gc --import tsx benchmarks/idle-peers.ts [peers=8000] [parallel=50]
import net from 'node:net'
import { once } from 'node:events'
import { Link, Messaging, encodeFrame, encodePacketBatch, FrameType, FLAG_PERSISTENT } from '../src/index.ts'
import { held } from './harness/held.ts'

const peers = Number(process.argv[2] ?? 8000)
const parallel = Number(process.argv[3] ?? 50)

const link = new Link()
const listener = await link.listen({ host: '127.0.0.1', port: 0 })
const mq = new Messaging(link, { identity: 'listener' })
const arrived = new Map<string, () => void>()
const gone = new Map<string, () => void>()
mq.on('disconnect', ({ ident }) => { gone.get(ident)?.(); gone.delete(ident) })
const consuming = (async () => {
  for await (const m of mq.messages()) {
    arrived.get(m.from)?.()
    arrived.delete(m.from)
  }
})()

async function visit (i: number): Promise<void> {
  const ident = `peer-${i.toString().padStart(6, '0')}`
  const got = new Promise<void>((resolve) => arrived.set(ident, resolve))
  const left = new Promise<void>((resolve) => gone.set(ident, resolve))
  const socket = net.connect({ host: '127.0.0.1', port: listener.port })
  socket.on('error', () => {})
  await once(socket, 'connect')
  const uuid = new Uint8Array(16)
  globalThis.crypto.getRandomValues(uuid)
  for (const chunk of encodePacketBatch([
    encodeFrame({ type: FrameType.ProtocolVersion, version: 1 }),
    encodeFrame({ type: FrameType.Identification, identity: ident }),
    encodeFrame({ type: FrameType.Message, uuid, ttl: 0, flags: FLAG_PERSISTENT, data: new TextEncoder().encode('hello') })
  ])) socket.write(chunk)
  await got
  socket.destroy()
  await left
}

// A few first, so the code paths (and their JIT code) exist before the baseline.
for (let i = 0; i < 100; i++) await visit(peers + i)
const before = held()
let next = 0
await Promise.all(Array.from({ length: parallel }, async () => {
  while (next < peers) await visit(next++)
}))
// Let the acknowledgements and closes settle.
await new Promise((resolve) => setImmediate(resolve))
const after = held()
console.log(JSON.stringify({ peers, bytesPerPeer: Math.round((after - before) / peers), heldMB: Number(((after - before) / 1e6).toFixed(1)) }))
await mq.close()
await consuming
