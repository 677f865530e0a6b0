// benchmarks/scale.ts depth --compiled: the restarted sender of impl/scale.ts's
// `restart` role, as the JavaScript program an application ships: run by node
// itself, on the library compiled to dist/, so its start-up is Node's and the
// library's, not tsx's. Started by harness/proc.ts (a `plain` spec): the spec
// is its argument, and it speaks that harness's messages over IPC.
import { Link, Messaging, LevelStore } from '../../dist/index.js'

const wallNow = () => performance.timeOrigin + performance.now()
const spec = JSON.parse(process.argv[2] ?? '{}')
const { dir, port } = spec.args
process.on('disconnect', () => process.exit(3))
process.on('message', (m) => { if (m.type === 'stop') process.exit(0) })

try {
  const importedAt = wallNow()
  const store = await LevelStore.open(dir)
  const openedAt = wallNow()
  const link = new Link()
  link.connect({ host: '127.0.0.1', port })
  const mq = new Messaging(link, { identity: 'alice', store })
  await mq.ready()
  const readyAt = wallNow()
  const rssAfterReady = process.memoryUsage.rss()
  const queuedAtReady = mq.queued('bob')
  // RSS and the JavaScript heap (V8's heapTotal) at their highest while draining.
  let peak = rssAfterReady
  let heap = 0
  const sample = () => {
    const m = process.memoryUsage()
    peak = Math.max(peak, m.rss)
    heap = Math.max(heap, m.heapTotal)
  }
  sample()
  const sampler = setInterval(sample, 50)
  const { drained, left } = await mq.drain()
  clearInterval(sampler)
  sample()
  process.send({
    type: 'result',
    result: {
      startAt: performance.timeOrigin, importedAt, openedAt, readyAt, queuedAtReady, drained, left,
      rss_mb_after_ready: rssAfterReady / 1e6,
      rss_mb_peak_drain: peak / 1e6,
      heap_mb_peak_drain: heap / 1e6,
      maxRssMb: (process.resourceUsage().maxRSS * 1024) / 1e6
    }
  })
} catch (err) {
  process.send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  process.exit(1)
}
