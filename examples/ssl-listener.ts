// The tutorial's "SSL context", listening side: peer bob listens with TLS on
// port 4000, requires a client certificate signed by the CA, and prints the
// certificate of whoever connects (snakeMQ's `getpeercert()` in `on_connect`).
// It answers the first message it gets, then stops once that peer leaves.
// Start it, then run examples/ssl-connector.ts.
//
//   npx tsx examples/ssl-listener.ts [--port 4000] [--key FILE --cert FILE --ca FILE] [--timeout SEC]
//
// Without --key/--cert/--ca it makes throwaway certificates with openssl (and
// the connector uses the same ones). --port 0 picks a free port (printed). In an
// application, import from 'snakemq' instead of '../src/index.ts'.
import { parseArgs } from 'node:util'
import { Link, Messaging } from '../src/index.ts'
import { certsFor } from './tls/throwaway-certs.ts'

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string', default: '4000' },
    key: { type: 'string' },
    cert: { type: 'string' },
    ca: { type: 'string' },
    timeout: { type: 'string', default: '60' }
  }
})

// An example must never hang.
setTimeout(() => { console.error('timed out'); process.exit(1) }, Number(opt.timeout) * 1000).unref()

const { key, cert, ca } = await certsFor('bob', opt)

const link = new Link()
// With bindIdentityToCertificate, a peer may only call itself what its
// certificate says (its CN or a DNS name): "alice" needs alice's certificate.
const mq = new Messaging(link, { identity: 'bob', bindIdentityToCertificate: true })

mq.on('connect', ({ ident, certificate, connection }) => {
  // The certificate is also on the connection: connection.peerCertificate.
  console.log(`${ident} connected over TLS (verified: ${connection.peerAuthorized})`)
  console.log(`${ident}'s certificate: subject CN=${certificate?.subject.CN}, issuer CN=${certificate?.issuer.CN}, valid until ${certificate?.valid_to}`)
})
mq.on('error', ({ error }) => { console.error(`refused a peer: ${error.name}: ${error.message}`) })
link.on('error', (error) => { console.error(`TLS: ${error.message}`) })

// requestCert: ask each client for its certificate; with `ca`, it must be
// signed by that CA (rejectUnauthorized is on by default). TLS 1.2 at least.
const listener = await link.listen({ host: '127.0.0.1', port: Number(opt.port), tls: { key, cert, ca, requestCert: true } })
console.log(`bob is listening on ${listener.host}:${listener.port} (TLS, client certificates required)`)

for await (const msg of mq.messages()) {
  console.log(`bob got ${JSON.stringify(Buffer.from(msg.data).toString())} from ${msg.from}`)
  const left = new Promise<void>((resolve) => mq.once('disconnect', () => { resolve() }))
  await mq.send(msg.from, `hello back, ${msg.from}`, { wait: 'delivered' })
  await left
  console.log(`${msg.from} left; bob stops`)
  break
}
await mq.close()
