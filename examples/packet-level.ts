// Below messaging: a bare Link and the packet framing, as snakeMQ's Packeter
// offered. A packet is a 4-byte big-endian length and that many bytes. The
// listening peer frames with this library's decodePackets/encodePackets (which
// work on batches); the connecting peer uses it-length-prefixed with the
// uint32BE length coder. Both speak the same bytes. Nothing here identifies
// peers, queues or acknowledges: that is what Messaging adds on top.
//
//   npx tsx examples/packet-level.ts
//
// In an application, import from 'snakemq' instead of '../src/index.ts'.
import { once } from 'node:events'
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import {
  Link, decodePackets, encodePacketBatch, encodePackets, uint32BEDecode, uint32BEEncode, type Connection
} from '../src/index.ts'

setTimeout(() => { console.error('timed out'); process.exit(1) }, 10_000).unref()

// The listening peer answers every packet with the same bytes, upper-cased.
const server = new Link()
const listener = await server.listen({ host: '127.0.0.1', port: 0 })
server.on('connection', (conn) => {
  pipe(
    conn.source,
    decodePackets({ maxPacketSize: 1024 }), // byte chunks in, batches of packets out
    async function * (batches) {
      for await (const batch of batches) yield batch.map((p) => Buffer.from(p).toString().toUpperCase()).map((s) => Buffer.from(s))
    },
    encodePackets(), // batches of packets in, chunks to write out
    conn.sink
  ).then(async () => { await conn.end() }, (err: Error) => { conn.close(err) })
})

// The connecting peer: one connection, no reconnecting.
const client = new Link()
client.connect({ host: '127.0.0.1', port: listener.port, reconnect: false })
const [conn] = await once(client, 'connection') as [Connection]
console.log(`connected: ${conn.id}, ${conn.direction}, to ${conn.remoteAddress}:${conn.remotePort}`)

const words = ['hello', 'from', 'a', 'bare', 'link']
const hex = Buffer.concat(encodePacketBatch([Buffer.from(words[0]!)])).toString('hex')
console.log(`"${words[0]}" on the wire: ${hex.slice(0, 8)} ${hex.slice(8)}`)

// Writing and reading run side by side, each with its own backpressure.
const writing = conn.sink(lp.encode(words.map((w) => Buffer.from(w)), { lengthEncoder: uint32BEEncode }))
const replies: string[] = []
for await (const packet of lp.decode(conn.source, { lengthDecoder: uint32BEDecode, maxDataLength: 1024 })) {
  replies.push(Buffer.from(packet.subarray()).toString())
  if (replies.length === words.length) break
}
await writing
console.log(`sent ${words.length} packets, got back: ${replies.join(' ')}`)

await conn.end() // FIN; the server's source ends and it closes its side
await Promise.all([client.close(), server.close()])
