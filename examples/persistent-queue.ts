// Persistent queues: a message marked persistent is kept in a LevelDB store until
// it is delivered, so it survives the sender stopping. Bob queues a message for
// alice, who is not running, and stops. Bob starts again on the same directory,
// finds the message, and delivers it once alice is up.
//
//   npx tsx examples/persistent-queue.ts
//
// In an application, import from 'snakemq' instead of '../src/index.ts'.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelStore, Link, Messaging } from '../src/index.ts'

setTimeout(() => { console.error('timed out'); process.exit(1) }, 10_000).unref()

const directory = await mkdtemp(join(tmpdir(), 'snakemq-example-'))

/** Bob, with his queues kept in `directory`. */
async function startBob (): Promise<{ link: Link, bob: Messaging }> {
  const store = await LevelStore.open(directory)
  const link = new Link()
  const bob = new Messaging(link, { identity: 'bob', store })
  await bob.ready() // resolves once the queues are loaded from the store
  return { link, bob }
}

try {
  // First run. Alice is nowhere; send() resolves once the message is in the store.
  const first = await startBob()
  const { uuid } = await first.bob.send('alice', 'hello, this survives a restart', { ttl: 600, persistent: true })
  console.log(`bob queued ${uuid.slice(0, 8)} for alice: ${first.bob.queued('alice')} message(s) waiting`)
  await first.bob.close() // closes the link and the store too
  console.log('bob stopped')

  // Second run, same directory: the message is back in alice's queue.
  const { link, bob } = await startBob()
  console.log(`bob started again: ${bob.queued('alice')} message(s) waiting for alice`)

  // Alice comes up and bob dials her. Who listens does not matter: the sender's
  // queue is what persists.
  const aliceLink = new Link()
  const alice = new Messaging(aliceLink, { identity: 'alice' })
  const listener = await aliceLink.listen({ host: '127.0.0.1', port: 0 })
  const delivered = new Promise<string>((resolve) => bob.once('delivered', (e) => { resolve(e.uuid) }))
  link.connect({ host: '127.0.0.1', port: listener.port })

  for await (const msg of alice.messages()) {
    console.log(`alice got ${JSON.stringify(Buffer.from(msg.data).toString())} from ${msg.from} (persistent: ${msg.persistent})`)
    break // leaving the loop acknowledges the message to bob
  }
  // Only now is it deleted from bob's store: acknowledged by alice.
  console.log(`bob: ${(await delivered).slice(0, 8)} delivered, ${bob.queued('alice')} message(s) waiting`)
  await Promise.all([bob.close(), alice.close()])
} finally {
  await rm(directory, { recursive: true, force: true })
}
