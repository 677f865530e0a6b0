// This library's programs, written the way README.md teaches them: a Link and a
// Messaging per process, `await mq.send('bob', data, { ttl: 600 })` for each
// message, `for await (const m of mq.messages())` on the other side, RPC through
// `new RpcClient(mq).proxy('server', 'svc').echo(body)`, and persistent sends
// into a LevelStore with `await` on each one. Default options throughout.
import { Received, Tenths, cpuMs, driveCalls, num, payload, str, wallNow, aborted, type CallArgs } from './common.ts'
import type { ProcRole } from '../../harness/proc-child.ts'

const HOST = '127.0.0.1'

const lib = async (): Promise<typeof import('../../../src/index.ts')> => await import('../../../src/index.ts')

interface Svc { echo(body: Uint8Array): Promise<Uint8Array> }

/** bob: listens, counts every message into the Set, leaves the loop after the last one (with `batch`, reading batches). */
const receiver: ProcRole = async (args, io) => {
  const { Link, Messaging } = await lib()
  const got = new Received(num(args, 'count'))
  const link = new Link()
  const listener = await link.listen({ host: HOST, port: 0 })
  const mq = new Messaging(link, { identity: 'bob' })
  io.ready({ port: listener.port })
  if (args.batch === true) {
    // --batch: arrays of the messages that arrived together (not the README's first loop).
    outer: for await (const batch of mq.messages({ batch: true })) {
      for (const m of batch) if (got.add(m.data)) break outer
    }
  } else {
    for await (const m of mq.messages()) {
      if (got.add(m.data)) break
    }
  }
  // Stay up until the harness is done with the sender, so its drain() sees the acknowledgements.
  const report = got.report()
  void aborted(io.stop).then(() => mq.close())
  return report
}

export const roles: Record<string, ProcRole> = {
  receiver,

  async sender (args) {
    const { Link, Messaging } = await lib()
    const count = num(args, 'count')
    const size = num(args, 'size')
    const link = new Link()
    link.connect({ host: HOST, port: num(args, 'port') })
    const mq = new Messaging(link, { identity: 'alice' })
    await mq.whenConnected('bob')
    const firstAt = wallNow()
    const firstCpu = cpuMs()
    // What the queue held, read every 1,024 sends (a figure of this library's alone: raw and zeromq.js have no such queue).
    let queuedMax = 0
    let queuedSum = 0
    let samples = 0
    const tenths = new Tenths(count)
    for (let i = 0; i < count; i++) {
      await mq.send('bob', payload(i, size), { ttl: 600 })
      tenths.step()
      if ((i & 1023) === 0) {
        const q = mq.queued('bob')
        queuedSum += q
        samples++
        if (q > queuedMax) queuedMax = q
      }
    }
    const sentAt = wallNow()
    await mq.drain()
    return { firstAt, sentAt, cpuMs: cpuMs() - firstCpu, queuedMax, queuedMean: queuedSum / samples, tenths: tenths.report() }
  },

  async echoServer (_args, io) {
    const { Link, Messaging, RpcServer } = await lib()
    const link = new Link()
    const listener = await link.listen({ host: HOST, port: 0 })
    const mq = new Messaging(link, { identity: 'server' })
    new RpcServer(mq).register('svc', { echo (body: Uint8Array) { return body } })
    io.ready({ port: listener.port })
    const readyCpu = cpuMs()
    await aborted(io.stop)
    const cpu = cpuMs() - readyCpu
    await mq.close()
    return { cpuMs: cpu }
  },

  async rpcClient (args) {
    const { Link, Messaging, RpcClient } = await lib()
    const link = new Link()
    link.connect({ host: HOST, port: num(args, 'port') })
    const mq = new Messaging(link, { identity: 'client' })
    const svc = new RpcClient(mq).proxy<Svc>('server', 'svc')
    const r = await driveCalls((body) => svc.echo(body), args as unknown as CallArgs)
    await mq.close()
    return r
  },

  /** S4: awaited persistent sends to an absent bob; the harness then kills this process with SIGKILL. */
  async persistentSender (args) {
    const { Link, Messaging, LevelStore } = await lib()
    const count = num(args, 'count')
    const size = num(args, 'size')
    const store = await LevelStore.open(str(args, 'dir'))
    const mq = new Messaging(new Link(), { identity: 'alice', store })
    await mq.ready()
    const firstAt = wallNow()
    for (let i = 0; i < count; i++) await mq.send('bob', payload(i, size), { ttl: 600, persistent: true })
    const lastAt = wallNow()
    return { sends_per_s: count / ((lastAt - firstAt) / 1000) }
  },

  /** S4 drain: a fresh process on the same store, connecting to bob, who is already waiting. */
  async restartedSender (args) {
    const { Link, Messaging, LevelStore } = await lib()
    const openAt = wallNow()
    // What the open had to replay from the store's journal (the writes LevelDB did not have when the first process was killed).
    let replayed = 0
    const logger = { debug () {}, info (message: string, fields?: Record<string, unknown>) { if (message === 'queue store journal replayed') replayed = Number(fields?.batches) }, warn () {}, error () {} }
    const store = await LevelStore.open(str(args, 'dir'), { logger })
    const link = new Link()
    link.connect({ host: HOST, port: num(args, 'port') })
    const mq = new Messaging(link, { identity: 'alice', store })
    await mq.ready()
    const readyAt = wallNow()
    const queuedAtReady = mq.queued('bob')
    await mq.drain()
    return { startAt: performance.timeOrigin, openAt, readyAt, queuedAtReady, replayed }
  },

  /** The floor under S4: `level`'s own awaited round trips on a fresh LevelDB. */
  async levelFloor (args) {
    const { Level } = await import('level')
    const count = num(args, 'count')
    const db = new Level<string, Uint8Array>(str(args, 'dir'), { valueEncoding: 'view' })
    await db.open()
    const value = (i: number): Uint8Array => payload(i, 48)
    const key = (p: string, i: number): string => `${p}${String(i).padStart(10, '0')}`
    const time = async (fn: (i: number) => Promise<void>): Promise<number> => {
      for (let i = 0; i < 200; i++) await fn(count + i) // warm-up, on keys of its own
      const t0 = performance.now()
      for (let i = 0; i < count; i++) await fn(i)
      return ((performance.now() - t0) * 1000) / count
    }
    const putUs = await time((i) => db.put(key('p', i), value(i)))
    const batchUs = await time((i) => db.batch([{ type: 'put', key: key('b', i), value: value(i) }]))
    // What one persistent send writes: the message and its peer's count, in one chained batch.
    const chained2Us = await time((i) => db.batch().put(key('c', i), value(i)).put('count', value(i)).write())
    await db.close()
    return { put_us: putUs, batch_us: batchUs, batch2_us: chained2Us }
  }
}
