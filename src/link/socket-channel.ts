// A channel over a node:net socket (TCP, or TLS on top of it): the socket's data
// events are the push reader, its write buffer and 'drain' the write side.
import type { Socket } from 'node:net'
import type { PeerCertificate, TLSSocket } from 'node:tls'
import { AlreadyIteratingError, ClosedError } from '../errors.ts'
import { channelId, type Channel, type ChannelReader, type Direction } from './channel.ts'
import { settleFields } from '../settle.ts'

/** What a socket tells of its TLS peer: nothing for plain TCP. Shared with the WebSocket channel (wss: runs on such a socket). */
export function tlsPeer (socket: Socket): Pick<Channel, 'encrypted' | 'peerCertificate' | 'peerAuthorized' | 'peerAuthorizationError'> {
  if (!('encrypted' in socket) || socket.encrypted !== true) return { encrypted: false, peerCertificate: null, peerAuthorized: false, peerAuthorizationError: null }
  const tlsSocket = socket as TLSSocket
  const cert = tlsSocket.getPeerCertificate(false)
  const peerCertificate: PeerCertificate | null = cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0 ? cert : null
  const why = tlsSocket.authorizationError as Error | string | null | undefined
  return {
    encrypted: true,
    peerCertificate,
    peerAuthorized: peerCertificate !== null && tlsSocket.authorized,
    peerAuthorizationError: why === null || why === undefined ? null : why instanceof Error ? why : new Error(String(why))
  }
}

/** How long end() waits for the remote to close its side before the socket is destroyed, in ms. */
const END_TIMEOUT = 2000

export class SocketChannel implements Channel {
  readonly id = channelId()
  readonly transport: string
  readonly remoteAddress: string
  readonly remotePort: number
  readonly encrypted: boolean
  readonly peerCertificate: PeerCertificate | null
  readonly peerAuthorized: boolean
  readonly peerAuthorizationError: Error | null
  readonly closed: Promise<void>
  error: Error | undefined = undefined
  refusal: Error | undefined = undefined

  private reader: ChannelReader | null = null
  /** Closed by this side (close() or end()): the reader then ends quietly, whatever the socket reports. */
  private closing = false
  private isClosed = false
  private readEnded = false
  private drainWaiters: Array<() => void> = []

  constructor (private readonly socket: Socket, readonly direction: Direction) {
    this.remoteAddress = socket.remoteAddress ?? ''
    this.remotePort = socket.remotePort ?? 0
    const peer = tlsPeer(socket)
    this.encrypted = peer.encrypted
    this.transport = this.encrypted ? 'tls' : 'tcp'
    this.peerCertificate = peer.peerCertificate
    this.peerAuthorized = peer.peerAuthorized
    this.peerAuthorizationError = peer.peerAuthorizationError
    socket.setNoDelay(true)
    // Always listened to: a socket error closes this channel, never the process.
    socket.on('error', (err) => { this.error ??= err })
    socket.on('drain', this.onDrain)
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true
        this.onDrain()
        // Closed without an end or an error reaching the reader: destroyed under it.
        this.finishRead(this.error ?? new ClosedError(`connection ${this.id} closed before the remote ended it`))
        resolve()
      })
    })
    settleFields(this, 'closing', 'isClosed', 'readEnded', 'error')
  }

  get isOpen (): boolean { return !this.isClosed && !this.socket.destroyed }
  get writable (): boolean { return !this.closing && this.isOpen && !this.socket.writableNeedDrain }
  get writableLength (): number { return this.socket.writableLength }
  // Node counts what is still buffered as written: what left is the difference.
  get bytesOut (): number { return this.socket.bytesWritten - this.socket.writableLength }
  get bytesIn (): number { return this.socket.bytesRead }

  read (reader: ChannelReader): void {
    if (this.reader !== null) throw new AlreadyIteratingError(`connection ${this.id}: it already has a reader`)
    this.reader = reader
    const socket = this.socket
    if (!this.isOpen) {
      // Reported after read() returns, as a socket's events would be.
      queueMicrotask(() => { this.finishRead(this.error ?? new ClosedError(`connection ${this.id} is closed`)) })
      return
    }
    socket.on('data', (chunk: Buffer) => { if (!this.readEnded) reader.data(chunk) })
    socket.once('end', () => { this.finishRead(null) })
    socket.on('error', (err) => { this.finishRead(err) })
    socket.resume()
  }

  private finishRead (error: Error | null): void {
    const reader = this.reader
    if (reader === null || this.readEnded) return
    this.readEnded = true
    reader.end(error === null || this.closing ? null : error)
  }

  pause (): void { if (!this.socket.destroyed) this.socket.pause() }
  resume (): void { if (!this.socket.destroyed && !this.readEnded) this.socket.resume() }

  write (chunks: Uint8Array | readonly Uint8Array[]): boolean {
    if (!this.isOpen || this.closing) return false
    const socket = this.socket
    if (chunks instanceof Uint8Array) return socket.write(chunks)
    if (chunks.length === 1) return socket.write(chunks[0]!)
    socket.cork()
    let ok = true
    for (const c of chunks) ok = socket.write(c)
    socket.uncork()
    return ok
  }

  drained (): Promise<void> {
    if (!this.isOpen || this.writable) return Promise.resolve()
    return new Promise((resolve) => { this.drainWaiters.push(resolve) })
  }

  private readonly onDrain = (): void => {
    // An ended channel stays unwritable: its waiters go on waiting, for the close.
    if (this.drainWaiters.length === 0 || (this.isOpen && !this.writable)) return
    const ws = this.drainWaiters
    this.drainWaiters = []
    for (const w of ws) w()
  }

  async end (error?: Error): Promise<void> {
    if (error !== undefined) this.error ??= error
    if (!this.isOpen) return
    this.closing = true
    this.socket.end()
    const timer = setTimeout(() => { this.socket.destroy() }, END_TIMEOUT)
    await this.closed
    clearTimeout(timer)
  }

  close (error?: Error): void {
    if (error !== undefined) this.error ??= error
    this.closing = true
    this.socket.destroy()
  }
}
