// The tutorial's RPC server ("Remote Procedure Call"): peer "boss" listens on
// port 4000 and serves an object as "myinstance", with a regular method, a method
// marked as a signal, and one that throws (its error is transferred to the caller,
// as snakeMQ does by default). Start it, then run examples/rpc-client.ts.
//
//   npx tsx examples/rpc-server.ts [--port 4000] [--once] [--timeout SEC] [--no-transfer-exceptions]
//
// Like the tutorial's `my_link.loop()` it runs until interrupted (Ctrl-C);
// --once ends it when the first client to connect disconnects, --timeout after
// SEC seconds. --port 0 picks a free port (printed). In an application, import
// from 'snakemq' instead of '../src/index.ts'.
import { parseArgs } from 'node:util'
import { Link, Messaging, RpcServer, asSignal } from '../src/index.ts'

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string', default: '4000' },
    once: { type: 'boolean', default: false },
    timeout: { type: 'string' },
    'no-transfer-exceptions': { type: 'boolean', default: false }
  }
})

class MyClass {
  getFo (): string {
    return 'fo value'
  }

  /** A signal: called without a reply. Marked as one with `asSignal` (snakeMQ: `@snakemq.rpc.as_signal`). */
  mysignal = asSignal((): void => {
    console.log('signal')
  })

  divide (a: number, b: number): number {
    if (b === 0) throw Object.assign(new RangeError('division by zero'), { code: 'E_DIV_ZERO' })
    return a / b
  }
}

const link = new Link()
const listener = await link.listen({ host: '127.0.0.1', port: Number(opt.port) })
const mq = new Messaging(link, { identity: 'boss' })
// snakeMQ: `srpc.transfer_exceptions = False` turns transfer off; here it is an option (and a property).
const server = new RpcServer(mq, { transferExceptions: !opt['no-transfer-exceptions'] })
server.register('myinstance', new MyClass())
console.log(`boss is listening on 127.0.0.1:${listener.port}`)

mq.on('connect', ({ ident }) => { console.log(`${ident} connected`) })

let stopping = false
async function stop (why: string): Promise<void> {
  if (stopping) return
  stopping = true
  console.log(`stopping: ${why}`)
  await server.close()
  await mq.close()
}

mq.on('disconnect', ({ ident }) => {
  console.log(`${ident} disconnected`)
  if (opt.once) void stop('--once and the client left')
})
process.once('SIGINT', () => { void stop('interrupted') })
if (opt.timeout !== undefined) setTimeout(() => { void stop(`--timeout ${opt.timeout} s`) }, Number(opt.timeout) * 1000).unref()
