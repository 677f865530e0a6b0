// `smq peer`: one Messaging peer driven by flags, printing what happens as JSON
// lines. It ends when every expectation is met (exit 0), at --timeout (exit 1 if
// something is still unmet, else 0), or on SIGINT/SIGTERM.
import { setImmediate as nextTurn } from 'node:timers/promises'
import type tls from 'node:tls'
import { type Connector, type ListenOptions, type ConnectOptions } from '../link/link.ts'
import { Link } from '../link/node-link.ts'
import { Messaging } from '../messaging/messaging.ts'
import type { Message, MessagingOptions } from '../messaging/types.ts'
import type { QueueStore } from '../store/types.ts'
import { ClosedError, MessageDroppedError } from '../errors.ts'
import { UsageError, formatEndpoint, type PeerConfig, type TlsFiles } from './args.ts'
import type { EventLog } from './events.ts'
import { describeData, generatedPayload } from './payload.ts'

/** How long the final flush and close may take before the process exits anyway. */
const SHUTDOWN_LIMIT = 5000
/** setTimeout's ceiling; a longer --timeout would fire at once. */
const MAX_TIMER = 2 ** 31 - 1
/** A connector that keeps failing is reported on stderr at its first failure, then at most this often (ms). */
const NOTICE_INTERVAL = 10_000
/** How often --progress prints (ms). */
const PROGRESS_INTERVAL = 1000

/** What the peer knows of a connector that has not connected since it last failed. */
interface ConnectTrouble {
  attempts: number
  /** performance.now() of the first failure. */
  since: number
  /** performance.now() of the last note on stderr. */
  noted: number
  /** The last failure's text. */
  reason: string
}

function errorText (err: unknown): string {
  // OpenSSL's messages end with a newline.
  if (err instanceof Error) return `${err.name}: ${err.message.trim()}`
  return String(err)
}

/** Why a connection attempt failed. A host with several addresses ('localhost') fails with an AggregateError whose own message is empty. */
function failureText (err: Error): string {
  const own = err.message.trim()
  if (own !== '') return own
  if (err instanceof AggregateError) return err.errors.map((e: unknown) => e instanceof Error ? e.message.trim() : String(e)).join('; ')
  return err.name
}

const seconds = (ms: number): string => (ms / 1000).toFixed(1)

/** The store is loaded on demand so that peers without --store never load LevelDB. */
async function openStore (directory: string): Promise<QueueStore> {
  let level: typeof import('../store/level-node.ts')
  try {
    level = await import('../store/level-node.ts')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err
    throw new UsageError(`--store is not available: ${(err as Error).message}`)
  }
  return await level.LevelStore.open(directory)
}

function tlsServerOptions (files: TlsFiles): tls.TlsOptions {
  const verify = files.ca !== undefined
  return { ...files, minVersion: 'TLSv1.2', requestCert: verify, rejectUnauthorized: verify }
}

function tlsClientOptions (files: TlsFiles): tls.ConnectionOptions {
  const verify = files.ca !== undefined
  // The chain is verified against --tls-ca; host names are not checked, as in
  // snakeMQ: peers are named by identity, not by DNS.
  return { ...files, minVersion: 'TLSv1.2', rejectUnauthorized: verify, checkServerIdentity: () => undefined }
}

class Peer {
  private readonly link: Link
  private readonly mq: Messaging
  private received = 0
  private sent = 0
  private delivered = 0
  /** Messages this peer queued (its own and echoes) and still has to see delivered. */
  private readonly outstanding = new Set<string>()
  /** Deliveries reported while a send() was still settling, so its UUID was not known yet. */
  private readonly deliveredEarly = new Set<string>()
  private sendsInFlight = 0
  private dropped = 0
  private sendingDone: boolean
  private hasGoal: boolean
  private finishing = false
  private timer: NodeJS.Timeout | null = null
  private progressTimer: NodeJS.Timeout | null = null
  private readonly trouble = new Map<Connector, ConnectTrouble>()
  private resolveExit!: (code: number) => void
  readonly exit = new Promise<number>((resolve) => { this.resolveExit = resolve })

  /** `startedAt` is the performance.now() the done line's elapsed time counts from. */
  constructor (private readonly config: PeerConfig, private readonly log: EventLog, store: QueueStore | undefined, private readonly startedAt: number) {
    this.link = new Link(config.throttle !== null ? { throttle: config.throttle } : {})
    const options: MessagingOptions = { identity: config.ident }
    if (store !== undefined) options.store = store
    if (config.tlsIdentity) options.bindIdentityToCertificate = true
    if (config.keepalive !== null) options.keepalive = { interval: config.keepalive * 1000, wait: config.keepalive * 1000 }
    this.mq = new Messaging(this.link, options)
    this.sendingDone = config.sendTo === null
    this.hasGoal = config.expect > 0 || config.sendTo !== null
    this.watch()
  }

  private watch (): void {
    const { mq, log } = this
    mq.on('connect', ({ ident, connection }) => {
      for (const [c, t] of this.trouble) {
        if (c.connection !== connection) continue
        this.trouble.delete(c)
        log.note(`connected to ${formatEndpoint(c)} after ${t.attempts} failed attempt${t.attempts === 1 ? '' : 's'} in ${seconds(performance.now() - t.since)} s`)
      }
      log.write({ event: 'connect', ident })
    })
    mq.on('disconnect', ({ ident }) => { log.write({ event: 'disconnect', ident }) })
    mq.on('delivered', ({ to, uuid }) => {
      this.delivered++
      if (log.prints('delivered')) log.write({ event: 'delivered', to, uuid })
      if (!this.outstanding.delete(uuid) && this.sendsInFlight > 0) this.deliveredEarly.add(uuid)
      this.check()
    })
    mq.on('drop', ({ to, uuid }) => {
      log.write({ event: 'drop', to, uuid })
      if (this.finishing) return
      // Whatever this peer drops (its own message, an echo, one from the store) can never be delivered now.
      this.outstanding.delete(uuid)
      this.dropped++
    })
    mq.on('error', ({ error }) => { log.write({ event: 'error', error: errorText(error) }) })
    this.link.on('error', (error) => { log.write({ event: 'error', error: errorText(error) }) })
    this.link.on('connect-error', ({ connector, error, delay }) => { this.connectFailed(connector, error, delay) })
  }

  /**
   * A connector retries for ever, every few seconds. It says so on stderr at the
   * first failure, when the reason changes and then every NOTICE_INTERVAL, with
   * the number of attempts; stdout gets an error event per distinct reason.
   */
  private connectFailed (connector: Connector, error: Error, delay: number | null): void {
    const now = performance.now()
    const reason = failureText(error)
    const at = formatEndpoint(connector)
    let t = this.trouble.get(connector)
    if (t === undefined) {
      t = { attempts: 0, since: now, noted: now, reason: '' }
      this.trouble.set(connector, t)
    }
    t.attempts++
    const changed = t.reason !== reason
    t.reason = reason
    const next = delay === null ? 'giving up' : `retrying in ${seconds(delay)} s`
    if (t.attempts === 1 || changed || now - t.noted >= NOTICE_INTERVAL) {
      t.noted = now
      this.log.note(t.attempts === 1
        ? `cannot connect to ${at}: ${reason}; ${next}`
        : `still cannot connect to ${at} after ${t.attempts} attempts in ${seconds(now - t.since)} s: ${reason}; ${next}`)
    }
    if (changed && this.log.prints('error')) {
      const text = `connecting to ${at} failed: ${reason}`
      this.log.write({ event: 'error', error: delay === null ? text : `${text} (retrying)` })
    }
  }

  /** --progress: a line on stderr every second with the counts and the rate over that second. */
  private startProgress (): void {
    let lastAt = performance.now()
    let lastCount = this.delivered + this.received
    this.progressTimer = setInterval(() => {
      const now = performance.now()
      const count = this.delivered + this.received
      const rate = Math.round((count - lastCount) * 1000 / (now - lastAt))
      lastAt = now
      lastCount = count
      this.log.note(`progress ${seconds(now - this.startedAt)} s: sent ${this.sent}, delivered ${this.delivered}, received ${this.received}, ` +
        `${rate} msg/s, queued ${this.mq.queued()}`)
    }, PROGRESS_INTERVAL)
  }

  async run (): Promise<void> {
    const { config, link, mq, log } = this
    const listening: string[] = []
    for (const endpoint of config.listen) {
      const options: ListenOptions = { host: endpoint.host, port: endpoint.port }
      if (config.tls !== null) options.tls = tlsServerOptions(config.tls)
      const listener = await link.listen(options)
      listening.push(formatEndpoint(listener))
    }
    await mq.ready()
    // Messages loaded from --store are messages this peer has to send.
    if (mq.queued() > 0) this.hasGoal = true
    log.write({ event: 'start', ident: config.ident, pid: process.pid, listen: listening, connect: config.connect.map(formatEndpoint) })
    if (config.progress) this.startProgress()
    for (const endpoint of config.connect) {
      const options: ConnectOptions = { host: endpoint.host, port: endpoint.port }
      if (config.tls !== null) options.tls = tlsClientOptions(config.tls)
      link.connect(options)
    }
    if (config.timeout !== null) {
      this.timer = setTimeout(() => { void this.finish('timeout') }, Math.min(config.timeout * 1000, MAX_TIMER))
    }
    this.receive().catch((err: unknown) => { void this.fail(err) })
    if (config.sendTo !== null) await this.sendAll(config.sendTo)
    this.check()
  }

  private async sendAll (to: string): Promise<void> {
    const config = this.config
    const payload = config.payload
    const options = { ttl: config.ttl, persistent: config.persistent }
    const started = performance.now()
    let queued = 0
    for (let i = 0; i < config.count && !this.finishing; i++) {
      const data = payload.kind === 'text' ? payload.data : generatedPayload(i, payload.size)
      if (await this.send(to, data, options)) queued++
    }
    if (this.finishing) return
    this.log.write({ event: 'queued', to, count: queued, seconds: Number(((performance.now() - started) / 1000).toFixed(6)) })
    this.sendingDone = true
  }

  /** Queues one message and remembers to wait for its delivery; false if it was dropped at once. */
  private async send (to: string, data: Uint8Array, options: { ttl: number | null, persistent: boolean }): Promise<boolean> {
    this.sendsInFlight++
    try {
      const { uuid } = await this.mq.send(to, data, options)
      this.sent++
      if (!this.deliveredEarly.delete(uuid)) this.outstanding.add(uuid)
      return true
    } catch (err) {
      // TTL 0 and the peer not connected: the drop event has already been printed and counted.
      if (err instanceof MessageDroppedError) return false
      if (this.finishing && err instanceof ClosedError) return false
      throw err
    } finally {
      if (--this.sendsInFlight === 0) this.deliveredEarly.clear()
    }
  }

  private async receive (): Promise<void> {
    for await (const msg of this.mq.messages({ ack: 'manual' })) {
      if (this.finishing) break
      this.received++
      if (this.log.prints('recv')) {
        this.log.write({ event: 'recv', from: msg.from, uuid: msg.uuid, ttl: msg.ttl, flags: msg.flags, len: msg.data.byteLength, ...describeData(msg.data) })
      }
      if (this.config.echo) await this.echo(msg)
      // Acknowledged only once the echo is queued: were this peer to stop here, the sender would send it again.
      msg.ack()
      this.check()
    }
  }

  private async echo (msg: Message): Promise<void> {
    await this.send(msg.from, msg.data, { ttl: msg.ttl, persistent: msg.persistent })
  }

  private unmet (): string[] {
    const unmet: string[] = []
    if (this.received < this.config.expect) unmet.push(`received ${this.received} of ${this.config.expect}`)
    if (!this.sendingDone) unmet.push('still queueing')
    const waiting = Math.max(this.outstanding.size, this.mq.queued())
    if (waiting > 0) unmet.push(`${waiting} not delivered`)
    if (this.dropped > 0) unmet.push(`${this.dropped} dropped`)
    return unmet
  }

  private check (): void {
    if (this.finishing || !this.hasGoal) return
    if (this.received >= this.config.expect && this.sendingDone && this.outstanding.size === 0 && this.dropped === 0 && this.mq.queued() === 0) {
      void this.finish('complete')
    }
  }

  /** A failure the peer cannot go on after (a store write failed, ...). */
  async fail (err: unknown): Promise<void> {
    this.log.write({ event: 'error', error: errorText(err) })
    await this.finish(`error: ${errorText(err)}`, false)
  }

  /** Prints done, lets the last acknowledgements out, closes everything and settles `exit`. */
  async finish (why: string, forceOk?: boolean): Promise<void> {
    if (this.finishing) return
    this.finishing = true
    if (this.timer !== null) clearTimeout(this.timer)
    if (this.progressTimer !== null) clearInterval(this.progressTimer)
    const now = performance.now()
    for (const [c, t] of this.trouble) {
      this.log.note(`could not connect to ${formatEndpoint(c)} in ${t.attempts} attempt${t.attempts === 1 ? '' : 's'} over ${seconds(now - t.since)} s: ${t.reason}`)
    }
    const unmet = this.unmet()
    const ok = forceOk ?? unmet.length === 0
    let reason: string
    if (why === 'complete') reason = 'all expectations met'
    else if (unmet.length > 0) reason = `${why}: ${unmet.join(', ')}`
    else reason = `${why}: ${this.hasGoal ? 'all expectations met' : 'no expectations'}`
    this.log.end({ event: 'done', ok, ...doneCounts(this.received, this.sent, this.delivered, now - this.startedAt), reason })
    const flushed = this.log.flush()
    let limit: NodeJS.Timeout | undefined
    await Promise.race([
      this.shutdown().catch(() => {}),
      new Promise<void>((resolve) => { limit = setTimeout(resolve, SHUTDOWN_LIMIT) })
    ])
    clearTimeout(limit)
    await flushed
    this.resolveExit(ok ? 0 : 1)
  }

  private async shutdown (): Promise<void> {
    // Messaging.close() drops connections at once, and with them acknowledgements
    // queued in this turn: the remote would never see its last message delivered.
    // Two turns let the sessions write them; end() then flushes and waits for the remote's FIN.
    await nextTurn()
    await nextTurn()
    await Promise.all([...this.link.connectionsOpen].map(async (c) => { await c.end() }))
    await this.mq.close()
  }
}

/** The counts, elapsed seconds and rate of a done line. */
function doneCounts (received: number, sent: number, delivered: number, ms: number): { received: number, sent: number, delivered: number, elapsed: number, rate: number } {
  return { received, sent, delivered, elapsed: Number((ms / 1000).toFixed(3)), rate: ms > 0 ? Math.round((received + delivered) * 1000 / ms) : 0 }
}

/** Runs `smq peer` with a checked config; resolves with the exit code. */
export async function runPeer (config: PeerConfig, log: EventLog): Promise<number> {
  const startedAt = performance.now()
  let store: QueueStore | undefined
  let peer: Peer
  try {
    if (config.store !== null) store = await openStore(config.store)
    peer = new Peer(config, log, store, startedAt)
  } catch (err) {
    await store?.close().catch(() => {})
    if (err instanceof UsageError) throw err
    log.write({ event: 'error', error: errorText(err) })
    log.end({ event: 'done', ok: false, ...doneCounts(0, 0, 0, performance.now() - startedAt), reason: `could not start: ${errorText(err)}` })
    await log.flush()
    return 1
  }
  const onSignal = (signal: NodeJS.Signals): void => { void peer.finish(`interrupted by ${signal}`) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await peer.run()
  } catch (err) {
    await peer.fail(err)
  }
  const code = await peer.exit
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
  return code
}
