// The link: any number of listeners and connectors over TCP or TLS. Every live
// connection, whichever side opened it, is handed up the same way, as a
// Connection. Connectors reconnect by themselves with exponential backoff.
import net from 'node:net'
import tls from 'node:tls'
import { Connection } from './connection.ts'
import { TypedEmitter } from '../events.ts'
import { ClosedError, InvalidArgumentError, PeerCertificateError } from '../errors.ts'
import { debugLogger, type Logger } from '../logging.ts'
import { throttleRates, type ThrottleRates, type ThrottleSetting } from '../transforms/throttle.ts'

/** The oldest TLS version accepted unless the caller's `tls.minVersion` says otherwise. */
export const DEFAULT_TLS_MIN_VERSION = 'TLSv1.2'
/** Milliseconds a client of a TLS listener has to complete its handshake, unless `handshakeTimeout` says otherwise. */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10_000

export interface ReconnectOptions {
  /** Milliseconds before the first reconnect attempt after a loss. Default 200. */
  minDelay?: number
  /** Longest wait between attempts, in milliseconds. Default 5,000 (snakeMQ waited a fixed 3,000). */
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
  /** Port; 0 picks a free one (read it from the returned Listener). */
  port: number
  /**
   * Serve TLS with these `node:tls` options (key, cert, ca, requestCert, ...).
   * `minVersion` defaults to `'TLSv1.2'`. To require and verify the clients'
   * certificates (mutual TLS), pass `ca` and `requestCert: true`
   * (`rejectUnauthorized` is true unless set to false).
   */
  tls?: tls.TlsOptions
  /**
   * TLS only: milliseconds a client has to complete the TLS handshake; one that
   * does not is dropped (and reported as a link `error`). Default 10,000
   * (`tls.handshakeTimeout` is used if only that is set).
   */
  handshakeTimeout?: number
  /** Most connections open at once through this listener; more are closed on accept. Default 1,024. */
  maxConnections?: number
  /**
   * Bandwidth limits for the connections this listener accepts, in bytes per
   * second: a number limits outgoing bytes, `{ outgoing, incoming }` either side,
   * `false` none. Default: the link's `throttle`.
   */
  throttle?: ThrottleSetting
}

export interface ConnectOptions {
  /** Host to connect to. Default `127.0.0.1`. */
  host?: string
  /** Port to connect to (1 to 65535). */
  port: number
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
   * none. Default: the link's `throttle`.
   */
  throttle?: ThrottleSetting
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

/** A connector's TLS options with the default minimum version and one secure context for all its attempts. */
function withSecureContext (options: tls.ConnectionOptions): tls.ConnectionOptions {
  const withDefaults = { minVersion: DEFAULT_TLS_MIN_VERSION, ...options } satisfies tls.ConnectionOptions
  if (options.secureContext !== undefined) return withDefaults
  try {
    return { ...withDefaults, secureContext: tls.createSecureContext(withDefaults) }
  } catch (err) {
    throw new InvalidArgumentError(`connect: bad tls options: ${(err as Error).message}`, { cause: err })
  }
}

function checkPort (port: unknown, name: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`${name}: port must be an integer from 0 to 65535, got ${String(port)}`)
  }
  return port
}

/** A bound listener; `close()` stops accepting (connections already made stay up). */
export class Listener {
  constructor (
    /** The bound address. */
    readonly host: string,
    /** The bound port (the real one when 0 was asked for). */
    readonly port: number,
    private readonly server: net.Server,
    private readonly onClose: (l: Listener) => void
  ) {}

  /** Stops accepting connections (the port is released at once); idempotent. */
  async close (): Promise<void> {
    this.onClose(this)
    // The close callback would wait for every accepted connection to end; the
    // listening handle itself is released synchronously.
    if (this.server.listening) this.server.close()
  }
}

/** A connector keeps one outgoing connection up, reconnecting whenever it is lost. */
export class Connector {
  /** The live connection, if any. */
  connection: Connection | null = null
  private attempt = 0
  private timer: NodeJS.Timeout | null = null
  private pending: net.Socket | null = null
  private stopped = false
  private readonly reconnect: Required<ReconnectOptions> | false
  /** TLS: the options for every attempt, with a secure context built once (so bad keys fail in `connect()`). */
  private readonly tlsOptions: tls.ConnectionOptions | undefined
  private readonly throttle: ThrottleRates | null

  constructor (readonly host: string, readonly port: number, private readonly options: ConnectOptions, private readonly link: Link) {
    this.reconnect = options.reconnect === false ? false : { ...DEFAULT_RECONNECT, ...options.reconnect }
    if (this.reconnect !== false && (this.reconnect.minDelay < 0 || this.reconnect.maxDelay < this.reconnect.minDelay || this.reconnect.factor < 1)) {
      throw new InvalidArgumentError('reconnect: need 0 <= minDelay <= maxDelay and factor >= 1')
    }
    this.throttle = options.throttle === undefined ? link.throttle : throttleRates(options.throttle, 'connect: throttle')
    this.tlsOptions = options.tls === undefined ? undefined : withSecureContext(options.tls)
  }

  /** True once `close()` was called. */
  get closed (): boolean { return this.stopped }

  /** @internal */
  start (): void {
    if (this.stopped) return
    const { connectTimeout = 10_000 } = this.options
    const tlsOptions = this.tlsOptions
    this.link.log.debug('connecting', { host: this.host, port: this.port, attempt: this.attempt + 1, tls: tlsOptions !== undefined })
    const socket = tlsOptions !== undefined
      ? tls.connect({ servername: net.isIP(this.host) === 0 ? this.host : undefined, ...tlsOptions, host: this.host, port: this.port })
      : net.connect({ host: this.host, port: this.port })
    this.pending = socket
    const ready = tlsOptions !== undefined ? 'secureConnect' : 'connect'
    const timer = setTimeout(() => { socket.destroy(new Error(`connecting to ${this.host}:${this.port} timed out after ${connectTimeout} ms`)) }, connectTimeout)
    const onError = (err: Error): void => {
      clearTimeout(timer)
      this.pending = null
      socket.destroy()
      this.scheduleRetry(err)
    }
    socket.once('error', onError)
    socket.once(ready, () => {
      clearTimeout(timer)
      socket.off('error', onError)
      this.pending = null
      if (this.stopped) { socket.destroy(); return }
      const conn = new Connection(socket, 'outbound', { throttle: this.throttle })
      const since = Date.now()
      this.connection = conn
      void conn.closed.then(() => {
        this.connection = null
        if (this.reconnect !== false && Date.now() - since >= this.reconnect.stableAfter) this.attempt = 0
        this.scheduleRetry(conn.error ?? new ClosedError(`connection ${conn.id} to ${this.host}:${this.port} closed`), true)
      })
      this.link.adopt(conn)
    })
  }

  private scheduleRetry (error: Error, wasConnected = false): void {
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
    if (!wasConnected) this.link.connectError(this, error, delay)
    else {
      this.link.log.debug(delay === null ? 'connection lost, not reconnecting' : 'connection lost, reconnecting', { host: this.host, port: this.port, retryIn: delay })
      if (delay === null) this.stopped = true
    }
  }

  /** Stops reconnecting and closes the live connection, if any; idempotent. */
  async close (): Promise<void> {
    this.stopped = true
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
    this.pending?.destroy()
    this.pending = null
    const conn = this.connection
    if (conn !== null) { conn.close(); await conn.closed }
    this.link.forget(this)
  }
}

/**
 * Listeners and connectors, and the connections they make. Connections are
 * handed out through the `connection` event and `connections()`.
 */
export class Link extends TypedEmitter<LinkEvents> implements AsyncDisposable {
  private readonly listenerSet = new Set<Listener>()
  private readonly servers = new Set<net.Server>()
  private readonly connectors = new Set<Connector>()
  private readonly live = new Set<Connection>()
  /** The TCP sockets under TLS listeners, handshake done or not: close() drops those still in their handshake. */
  private readonly tlsSockets = new Set<net.Socket>()
  private readonly unclaimed: Connection[] = []
  private readonly waiting = new Set<() => void>()
  private isClosed = false
  readonly log: Logger
  /** @internal The link-wide bandwidth limits (LinkOptions.throttle), checked. */
  readonly throttle: ThrottleRates | null

  constructor (options: LinkOptions = {}) {
    super()
    this.log = options.logger ?? debugLogger('link')
    this.throttle = throttleRates(options.throttle, 'throttle')
  }

  /** Connections that are up now. */
  get connectionsOpen (): ReadonlySet<Connection> { return this.live }

  /** Starts listening; resolves with the Listener once bound (its `port` is the real one). */
  async listen (options: ListenOptions): Promise<Listener> {
    if (this.isClosed) throw new ClosedError('the link is closed')
    const host = options.host ?? '127.0.0.1'
    const port = checkPort(options.port, 'listen')
    const maxConnections = options.maxConnections ?? 1024
    const throttle = options.throttle === undefined ? this.throttle : throttleRates(options.throttle, 'listen: throttle')
    const handshakeTimeout = options.handshakeTimeout ?? options.tls?.handshakeTimeout ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT
    if (typeof handshakeTimeout !== 'number' || !(handshakeTimeout > 0)) {
      throw new InvalidArgumentError(`listen: handshakeTimeout must be a positive number of milliseconds, got ${String(handshakeTimeout)}`)
    }
    const onSocket = (socket: net.Socket): void => {
      socket.on('error', (err) => { this.log.debug('accepted socket failed', { error: err }) })
      if (this.isClosed) { socket.destroy(); return }
      this.adopt(new Connection(socket, 'inbound', { throttle }))
    }
    let server: net.Server
    try {
      server = options.tls !== undefined
        ? tls.createServer({ minVersion: DEFAULT_TLS_MIN_VERSION, ...options.tls, handshakeTimeout }, onSocket)
        : net.createServer(onSocket)
    } catch (err) {
      throw new InvalidArgumentError(`listen: bad tls options: ${(err as Error).message}`, { cause: err })
    }
    server.maxConnections = maxConnections
    if (options.tls !== undefined) {
      server.on('connection', (raw: net.Socket) => {
        this.tlsSockets.add(raw)
        raw.once('close', () => { this.tlsSockets.delete(raw) })
      })
    }
    server.on('drop', (d?: net.DropArgument) => {
      this.log.warn('connection refused: maxConnections reached', { remote: d === undefined ? undefined : `${d.remoteAddress}:${d.remotePort}`, maxConnections })
    })
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      // node:tls leaves the socket open after a handshake timeout: drop it here.
      socket.destroy()
      if (this.isClosed) return
      // A client certificate that failed verification closes the socket with no
      // error of its own (the error seen is "socket hang up"): say what happened.
      const refused = socket.authorizationError as Error | string | null | undefined
      const error = refused === null || refused === undefined
        ? err
        : new PeerCertificateError(refused instanceof Error ? refused.message : String(refused), { cause: err })
      this.log.warn('TLS handshake with a client failed', { remote: `${socket.remoteAddress}:${socket.remotePort}`, error })
      this.emit('error', error)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port }, () => { server.off('error', reject); resolve() })
    })
    server.on('error', (err) => {
      this.log.error('listener failed', { error: err })
      this.emit('error', err)
    })
    const addr = server.address() as net.AddressInfo
    this.servers.add(server)
    const listener = new Listener(addr.address, addr.port, server, (l) => { this.listenerSet.delete(l); this.servers.delete(server) })
    this.listenerSet.add(listener)
    this.log.info('listening', { host: addr.address, port: addr.port, tls: options.tls !== undefined })
    return listener
  }

  /** Adds a connector; it connects at once and keeps reconnecting until closed. */
  connect (options: ConnectOptions): Connector {
    if (this.isClosed) throw new ClosedError('the link is closed')
    const connector = new Connector(options.host ?? '127.0.0.1', checkPort(options.port, 'connect'), options, this)
    this.connectors.add(connector)
    connector.start()
    return connector
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

  /** @internal Hands a new connection up. */
  adopt (conn: Connection): void {
    this.live.add(conn)
    this.log.info('connection up', { conn: conn.id, direction: conn.direction, remote: `${conn.remoteAddress}:${conn.remotePort}`, tls: conn.encrypted })
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
    await Promise.all([
      ...[...this.listenerSet].map(async (l) => { await l.close() }),
      ...[...this.connectors].map(async (c) => { await c.close() })
    ])
    for (const c of this.live) c.close()
    // Clients still in their TLS handshake are not connections yet; without this they would linger until handshakeTimeout.
    for (const s of this.tlsSockets) s.destroy()
    await Promise.all([...this.live].map(async (c) => { await c.closed }))
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }
}
