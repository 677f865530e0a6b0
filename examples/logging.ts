// Logging: seeing what the stack does. Every component logs through a Logger:
// by default the `debug` namespaces snakemq:link, snakemq:messaging,
// snakemq:store and snakemq:rpc, silent until switched on with
//
//   DEBUG=snakemq:* npx tsx examples/simple-peers.ts
//
// An application with a logger of its own passes one as the `logger` option
// instead, as this example does: it prints each line with its component and
// level. Lines name connections (c1, c2, ...), peers and frame types; they never
// contain message data.
//
//   npx tsx examples/logging.ts
//
// In an application, import from 'snakemq' instead of '../src/index.ts'.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelStore, Link, Messaging, RpcClient, RpcServer, type LogFields, type Logger } from '../src/index.ts'

setTimeout(() => { console.error('timed out'); process.exit(1) }, 10_000).unref()

const lines: string[] = []

/** An application logger for one component; here it prints, yours might call pino or winston. */
function appLogger (component: string): Logger {
  const write = (level: string) => (message: string, fields: LogFields = {}): void => {
    const context = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v instanceof Error ? `${v.name}: ${v.message}` : String(v)}`)
    const line = `[${component}] ${level.padEnd(5)} ${message}${context.length > 0 ? ` (${context.join(', ')})` : ''}`
    lines.push(line)
    console.log(line)
  }
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') }
}

const directory = await mkdtemp(join(tmpdir(), 'snakemq-example-'))
try {
  // Alice keeps her queues in a LevelDB store; every component gets the logger.
  const aliceLink = new Link({ logger: appLogger('alice/link') })
  const store = await LevelStore.open(directory, { logger: appLogger('alice/store') })
  const alice = new Messaging(aliceLink, { identity: 'alice', store, logger: appLogger('alice/messaging') })
  const listener = await aliceLink.listen({ host: '127.0.0.1', port: 0 })

  const bobLink = new Link({ logger: appLogger('bob/link') })
  const bob = new Messaging(bobLink, { identity: 'bob', logger: appLogger('bob/messaging') })
  bobLink.connect({ host: '127.0.0.1', port: listener.port })

  const received = (async () => {
    for await (const msg of alice.messages()) return `alice received ${msg.data.byteLength} bytes from ${msg.from}`
  })()
  // Resolves once alice's application took the message and acknowledged it.
  await bob.send('alice', 'the combination is 12-34-56', { wait: 'delivered' })
  console.log(await received)
  // TTL 0 to a peer that is not connected: dropped at once, and the drop is logged.
  await bob.send('carol', 'not for the logs either', { ttl: 0 }).catch((err: Error) => { console.log(`bob: ${err.name}`) })

  // RPC logs under snakemq:rpc. A call that fails without its error going back to
  // the caller (transferExceptions: false) is logged where it failed, without its arguments.
  const server = new RpcServer(alice, { transferExceptions: false, logger: appLogger('alice/rpc') })
  server.register('vault', { open (code: string): never { throw new Error(`wrong code ${code.length} digits long`) } })
  const client = new RpcClient(bob, { logger: appLogger('bob/rpc') })
  await client.proxy<{ open (code: string): void }>('alice', 'vault').open('12-34-56').catch((err: Error) => { console.log(`bob: vault.open failed: ${err.name}`) })

  await Promise.all([client.close(), server.close()])
  await Promise.all([alice.close(), bob.close()])
  const leaked = lines.filter((l) => l.includes('12-34-56') || l.includes('not for the logs'))
  console.log(`${lines.length} log lines, ${leaked.length} with message data`)
} finally {
  await rm(directory, { recursive: true, force: true })
}
