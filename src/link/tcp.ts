// The TCP and TLS transports: node:net and node:tls servers and sockets, each
// live socket a SocketChannel.
import net from 'node:net'
import tls from 'node:tls'
import { AbortError, ConnectTimeoutError, InvalidArgumentError, PeerCertificateError } from '../errors.ts'
import { SocketChannel } from './socket-channel.ts'
import { listenDefaults } from './link.ts'
import type { Transport, TransportConnectOptions, TransportEvents, TransportListenOptions, TransportServer } from './transport.ts'
import type { Channel } from './channel.ts'

/** The oldest TLS version accepted unless the caller's `tls.minVersion` says otherwise. */
export const DEFAULT_TLS_MIN_VERSION = 'TLSv1.2'
/** Milliseconds a client of a TLS listener has to complete its handshake, unless `handshakeTimeout` says otherwise. */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10_000

/** A connector's TLS options with the default minimum version and one secure context for all its attempts. */
export function withSecureContext (options: tls.ConnectionOptions): tls.ConnectionOptions {
  const withDefaults = { minVersion: DEFAULT_TLS_MIN_VERSION, ...options } satisfies tls.ConnectionOptions
  if (options.secureContext !== undefined) return withDefaults
  try {
    return { ...withDefaults, secureContext: tls.createSecureContext(withDefaults) }
  } catch (err) {
    throw new InvalidArgumentError(`connect: bad tls options: ${(err as Error).message}`, { cause: err })
  }
}

export async function bind (server: net.Server, host: string, port: number, events: TransportEvents): Promise<net.AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => { server.off('error', reject); resolve() })
  })
  server.on('error', (err) => {
    events.log.error('listener failed', { error: err })
    events.error(err)
  })
  return server.address() as net.AddressInfo
}

function watchDrops (server: net.Server, maxConnections: number, events: TransportEvents): void {
  server.maxConnections = maxConnections
  server.on('drop', (d?: net.DropArgument) => {
    events.log.warn('connection refused: maxConnections reached', { remote: d === undefined ? undefined : `${d.remoteAddress}:${d.remotePort}`, maxConnections })
  })
}

/** The server's handle for the Link. */
function serverHandle (server: net.Server, addr: net.AddressInfo, pending: Set<net.Socket> | null): TransportServer {
  return {
    host: addr.address,
    port: addr.port,
    // The close callback would wait for every accepted connection to end; the listening handle itself is released synchronously.
    close: () => { if (server.listening) server.close() },
    abort: () => { if (pending !== null) for (const s of pending) s.destroy() }
  }
}

/** Connects one socket; resolves once `ready` fires (connect, or secureConnect for TLS). */
async function connectSocket (socket: net.Socket, ready: 'connect' | 'secureConnect', options: TransportConnectOptions, signal: AbortSignal): Promise<Channel> {
  return await new Promise<Channel>((resolve, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      socket.destroy()
      reject(err)
    }
    const onAbort = (): void => { fail(new AbortError(`connecting to ${options.host}:${options.port} was cancelled`)) }
    const timer = setTimeout(() => { fail(new ConnectTimeoutError(`${options.host}:${options.port}`, options.connectTimeout)) }, options.connectTimeout)
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('error', fail)
    socket.once(ready, () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      socket.off('error', fail)
      resolve(new SocketChannel(socket, 'outbound'))
    })
  })
}

/** The errors sockets refused at accept were destroyed with (logged there already). */
const refusedAtAccept = new WeakSet<Error>()

/**
 * Destroys a socket refused at accept (the caller logged why). node:tls passes
 * the error a socket is destroyed with to its server's tlsClientError, as for a
 * failed handshake: this one is known there for what it is (refusedAtAccept()).
 */
export function refuseAtAccept (raw: net.Socket, why: string): void {
  const error = new Error(`refused at accept: ${why}`)
  refusedAtAccept.add(error)
  raw.destroy(error)
}

/** True for the error of a socket destroyed by refuseAtAccept(): not a handshake that failed, nothing to report again. */
export function wasRefusedAtAccept (error: Error): boolean { return refusedAtAccept.has(error) }

/**
 * The TCP sockets of a TLS listener still in their TLS handshake, per address
 * from accept, as a WebSocket listener counts those that have not upgraded:
 * else one address could fill every slot of maxConnections with sockets that
 * never start TLS, each for handshakeTimeout, before the link's
 * maxConnectionsPerAddress (which counts finished handshakes) saw any.
 */
class HandshakeCount {
  /** By "address:port": the socket and its address (read at accept: a closed socket may no longer tell it). */
  private readonly open = new Map<string, { socket: net.Socket, address: string }>()
  private readonly from = new Map<string, number>()

  constructor (private readonly perAddress: number, private readonly events: TransportEvents) {}

  /** A TCP connection came: counted, or destroyed when its address has perAddress in their handshake already. */
  admit (raw: net.Socket): void {
    const address = raw.remoteAddress
    const port = raw.remotePort
    // Without an address the remote is already gone.
    if (address === undefined || port === undefined) { raw.destroy(); return }
    const n = this.from.get(address) ?? 0
    if (n >= this.perAddress) {
      this.events.log.warn('connection refused: maxConnectionsPerAddress reached', { remote: `${address}:${port}`, maxConnectionsPerAddress: this.perAddress, inTlsHandshake: n })
      refuseAtAccept(raw, `${n} connections from ${address} are in their TLS handshake (maxConnectionsPerAddress)`)
      return
    }
    const remote = `${address}:${port}`
    this.from.set(address, n + 1)
    this.open.set(remote, { socket: raw, address })
    raw.once('close', () => { this.settle(remote, raw) })
  }

  /** Its handshake is done: from here on it counts in the link's maxConnectionsPerAddress. */
  done (socket: tls.TLSSocket): void { this.settle(`${socket.remoteAddress}:${socket.remotePort}`) }

  private settle (remote: string, raw?: net.Socket): void {
    const entry = this.open.get(remote)
    if (entry === undefined || (raw !== undefined && entry.socket !== raw)) return
    this.open.delete(remote)
    const left = (this.from.get(entry.address) ?? 1) - 1
    if (left === 0) this.from.delete(entry.address)
    else this.from.set(entry.address, left)
  }
}

export const tcpTransport: Transport = {
  name: 'tcp',
  listens: (o) => o.tls === undefined && o.websocket === undefined && o.server === undefined,
  connects: (o) => o.tls === undefined && o.url === undefined,
  async listen (options: TransportListenOptions, accept, events) {
    const server = net.createServer((socket) => {
      socket.on('error', (err) => { events.log.debug('accepted socket failed', { error: err }) })
      accept(new SocketChannel(socket, 'inbound'))
    })
    watchDrops(server, options.maxConnections, events)
    return serverHandle(server, await bind(server, options.host, options.port, events), null)
  },
  async connect (options, signal) {
    return await connectSocket(net.connect({ host: options.host, port: options.port }), 'connect', options, signal)
  }
}

export const tlsTransport: Transport = {
  name: 'tls',
  listens: (o) => o.tls !== undefined && o.websocket === undefined && o.server === undefined,
  connects: (o) => o.tls !== undefined && o.url === undefined,
  prepare (options) {
    return { ...options, tls: withSecureContext(options.tls as tls.ConnectionOptions) }
  },
  async listen (options, accept, events) {
    const tlsOptions = options.tls as tls.TlsOptions
    const handshakeTimeout = (options.handshakeTimeout as number | undefined) ?? tlsOptions.handshakeTimeout ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT
    if (typeof handshakeTimeout !== 'number' || !(handshakeTimeout > 0)) {
      throw new InvalidArgumentError(`listen: handshakeTimeout must be a positive number of milliseconds, got ${String(handshakeTimeout)}`)
    }
    // Clients whose certificate does not verify are refused by the layer above,
    // which can tell them why (node:tls would drop them without a word).
    const verify = tlsOptions.requestCert === true && tlsOptions.rejectUnauthorized !== false
    const handshakes = new HandshakeCount((options.maxConnectionsPerAddress as number | undefined) ?? listenDefaults.maxConnectionsPerAddress, events)
    let server: tls.Server
    try {
      server = tls.createServer({ minVersion: DEFAULT_TLS_MIN_VERSION, ...tlsOptions, handshakeTimeout, ...(verify ? { rejectUnauthorized: false } : {}) }, (socket) => {
        // Its handshake done, it counts in the link's maxConnectionsPerAddress instead.
        handshakes.done(socket)
        socket.on('error', (err) => { events.log.debug('accepted socket failed', { error: err }) })
        const channel = new SocketChannel(socket, 'inbound')
        if (verify && !socket.authorized) {
          const why = socket.authorizationError as Error | string | null | undefined
          const error = new PeerCertificateError(why === null || why === undefined ? 'no certificate' : why instanceof Error ? why.message : String(why))
          events.log.warn('TLS client refused: its certificate did not verify', { remote: `${socket.remoteAddress}:${socket.remotePort}`, error })
          events.error(error)
          channel.refusal = error
        }
        accept(channel)
      })
    } catch (err) {
      throw new InvalidArgumentError(`listen: bad tls options: ${(err as Error).message}`, { cause: err })
    }
    watchDrops(server, options.maxConnections, events)
    // The TCP sockets still in their TLS handshake: closing the link drops them.
    const pending = new Set<net.Socket>()
    server.on('connection', (raw: net.Socket) => {
      pending.add(raw)
      raw.once('close', () => { pending.delete(raw) })
      handshakes.admit(raw)
    })
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      // node:tls leaves the socket open after a handshake timeout: drop it here.
      socket.destroy()
      if (wasRefusedAtAccept(err)) return
      // A client certificate that failed verification closes the socket with no
      // error of its own (the error seen is "socket hang up"): say what happened.
      const refused = socket.authorizationError as Error | string | null | undefined
      const error = refused === null || refused === undefined
        ? err
        : new PeerCertificateError(refused instanceof Error ? refused.message : String(refused), { cause: err })
      events.log.warn('TLS handshake with a client failed', { remote: `${socket.remoteAddress}:${socket.remotePort}`, error })
      events.error(error)
    })
    return serverHandle(server, await bind(server, options.host, options.port, events), pending)
  },
  async connect (options, signal) {
    const tlsOptions = options.tls as tls.ConnectionOptions
    const socket = tls.connect({ servername: net.isIP(options.host) === 0 ? options.host : undefined, ...tlsOptions, host: options.host, port: options.port })
    return await connectSocket(socket, 'secureConnect', options, signal)
  }
}
