// The tutorial's "SSL context", connecting side: peer alice connects to bob
// (examples/ssl-listener.ts) with TLS, presenting her certificate and checking
// his against the CA, prints his certificate, says hello and waits for the
// answer. Run the listener first.
//
//   npx tsx examples/ssl-connector.ts [--host 127.0.0.1] [--port 4000] [--key FILE --cert FILE --ca FILE]
//
// Without --key/--cert/--ca it uses the throwaway certificates the listener
// made with openssl. In an application, import from 'snakemq' instead of
// '../src/index.ts'.
import { parseArgs } from 'node:util'
import { Link, Messaging } from '../src/index.ts'
import { certsFor } from './tls/throwaway-certs.ts'

const { values: opt } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '4000' },
    key: { type: 'string' },
    cert: { type: 'string' },
    ca: { type: 'string' }
  }
})

// An example must never hang.
setTimeout(() => { console.error('timed out'); process.exit(1) }, 30_000).unref()

const { key, cert, ca } = await certsFor('alice', opt)

const link = new Link()
const mq = new Messaging(link, { identity: 'alice', bindIdentityToCertificate: true })

mq.on('connect', ({ ident, certificate }) => {
  console.log(`connected to ${ident}; certificate subject CN=${certificate?.subject.CN}, issuer CN=${certificate?.issuer.CN}`)
})
mq.on('error', ({ error }) => { console.error(`refused: ${error.name}: ${error.message}`) })
link.on('connect-error', ({ error, delay }) => { console.error(`could not connect (${error.message}); ${delay === null ? 'giving up' : `again in ${delay} ms`}`) })

// The listener's certificate is checked against `ca`, and so is its host name
// (the throwaway certificates name 127.0.0.1 and localhost). TLS 1.2 at least.
link.connect({ host: opt.host, port: Number(opt.port), tls: { key, cert, ca } })

// Queued at once, sent as soon as bob is connected.
await mq.send('bob', 'hello over TLS')
for await (const msg of mq.messages()) {
  console.log(`alice got ${JSON.stringify(Buffer.from(msg.data).toString())} from ${msg.from}`)
  break
}
await mq.close()
