// The link: any number of listeners and connectors, each on a transport picked
// from the link's table (TCP, TLS, WebSocket). Every live connection, whichever
// side opened it, is handed up the same way, as a Connection: the transport's
// channel seen through the connection's transforms. Connectors reconnect by
// themselves with exponential backoff. Nothing here knows about messages.
//
// LinkBase takes its default transports from its class: node-link.ts makes the
// Link of Node (TCP, TLS, WebSocket), browser-link.ts the Link of a browser
// (WebSocket connectors), so that neither imports the other's transports.
import type tls from 'node:tls'
import { Connection } from './connection.ts'
import type { Channel } from './channel.ts'
import { transformChannel, type ConnectionTransform } from './duplex.ts'
import type { Transport, TransportServer } from './transport.ts'
import { webSocketUrl } from './ws-messages.ts'
import { TypedEmitter } from '../events.ts'
import { ClosedError, HandshakeRefusedError, InvalidArgumentError, RedundantConnectionError } from '../errors.ts'
import { debugLogger, type Logger } from '../logging.ts'
import { throttle, throttleRates, type ThrottleRates, type ThrottleSetting } from '../transforms/throttle.ts'

export interface ReconnectOptions {
  /**
   * The first wait after a loss, in milliseconds, before jitter: every wait is
   * drawn from the upper half of its ceiling (`minDelay * factor^attempt`, at
   * most `maxDelay`), so the first is 100 to 200 ms by default. Default 200.
   */
  minDelay?: number
  /** The ceiling of the longest wait between attempts, in milliseconds (each wait is drawn from its upper half). Default 5,000 (snakeMQ waited a fixed 3,000). */
  maxDelay?: number
  /** Each failed attempt multiplies the delay by this. Default 2. */
  factor?: number
  /**
   * A connection that stayed up this many milliseconds was a good one: the next
   * delay starts again from `minDelay`. Default 1,000.
   */
  stableAfter?: number
}

export interface ListenOptions {
  /** Address to bind. Default `127.0.0.1`; use `0.0.0.0` or `::` for all interfaces. */
  host?: string
  /** Port; 0 picks a free one (read it from the returned Listener). Required, except with `server`. */
  port?: number
  /**
   * Serve TLS with these `node:tls` options (key, cert, ca, requestCert, ...).
   * `minVersion` defaults to `'TLSv1.2'`. To require and verify the clients'
   * certificates (mutual TLS), pass `ca` and `requestCert: true`
   * (`rejectUnauthorized` is true unless set to false).
   */
  tls?: tls.TlsOptions
  /**
   * TLS, and WebSocket on the listener's own server: milliseconds a client has
   * from accept to complete the TLS handshake and (WebSocket) its HTTP upgrade;
   * one that does not is dropped (and reported as a link `error`). Default 10,000
   * (`tls.handshakeTimeout` is used if only that is set).
   */
  handshakeTimeout?: number
  /** Most connections open at once through this listener; more are closed on accept. Default 1,024. */
  maxConnections?: number
  /**
   * Most connections open at once through this listener from one remote address;
   * more from it are closed on accept (logged), so that one host cannot take
   * every slot of `maxConnections`. Peers behind one NAT share an address: raise
   * it for them. Default 128.
   */
  maxConnectionsPerAddress?: number
  /**
   * Bandwidth limits for the connections this listener accepts, in bytes per
   * second: a number limits outgoing bytes, `{ outgoing, incoming }` either side,
   * `false` none. Default: the link's `throttle`. Shorthand for a `throttle()`
   * transform after the others.
   */
  throttle?: ThrottleSetting
  /**
   * Transforms for the connections this listener accepts, the first one next to
   * the socket (see ConnectionTransform). Default: the link's `transforms`.
   */
  transforms?: readonly ConnectionTransform[]
  /**
   * Serve WebSocket instead of raw TCP (TLS too when `tls` is given: `wss:`):
   * `true`, or `{ path, maxPayload }`: `path` to accept upgrades on that path
   * only (default: any path), `maxPayload` the largest WebSocket message taken,
   * in bytes (default 4 MiB, at least 1 MiB; peers of this library send at most
   * 1 MiB per message, a larger packet spans messages). The protocol runs
   * unchanged in binary WebSocket messages; a text message closes the
   * connection with ProtocolError, a message above `maxPayload` with
   * WebSocketMessageTooLargeError. `maxConnections` counts the WebSocket
   * connections (an upgrade beyond is answered 503), and separately the TCP
   * connections that have not upgraded yet (`maxConnectionsPerAddress` of them
   * from one address; more are closed on accept); other HTTP requests are answered 426.
   */
  websocket?: boolean | { path?: string, maxPayload?: number }
  /**
   * WebSocket: accept upgrades on this existing `http.Server` (or
   * `https.Server`, for `wss:`) instead of binding `host`/`port`; the server's
   * other requests stay its own, and closing the listener leaves the server
   * open. With `websocket: { path }`, upgrades on other paths are left to the
   * server's other `upgrade` handlers.
   */
  server?: import('node:http').Server
}

export interface ConnectOptions {
  /** Host to connect to. Default `127.0.0.1`. */
  host?: string
  /** Port to connect to (1 to 65535). */
  port?: number
  /**
   * Connect with TLS using these `node:tls` options (ca, cert, key, servername,
   * ...). `minVersion` defaults to `'TLSv1.2'`. The listener's certificate is
   * verified against `ca` (or the system's CAs), including its host name: give the
   * listener a certificate naming the host (or IP address) connected to, or set
   * `servername` / `checkServerIdentity`. Bad options throw InvalidArgumentError
   * from `connect()`.
   */
  tls?: tls.ConnectionOptions
  /**
   * Reconnect timing; `false` to connect once only. Default: reconnect for ever,
   * after 200 ms at first, doubling up to 5 s (see ReconnectOptions).
   */
  reconnect?: ReconnectOptions | false
  /** Milliseconds a connection attempt (TCP and TLS handshake) may take. Default 10,000. */
  connectTimeout?: number
  /**
   * Bandwidth limits for this connector's connections, in bytes per second: a
   * number limits outgoing bytes, `{ outgoing, incoming }` either side, `false`
   * none. Default: the link's `throttle`. Shorthand for a `throttle()` transform
   * after the others.
   */
  throttle?: ThrottleSetting
  /** Transforms for this connector's connections, the first one next to the socket. Default: the link's `transforms`. */
  transforms?: readonly ConnectionTransform[]
  /**
   * Connect over WebSocket to this `ws://` or `wss://` URL instead of
   * `host`/`port`; `wss:` takes the `tls` options (`ca`, `cert`, `key`, ...),
   * and checks the listener's certificate against the URL's host name. In a
   * browser this is the only way to connect.
   */
  url?: string
}

export interface LinkOptions {
  /** Where log lines go; default the `debug` namespace `snakemq:link`. */
  logger?: Logger
  /**
   * Bandwidth limits for every connection of this link, in bytes per second, each
   * connection limited on its own: a number limits outgoing bytes (like the CLI's
   * `--throttle`), `{ outgoing, incoming }` either side. A listener's or
   * connector's own `throttle` replaces it. Default: no limit.
   */
  throttle?: ThrottleSetting
  /**
   * Transforms every connection of this link goes through, in order, the first
   * one next to the socket: `(duplex, context) => duplex` over byte chunks
   * (compression, encryption, a metrics tap). A listener's or connector's own
   * `transforms` replace these. Both ends of a connection must use matching
   * transforms. Default: none (and then none is paid for).
   */
  transforms?: readonly ConnectionTransform[]
  /** The transports listeners and connectors are picked from, first match first. Default: TCP, TLS and WebSocket. */
  transports?: readonly Transport[]
}

export interface LinkEvents {
  /** A connection is up (TLS: after its handshake). */
  connection: [Connection]
  /** A connection closed; `connection.error` says why, if it was an error. */
  close: [Connection]
  /** A connector's attempt failed; it tries again after `delay` ms (null: it gives up). */
  'connect-error': [{ connector: Connector, error: Error, delay: number | null }]
  /** A listener or connection failed. Only emitted if listened to; otherwise logged. */
  error: [Error]
}

const DEFAULT_RECONNECT: Required<ReconnectOptions> = { minDelay: 200, maxDelay: 5000, factor: 2, stableAfter: 1000 }

/** Defaults of ListenOptions. */
export const listenDefaults = { maxConnections: 1024, maxConnectionsPerAddress: 128 } as const

function positiveCount (value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${typeof value === 'number' ? value : typeof value}`)
  return value
}

function checkPort (port: unknown, name: 'listen' | 'connect'): number {
  // Port 0 means "any free port" to listen on; there is nothing to connect to there.
  const min = name === 'listen' ? 0 : 1
  if (typeof port !== 'number' || !Number.isInteger(port) || port < min || port > 65535) {
    throw new InvalidArgumentError(`${name}: port must be an integer from ${min} to 65535, got ${typeof port === 'string' ? JSON.stringify(port) : String(port)}`)
  }
  return port
}

/** Refuses anything but an options object, naming what was passed (`listen(4000)` is a common slip). */
function checkOptionsObject (options: unknown, name: 'listen' | 'connect'): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidArgumentError(`${name} takes an options object (${name}({ port${name === 'connect' ? ', host' : ''} })), got ${typeof options === 'string' ? JSON.stringify(options) : String(options)}`)
  }
}

/** The host and port of a WebSocket URL, for logs and the Connector's fields. */
function urlAddress (url: unknown): { host: string, port: number } {
  const parsed = webSocketUrl(url)
  const port = parsed.port !== '' ? Number(parsed.port) : parsed.protocol === 'wss:' ? 443 : 80
  return { host: parsed.hostname, port }
}

function checkTransforms (transforms: unknown, name: string): readonly ConnectionTransform[] | undefined {
  if (transforms === undefined) return undefined
  if (!Array.isArray(transforms) || !transforms.every((t) => typeof t === 'function')) {
    throw new InvalidArgumentError(`${name}: transforms must be an array of functions (duplex, context) => duplex`)
  }
  return transforms as readonly ConnectionTransform[]
}

/** How a listener's or connector's connections are made: their transforms (their own or the link's, then the throttle shorthand) and limits. */
interface Stack {
  readonly transforms: readonly ConnectionTransform[]
  readonly throttle: ThrottleRates | null
}

function stack (own: readonly ConnectionTransform[] | undefined, fallback: readonly ConnectionTransform[], rates: ThrottleRates | null): Stack {
  const transforms = own ?? fallback
  return { transforms: rates === null ? transforms : [...transforms, throttle(rates)], throttle: rates }
}

/** A bound listener; `close()` stops accepting (connections already made stay up). */
export class Listener {
  /** The bound address. */
  readonly host: string
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number

  constructor (
    /** The transport it listens on: `'tcp'`, `'tls'`, `'ws'`. */
    readonly transport: string,
    private readonly server: TransportServer,
    private readonly onClose: (l: Listener) => void
  ) {
    this.host = server.host
    this.port = server.port
  }

  /** Stops accepting connections (the port is released at once); idempotent. */
  async close (): Promise<void> {
    this.onClose(this)
    this.server.close()
  }

  /** @internal Part of closing the link: drops clients still being set up. */
  abort (): void { this.server.abort() }
}

/** A connector keeps one outgoing connection up, reconnecting whenever it is lost. */
export class Connector {
  /** The live connection, if any. */
  connection: Connection | null = null
  private attempt = 0
  private timer: ReturnType<typeof setTimeout> | null = null
  private pending: AbortController | null = null
  private stopped = false
  private readonly reconnect: Required<ReconnectOptions> | false
  private readonly transportOptions: Parameters<Transport['connect']>[0]
  private readonly stack: Stack

  constructor (
    readonly host: string,
    readonly port: number,
    private readonly transport: Transport,
    private readonly options: ConnectOptions,
    private readonly link: LinkBase
  ) {
    this.reconnect = options.reconnect === false ? false : { ...DEFAULT_RECONNECT, ...options.reconnect }
    if (this.reconnect !== false && (this.reconnect.minDelay < 0 || this.reconnect.maxDelay < this.reconnect.minDelay || this.reconnect.factor < 1)) {
      throw new InvalidArgumentError('reconnect: need 0 <= minDelay <= maxDelay and factor >= 1')
    }
    const rates = options.throttle === undefined ? link.throttle : throttleRates(options.throttle, 'connect: throttle')
    this.stack = stack(checkTransforms(options.transforms, 'connect'), link.transforms, rates)
    const base = { ...(options as unknown as Record<string, unknown>), host, port, connectTimeout: options.connectTimeout ?? 10_000 }
    this.transportOptions = transport.prepare?.(base) ?? base
  }

  /** True once `close()` was called. */
  get closed (): boolean { return this.stopped }

  /** @internal */
  start (): void {
    if (this.stopped) return
    this.link.log.debug('connecting', { host: this.host, port: this.port, attempt: this.attempt + 1, transport: this.transport.name })
    const attempt = new AbortController()
    this.pending = attempt
    this.transport.connect(this.transportOptions, attempt.signal).then((channel) => {
      this.pending = null
      if (this.stopped) { channel.close(); return }
      const conn = this.link.adopt(channel, this.stack)
      const since = Date.now()
      this.connection = conn
      void conn.closed.then(() => {
        this.connection = null
        const error = conn.error
        // Refused in its handshake (by either side): a failed attempt, not a lost connection.
        if (error instanceof HandshakeRefusedError) { this.scheduleRetry(error, error instanceof RedundantConnectionError); return }
        if (this.reconnect !== false && Date.now() - since >= this.reconnect.stableAfter) this.attempt = 0
        this.scheduleRetry(error ?? new ClosedError(`connection ${conn.id} to ${this.host}:${this.port} closed`), true)
      })
    }, (err: unknown) => {
      this.pending = null
      this.scheduleRetry(err instanceof Error ? err : new Error(String(err)))
    })
  }

  /** `quiet`: a connection that was up, or closed for an expected reason: not a connect-error. */
  private scheduleRetry (error: Error, quiet = false): void {
    if (this.stopped) return
    let delay: number | null = null
    if (this.reconnect !== false) {
      const { minDelay, maxDelay, factor } = this.reconnect
      const ceiling = Math.min(maxDelay, minDelay * factor ** this.attempt)
      // Jitter spreads a crowd of reconnecting peers over half the interval.
      delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2)
      this.attempt++
      this.timer = setTimeout(() => { this.timer = null; this.start() }, delay)
    }
    if (!quiet) this.link.connectError(this, error, delay)
    else {
      this.link.log.debug(delay === null ? 'connection lost, not reconnecting' : 'connection lost, reconnecting', { host: this.host, port: this.port, retryIn: delay })
      if (delay === null) this.stopped = true
    }
  }

  /** Stops reconnecting and closes the live connection, if any; idempotent. */
  async close (): Promise<void> {
    this.stopped = true
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
    this.pending?.abort()
    this.pending = null
    const conn = this.connection
    if (conn !== null) { conn.close(); await conn.closed }
    this.link.forget(this)
  }
}

/**
 * Listeners and connectors, and the connections they make. Connections are
 * handed out through the `connection` event and `connections()`. What both
 * runtimes' `Link` share; each picks its transports from a table of its own.
 */
export class LinkBase extends TypedEmitter<LinkEvents> implements AsyncDisposable {
  /** The transports used when LinkOptions.transports is not given: none here, the runtime's in each Link. */
  protected static readonly defaultTransports: readonly Transport[] = []

  private readonly listenerSet = new Set<Listener>()
  private readonly connectors = new Set<Connector>()
  private readonly live = new Set<Connection>()
  private readonly unclaimed: Connection[] = []
  private readonly waiting = new Set<() => void>()
  private isClosed = false
  readonly log: Logger
  /** @internal The link-wide bandwidth limits (LinkOptions.throttle), checked. */
  readonly throttle: ThrottleRates | null
  /** @internal The link-wide transforms. */
  readonly transforms: readonly ConnectionTransform[]
  private readonly transports: readonly Transport[]
  /** What reads this link's connections (a Messaging): only one may. */
  private owner: object | null = null

  constructor (options: LinkOptions = {}) {
    super()
    this.log = options.logger ?? debugLogger('link')
    this.throttle = throttleRates(options.throttle, 'throttle')
    this.transforms = checkTransforms(options.transforms, 'Link') ?? []
    this.transports = options.transports ?? (this.constructor as typeof LinkBase).defaultTransports
  }

  /** Connections that are up now. */
  get connectionsOpen (): ReadonlySet<Connection> { return this.live }

  /** True once close() was called. */
  get closed (): boolean { return this.isClosed }

  /** Starts listening; resolves with the Listener once bound (its `port` is the real one). */
  async listen (options: ListenOptions): Promise<Listener> {
    checkOptionsObject(options, 'listen')
    if (this.isClosed) throw new ClosedError('the link is closed')
    const transport = this.pick(options, 'listens', 'listen')
    const host = options.host ?? '127.0.0.1'
    const port = options.server !== undefined && options.port === undefined ? 0 : checkPort(options.port, 'listen')
    const maxConnections = positiveCount(options.maxConnections, 'listen: maxConnections', listenDefaults.maxConnections)
    const perAddress = positiveCount(options.maxConnectionsPerAddress, 'listen: maxConnectionsPerAddress', listenDefaults.maxConnectionsPerAddress)
    const byAddress = new Map<string, number>()
    const rates = options.throttle === undefined ? this.throttle : throttleRates(options.throttle, 'listen: throttle')
    const made = stack(checkTransforms(options.transforms, 'listen'), this.transforms, rates)
    const server = await transport.listen({ ...(options as unknown as Record<string, unknown>), host, port, maxConnections }, (channel) => {
      if (this.isClosed) { channel.close(); return }
      // Refused by the transport: only a Messaging can tell the remote why; without one it is just closed.
      if (channel.refusal !== undefined && this.owner === null) { channel.close(channel.refusal); return }
      const address = channel.remoteAddress
      const n = byAddress.get(address) ?? 0
      if (n >= perAddress) {
        this.log.warn('connection refused: maxConnectionsPerAddress reached', { remote: `${address}:${channel.remotePort}`, maxConnectionsPerAddress: perAddress })
        channel.close()
        return
      }
      byAddress.set(address, n + 1)
      void channel.closed.then(() => {
        const left = (byAddress.get(address) ?? 1) - 1
        if (left === 0) byAddress.delete(address)
        else byAddress.set(address, left)
      })
      this.adopt(channel, made)
    }, { log: this.log, error: (err) => { if (!this.isClosed) this.emit('error', err) } })
    const listener = new Listener(transport.name, server, (l) => { this.listenerSet.delete(l) })
    this.listenerSet.add(listener)
    this.log.info('listening', { host: server.host, port: server.port, transport: transport.name })
    return listener
  }

  /** Adds a connector; it connects at once and keeps reconnecting until closed. */
  connect (options: ConnectOptions): Connector {
    checkOptionsObject(options, 'connect')
    if (this.isClosed) throw new ClosedError('the link is closed')
    const transport = this.pick(options, 'connects', 'connect')
    const { host, port } = options.url === undefined
      ? { host: options.host ?? '127.0.0.1', port: checkPort(options.port, 'connect') }
      : urlAddress(options.url)
    const connector = new Connector(host, port, transport, options, this)
    this.connectors.add(connector)
    connector.start()
    return connector
  }

  private pick (options: ListenOptions | ConnectOptions, test: 'listens' | 'connects', what: string): Transport {
    const t = this.transports.find((candidate) => candidate[test](options as unknown as Readonly<Record<string, unknown>>))
    if (t === undefined) throw new InvalidArgumentError(`${what}: no transport of this link takes these options (${this.transports.map((x) => x.name).join(', ')})`)
    return t
  }

  /**
   * Every connection, as it comes up. Connections that came up before anyone
   * asked are handed to the first consumer. Ends when the link is closed.
   */
  async * connections (): AsyncGenerator<Connection> {
    while (true) {
      const next = this.unclaimed.shift()
      if (next !== undefined) {
        if (next.isOpen) yield next
        continue
      }
      if (this.isClosed) return
      await new Promise<void>((resolve) => this.waiting.add(resolve))
    }
  }

  /** @internal Wraps a transport's new channel in its transforms and hands it up. */
  adopt (channel: Channel, how: Stack = { transforms: [], throttle: null }): Connection {
    const conn = new Connection(transformChannel(channel, how.transforms), how.throttle)
    this.live.add(conn)
    this.log.info('connection up', { conn: conn.id, direction: conn.direction, remote: `${conn.remoteAddress}:${conn.remotePort}`, transport: conn.transport })
    void conn.closed.then(() => {
      this.live.delete(conn)
      const i = this.unclaimed.indexOf(conn)
      if (i >= 0) this.unclaimed.splice(i, 1)
      this.log.info('connection closed', { conn: conn.id, error: conn.error })
      this.emit('close', conn)
    })
    if (this.listenerCount('connection') > 0) {
      this.emit('connection', conn)
    } else {
      this.unclaimed.push(conn)
      for (const w of this.waiting) w()
      this.waiting.clear()
    }
    return conn
  }

  /**
   * @internal Makes `owner` the one reader of this link's connections (a
   * Messaging). Throws InvalidArgumentError if another has it, or the link is closed.
   */
  claim (owner: object): void {
    if (this.isClosed) throw new InvalidArgumentError('this Link is closed: give the Messaging a new Link')
    if (this.owner !== null && this.owner !== owner) throw new InvalidArgumentError('this Link already has a Messaging: each Messaging needs a Link of its own')
    this.owner = owner
  }

  /** @internal Connections that came up before anyone listened for them; the caller takes them over. */
  takeUnclaimed (): Connection[] {
    const taken = this.unclaimed.filter((c) => c.isOpen)
    this.unclaimed.length = 0
    return taken
  }

  /** @internal */
  connectError (connector: Connector, error: Error, delay: number | null): void {
    this.log.debug('connect failed', { host: connector.host, port: connector.port, error, retryIn: delay })
    this.emit('connect-error', { connector, error, delay })
  }

  /** @internal */
  forget (connector: Connector): void { this.connectors.delete(connector) }

  /** Closes every listener, connector and connection; idempotent. */
  async close (): Promise<void> {
    if (this.isClosed) {
      await Promise.all([...this.live].map(async (c) => { await c.closed }))
      return
    }
    this.isClosed = true
    for (const w of this.waiting) w()
    this.waiting.clear()
    const listeners = [...this.listenerSet]
    await Promise.all([
      ...listeners.map(async (l) => { await l.close() }),
      ...[...this.connectors].map(async (c) => { await c.close() })
    ])
    for (const c of this.live) c.close()
    // Clients still in their TLS handshake are not connections yet; without this they would linger until handshakeTimeout.
    for (const l of listeners) l.abort()
    await Promise.all([...this.live].map(async (c) => { await c.closed }))
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }
}
