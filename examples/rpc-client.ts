// The tutorial's RPC client: peer "soldier" connects to "boss" (examples/rpc-server.ts)
// and uses a proxy of its "myinstance": sends the signal `mysignal` with a TTL of
// 10 seconds (no reply), calls `getFo` and waits for the result, and catches the
// error `divide(1, 0)` throws on the server, whose remote stack travels with it.
// Then it closes and exits.
//
//   npx tsx examples/rpc-server.ts &
//   npx tsx examples/rpc-client.ts [--port 4000]
//
// The calls may be made before the server is up: they wait for it. In an
// application, import from 'snakemq' instead of '../src/index.ts'.
import { parseArgs } from 'node:util'
import { Link, Messaging, RpcClient, RpcRemoteError, type Signal } from '../src/index.ts'

/** What the server's "myinstance" offers, for the proxy's types. */
interface MyInstance {
  getFo (): string
  mysignal: Signal<() => void>
  divide (a: number, b: number): number
}

const { values: opt } = parseArgs({ options: { port: { type: 'string', default: '4000' } } })

// A guard for a server that never comes: an example must not hang.
setTimeout(() => { console.error('no answer from boss within 20 s'); process.exit(1) }, 20_000).unref()

const link = new Link()
const mq = new Messaging(link, { identity: 'soldier' })
link.connect({ host: '127.0.0.1', port: Number(opt.port) })
const client = new RpcClient(mq)
const proxy = client.proxy<MyInstance>('boss', 'myinstance')

// snakeMQ: `proxy.mysignal.as_signal(10)` then `proxy.mysignal()`. Not blocking:
// resolves once queued; runs on the server if it connects within 10 s.
await proxy.mysignal.signal({ ttl: 10 })()

// snakeMQ: `proxy.get_fo()` blocks; here the call is awaited.
console.log('getFo() =', await proxy.getFo())

// Remote exceptions are transferred (unless the server turned that off).
try {
  await proxy.divide(1, 0)
} catch (err) {
  if (!(err instanceof RpcRemoteError)) throw err
  console.log(`divide(1, 0) failed remotely: ${err.remoteName}: ${err.message} (code ${err.code})`)
  console.log(`remote stack (snakeMQ's __remote_traceback__): ${err.remoteStack?.split('\n')[1]?.trim() ?? 'not transferred'}`)
}

// A call with a timeout of its own.
console.log('divide(10, 4) =', await proxy.divide.with({ timeout: 5000 })(10, 4))

await client.close()
await mq.close()
