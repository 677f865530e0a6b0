// The WebSocket transports on Node (the `ws` package): `ws:` and `wss:`. A
// listener serves upgrades on an HTTP(S) server of its own, or on one the
// application shares with it; a connector opens a URL. Each WebSocket is a
// WsChannel, and the protocol runs over it unchanged.
import http from 'node:http'
import https from 'node:https'
import type net from 'node:net'
import type tls from 'node:tls'
import type { Duplex } from 'node:stream'
import { AbortError, ConnectFailedError, ConnectTimeoutError, HandshakeTimeoutError, InvalidArgumentError, PeerCertificateError, WebSocketUpgradeError } from '../errors.ts'
import type { Channel } from './channel.ts'
import { listenDefaults } from './link.ts'
import { bind, DEFAULT_TLS_HANDSHAKE_TIMEOUT, DEFAULT_TLS_MIN_VERSION, refuseAtAccept, wasRefusedAtAccept, withSecureContext } from './tcp.ts'
import type { Transport, TransportConnectOptions, TransportEvents, TransportListenOptions, TransportServer } from './transport.ts'
import { WsChannel } from './ws-channel.ts'
import { checkMaxPayload, DEFAULT_MAX_PAYLOAD, webSocketUrl } from './ws-messages.ts'

/** A listener's `websocket` option, checked. */
interface WebSocketSetting {
  /** The only path upgrades are taken on; null: any. */
  readonly path: string | null
  readonly maxPayload: number
}

function websocketSetting (value: unknown): WebSocketSetting {
  if (value === true || value === undefined) return { path: null, maxPayload: DEFAULT_MAX_PAYLOAD }
  if (typeof value !== 'object' || value === null) throw new InvalidArgumentError(`listen: websocket must be true or { path, maxPayload }, got ${typeof value}`)
  const { path, maxPayload } = value as { path?: unknown, maxPayload?: unknown }
  if (path !== undefined && (typeof path !== 'string' || !path.startsWith('/'))) {
    throw new InvalidArgumentError(`listen: websocket.path must be a string starting with "/", got ${JSON.stringify(path)}`)
  }
  const limit = checkMaxPayload(maxPayload, 'listen')
  if (typeof limit === 'string') throw new InvalidArgumentError(limit)
  return { path: path ?? null, maxPayload: limit }
}

/** The path of a request's URL, without its query. */
function pathOf (url: string | undefined): string {
  const raw = url ?? '/'
  const q = raw.indexOf('?')
  return q < 0 ? raw : raw.slice(0, q)
}

/** Answers an upgrade request it will not serve with an HTTP status, and drops the socket. */
function refuseUpgrade (socket: Duplex, status: number, text: string): void {
  if (socket.writable) socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  socket.destroy()
}

/** The certificate a wss: client failed to present or verify with, or null when it passed (or none was asked for). */
function refusedCertificate (socket: net.Socket): PeerCertificateError | null {
  const tlsSocket = socket as tls.TLSSocket
  if (tlsSocket.authorized) return null
  const why = tlsSocket.authorizationError as Error | string | null | undefined
  return new PeerCertificateError(why === null || why === undefined ? 'no certificate' : why instanceof Error ? why.message : String(why))
}

/** `ws`, loaded by the first WebSocket listener or connector: a program that never uses one does not pay its 60 ms of loading at start. */
let wsModule: Promise<typeof import('ws')> | undefined
const loadWs = (): Promise<typeof import('ws')> => (wsModule ??= import('ws'))

/**
 * Milliseconds a client of a WebSocket listener's own server has, from its TCP
 * connect, to complete its HTTP upgrade (the TLS handshake too, for wss:),
 * unless `handshakeTimeout` says otherwise.
 */
const DEFAULT_UPGRADE_TIMEOUT = DEFAULT_TLS_HANDSHAKE_TIMEOUT

/** A TCP connection of a listener's own server that has not upgraded (yet). */
interface Upgrading {
  readonly address: string
  readonly timer: ReturnType<typeof setTimeout>
  readonly socket: net.Socket
}

async function listenWebSocket (options: TransportListenOptions, accept: (channel: Channel) => void, events: TransportEvents): Promise<TransportServer> {
  const setting = websocketSetting(options.websocket)
  const shared = options.server as http.Server | undefined
  const tlsOptions = options.tls as tls.TlsOptions | undefined
  if (shared !== undefined && !(shared instanceof http.Server)) throw new InvalidArgumentError('listen: server must be an http.Server or https.Server')
  if (shared !== undefined && tlsOptions !== undefined) {
    throw new InvalidArgumentError('listen: with `server`, TLS is that server\'s own (give it an https.Server): leave out tls')
  }
  const perAddress = options.maxConnectionsPerAddress ?? listenDefaults.maxConnectionsPerAddress
  if (typeof perAddress !== 'number' || !Number.isSafeInteger(perAddress) || perAddress <= 0) {
    throw new InvalidArgumentError(`listen: maxConnectionsPerAddress must be a positive integer, got ${typeof perAddress === 'number' ? perAddress : typeof perAddress}`)
  }
  // Clients whose certificate does not verify are refused by the layer above, which tells them why.
  const verify = tlsOptions !== undefined && tlsOptions.requestCert === true && tlsOptions.rejectUnauthorized !== false
  const { WebSocketServer } = await loadWs()
  const wss = new WebSocketServer({ noServer: true, maxPayload: setting.maxPayload, perMessageDeflate: false, clientTracking: false })
  const live = new Set<Channel>()
  /**
   * The TCP connections of our own server that have not upgraded, by
   * "address:port": each counts from accept until it upgrades or closes, and is
   * dropped once handshakeTimeout has passed. Closing the link drops them too.
   */
  const upgrading = new Map<string, Upgrading>()
  /** How many of `upgrading` come from each address. */
  const upgradingFrom = new Map<string, number>()
  let stopped = false

  /** Takes a connection out of `upgrading`: it upgraded, or (`socket`) closed. */
  const settle = (remote: string, socket?: net.Socket): void => {
    const entry = upgrading.get(remote)
    if (entry === undefined || (socket !== undefined && entry.socket !== socket)) return
    upgrading.delete(remote)
    clearTimeout(entry.timer)
    const left = (upgradingFrom.get(entry.address) ?? 1) - 1
    if (left === 0) upgradingFrom.delete(entry.address)
    else upgradingFrom.set(entry.address, left)
  }

  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (setting.path !== null && pathOf(req.url) !== setting.path) {
      // On a shared server the path may be another handler's.
      if (shared === undefined) refuseUpgrade(socket, 404, 'Not Found')
      return
    }
    if (stopped) { socket.destroy(); return }
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    if (live.size >= options.maxConnections) {
      events.log.warn('connection refused: maxConnections reached', { remote, maxConnections: options.maxConnections })
      refuseUpgrade(socket, 503, 'Service Unavailable')
      return
    }
    socket.on('error', (err) => { events.log.debug('WebSocket upgrade failed', { error: err }) })
    wss.handleUpgrade(req, socket, head, (ws) => {
      // Upgraded: from here on it is counted as a connection (here and by the link), not as an upgrading socket.
      settle(remote)
      const channel = new WsChannel(ws, 'inbound', req.socket, setting.maxPayload)
      live.add(channel)
      void channel.closed.then(() => { live.delete(channel) })
      if (verify) {
        const error = refusedCertificate(req.socket)
        if (error !== null) {
          events.log.warn('wss client refused: its certificate did not verify', { remote, error })
          events.error(error)
          channel.refusal = error
        }
      }
      accept(channel)
    })
  }

  if (shared !== undefined) {
    // The server's sockets are its own until an upgrade is handed to us: its
    // own timeouts and limits (headersTimeout, requestTimeout, maxConnections)
    // govern them until then, and nothing of its other requests is touched here.
    shared.on('upgrade', onUpgrade)
    const addr = shared.address()
    return {
      host: addr !== null && typeof addr === 'object' ? addr.address : '',
      port: addr !== null && typeof addr === 'object' ? addr.port : 0,
      close: () => { stopped = true; shared.off('upgrade', onUpgrade); wss.close() },
      abort: () => {}
    }
  }

  const handshakeTimeout = (options.handshakeTimeout as number | undefined) ?? tlsOptions?.handshakeTimeout ?? DEFAULT_UPGRADE_TIMEOUT
  if (typeof handshakeTimeout !== 'number' || !(handshakeTimeout > 0)) {
    throw new InvalidArgumentError(`listen: handshakeTimeout must be a positive number of milliseconds, got ${String(handshakeTimeout)}`)
  }
  let server: http.Server
  const plainRequest = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket', Connection: 'close' })
    res.end('This is a snakemq WebSocket endpoint: connect with a WebSocket client.\n')
  }
  if (tlsOptions !== undefined) {
    try {
      server = https.createServer({ minVersion: DEFAULT_TLS_MIN_VERSION, ...tlsOptions, handshakeTimeout, ...(verify ? { rejectUnauthorized: false } : {}) }, plainRequest)
    } catch (err) {
      throw new InvalidArgumentError(`listen: bad tls options: ${(err as Error).message}`, { cause: err })
    }
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      socket.destroy()
      // One this listener refused at accept (logged there).
      if (wasRefusedAtAccept(err)) return
      events.log.warn('TLS handshake with a wss client failed', { remote: `${socket.remoteAddress}:${socket.remotePort}`, error: err })
      events.error(err)
    })
  } else {
    server = http.createServer(plainRequest)
  }
  // Every TCP connection counts from accept (before its request is read), so
  // that ones which never upgrade cannot pile up: at most maxConnections of
  // them at once (maxConnectionsPerAddress from one address), each for at most
  // handshakeTimeout. The upgraded ones are limited by maxConnections above
  // (503) and by the link's maxConnectionsPerAddress.
  server.on('connection', (raw: net.Socket) => {
    const address = raw.remoteAddress
    const port = raw.remotePort
    // Without an address the remote is already gone.
    if (stopped || address === undefined || port === undefined) { raw.destroy(); return }
    const remote = `${address}:${port}`
    if (upgrading.size >= options.maxConnections) {
      events.log.warn('connection refused: maxConnections reached', { remote, maxConnections: options.maxConnections, upgrading: upgrading.size })
      refuseAtAccept(raw, `${upgrading.size} connections have not upgraded (maxConnections)`)
      return
    }
    const fromAddress = upgradingFrom.get(address) ?? 0
    if (fromAddress >= perAddress) {
      events.log.warn('connection refused: maxConnectionsPerAddress reached', { remote, maxConnectionsPerAddress: perAddress, upgrading: fromAddress })
      refuseAtAccept(raw, `${fromAddress} connections from ${address} have not upgraded (maxConnectionsPerAddress)`)
      return
    }
    upgradingFrom.set(address, fromAddress + 1)
    const timer = setTimeout(() => {
      // Dropped meanwhile (a failed TLS handshake, reported as such), its 'close' not emitted yet.
      if (raw.destroyed) { settle(remote, raw); return }
      const error = new HandshakeTimeoutError(`no WebSocket upgrade from ${remote} within ${handshakeTimeout} ms`)
      events.log.warn('WebSocket client dropped: it did not upgrade within handshakeTimeout', { remote, error })
      raw.destroy()
      events.error(error)
    }, handshakeTimeout)
    upgrading.set(remote, { address, timer, socket: raw })
    raw.once('close', () => { settle(remote, raw) })
  })
  server.on('upgrade', onUpgrade)
  const addr = await bind(server, options.host, options.port, events)
  return {
    host: addr.address,
    port: addr.port,
    close: () => { stopped = true; if (server.listening) server.close(); wss.close() },
    abort: () => { for (const { socket } of [...upgrading.values()]) socket.destroy() }
  }
}

async function connectWebSocket (options: TransportConnectOptions, signal: AbortSignal): Promise<Channel> {
  const url = options.url as string
  const tlsOptions = options.tls as tls.ConnectionOptions | undefined
  const { WebSocket } = await loadWs()
  if (signal.aborted) throw new AbortError(`connecting to ${url} was cancelled`)
  const ws = new WebSocket(url, {
    ...(tlsOptions ?? {}),
    perMessageDeflate: false,
    // No handshakeTimeout of ws's own: the timer below covers the connect and the upgrade, with a typed error.
    maxPayload: DEFAULT_MAX_PAYLOAD
  })
  return await new Promise<Channel>((resolve, reject) => {
    let socket: net.Socket | null = null
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      ws.off('error', fail)
    }
    const fail = (err: Error): void => {
      done()
      // Terminated before it opened, ws emits an 'error' of its own ("closed before the
      // connection was established"): with no listener left that would crash the process.
      ws.on('error', ignore)
      ws.terminate()
      reject(err)
    }
    const onAbort = (): void => { fail(new AbortError(`connecting to ${url} was cancelled`)) }
    const timer = setTimeout(() => { fail(new ConnectTimeoutError(url, options.connectTimeout)) }, options.connectTimeout)
    signal.addEventListener('abort', onAbort, { once: true })
    ws.on('error', fail)
    ws.once('upgrade', (res) => { socket = res.socket })
    ws.once('unexpected-response', (req, res) => {
      req.destroy()
      fail(new WebSocketUpgradeError(url, res.statusCode ?? 0, res.statusMessage))
    })
    ws.once('open', () => {
      done()
      if (socket === null) { fail(new ConnectFailedError(`connecting to ${url}: the WebSocket opened without its socket`)); return }
      resolve(new WsChannel(ws, 'outbound', socket, DEFAULT_MAX_PAYLOAD))
    })
  })
}

/** Swallows what a WebSocket abandoned by a failed attempt still emits. */
function ignore (): void {}

function isWebSocketListen (o: Readonly<Record<string, unknown>>): boolean {
  return (o.websocket !== undefined && o.websocket !== false) || o.server !== undefined
}

/** WebSocket without TLS: `listen({ websocket: true })`, `connect({ url: 'ws://...' })`. */
export const wsTransport: Transport = {
  name: 'ws',
  listens: (o) => isWebSocketListen(o) && o.tls === undefined,
  connects: (o) => o.url !== undefined && !(typeof o.url === 'string' && o.url.startsWith('wss:')),
  prepare (options) {
    webSocketUrl(options.url)
    if (options.tls !== undefined) throw new InvalidArgumentError('connect: tls options with a ws:// URL: use a wss:// URL for TLS')
    return options
  },
  listen: listenWebSocket,
  connect: connectWebSocket
}

/** WebSocket over TLS: `listen({ websocket: true, tls })`, `connect({ url: 'wss://...', tls })`. */
export const wssTransport: Transport = {
  name: 'wss',
  listens: (o) => isWebSocketListen(o) && o.tls !== undefined,
  connects: (o) => typeof o.url === 'string' && o.url.startsWith('wss:'),
  prepare (options) {
    webSocketUrl(options.url)
    // ws checks the certificate against the URL's host name, as TLS over TCP does against `host`.
    return { ...options, tls: withSecureContext((options.tls ?? {}) as tls.ConnectionOptions) }
  },
  listen: listenWebSocket,
  connect: connectWebSocket
}
