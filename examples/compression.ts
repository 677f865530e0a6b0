// Connection transforms: stages between a connection's socket and the framing.
// Here both peers compress their byte stream with node:zlib (a raw deflate
// stream, flushed after every chunk so nothing waits in the compressor), and
// bob also taps the bytes as they go on the wire to count them. Both ends must
// use matching transforms: a peer without the deflate stage would read garbage
// and close the connection with a protocol error.
//
//   npx tsx examples/compression.ts
//
// In an application, import from 'snakemq' instead of '../src/index.ts'.
import zlib from 'node:zlib'
import { pipe } from 'it-pipe'
import { Link, Messaging, type ConnectionTransform, type Duplex } from '../src/index.ts'

setTimeout(() => { console.error('timed out'); process.exit(1) }, 15_000).unref()

/** Runs every chunk through a zlib stream and yields what it gives back, flushed, so each chunk goes on at once. */
function through (make: () => zlib.Deflate | zlib.Inflate) {
  return async function * (source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const z = make()
    const out: Buffer[] = []
    z.on('data', (d: Buffer) => { out.push(d) })
    try {
      for await (const chunk of source) {
        z.write(chunk)
        await new Promise<void>((resolve) => { z.flush(zlib.constants.Z_SYNC_FLUSH, () => { resolve() }) })
        if (out.length > 0) yield Buffer.concat(out.splice(0))
      }
    } finally {
      z.close()
    }
  }
}

/** Compresses what goes out, decompresses what comes in. */
const deflate: ConnectionTransform = (duplex: Duplex<Uint8Array>) => ({
  source: through(() => zlib.createInflateRaw())(duplex.source),
  sink: async (source) => { await pipe(source, through(() => zlib.createDeflateRaw()), duplex.sink) }
})

/** Counts the bytes that pass, both ways, where it stands in the stack. */
function tap (counts: { in: number, out: number }): ConnectionTransform {
  return (duplex) => ({
    source: (async function * () { for await (const c of duplex.source) { counts.in += c.length; yield c } })(),
    sink: async (source) => {
      await pipe(source, async function * (s) { for await (const c of s) { counts.out += c.length; yield c } }, duplex.sink)
    }
  })
}

const aliceLink = new Link({ transforms: [deflate] })
const alice = new Messaging(aliceLink, { identity: 'alice' })
const listener = await aliceLink.listen({ host: '127.0.0.1', port: 0 })

// The first transform is next to the socket: the tap sees the compressed bytes.
const onTheWire = { in: 0, out: 0 }
const bobLink = new Link({ transforms: [tap(onTheWire), deflate] })
const bob = new Messaging(bobLink, { identity: 'bob' })
bobLink.connect({ host: '127.0.0.1', port: listener.port })

const MESSAGES = 200
const text = 'the same line again and again, as logs and JSON tend to be. '.repeat(16)
const receiving = (async () => {
  let bytes = 0
  let n = 0
  for await (const msg of alice.messages()) {
    bytes += msg.data.byteLength
    if (new TextDecoder().decode(msg.data) !== `${n} ${text}`) throw new Error(`message ${n} arrived changed`)
    if (++n === MESSAGES) return bytes
  }
  return bytes
})()
for (let i = 0; i < MESSAGES; i++) await bob.send('alice', `${i} ${text}`)
const bytes = await receiving
console.log(`alice received ${MESSAGES} messages, ${bytes} bytes of data, intact`)
console.log(`bob wrote ${onTheWire.out} bytes on the wire for them: ${(bytes / onTheWire.out).toFixed(1)}x smaller`)

await bob.close()
await alice.close()
