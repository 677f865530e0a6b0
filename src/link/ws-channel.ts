// A channel over a WebSocket of the `ws` package (Node): each write() goes out
// as binary messages, each binary message that comes in is pushed as one chunk.
// A text message is not part of the protocol: it closes the connection with a
// ProtocolError. Reading pauses the WebSocket (and so its socket); writing is
// congested while more than WEBSOCKET_HIGH_WATER bytes are unsent, and drains as
// ws's send callbacks report the bytes handed to the socket.
import type { Socket } from 'node:net'
import type { PeerCertificate } from 'node:tls'
import { ClosedError, ProtocolError, WebSocketMessageTooLargeError } from '../errors.ts'
import type { Channel, Direction } from './channel.ts'
import { MessageChannelBase } from './message-channel.ts'
import { tlsPeer } from './socket-channel.ts'
import { toMessages, WEBSOCKET_HIGH_WATER } from './ws-messages.ts'
import { settleFields } from '../settle.ts'

/** How long end() waits for the remote to answer the closing handshake before the socket is dropped, in ms. */
const END_TIMEOUT = 2000
/** Close codes (RFC 6455, 7.4.1). */
const CLOSE_NORMAL = 1000
const CLOSE_GOING_AWAY = 1001
const CLOSE_UNSUPPORTED_DATA = 1003

/** ws's error for a message above maxPayload, as a typed error; other frame errors as ProtocolError. */
function frameError (err: Error & { code?: string }, maxPayload: number): Error {
  // A message over maxPayload, or a frame whose length header is past what JavaScript can count (2^53 - 1): both too large.
  if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || err.code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH') return new WebSocketMessageTooLargeError(maxPayload, { cause: err })
  if (typeof err.code === 'string' && err.code.startsWith('WS_ERR_')) return new ProtocolError(`bad WebSocket frame: ${err.message}`, { cause: err })
  return err
}

/**
 * The part of a `ws` WebSocket used here, typed here so that this module's
 * declarations need no @types/ws.
 */
export interface NodeWebSocket {
  readonly readyState: number
  readonly OPEN: number
  on (event: 'message', listener: (data: Buffer, isBinary: boolean) => void): unknown
  on (event: 'error', listener: (err: Error & { code?: string }) => void): unknown
  once (event: 'close', listener: (code: number) => void): unknown
  pause (): void
  resume (): void
  send (data: Uint8Array, options: { binary: boolean }, callback: (err?: Error | null) => void): void
  close (code?: number, reason?: string): void
  terminate (): void
}

export class WsChannel extends MessageChannelBase implements Channel {
  readonly transport: 'ws' | 'wss'
  readonly remoteAddress: string
  readonly remotePort: number
  readonly encrypted: boolean
  readonly peerCertificate: PeerCertificate | null
  readonly peerAuthorized: boolean
  readonly peerAuthorizationError: Error | null
  readonly closed: Promise<void>
  refusal: Error | undefined = undefined
  bytesIn = 0
  bytesOut = 0
  private unsent = 0
  /** Bytes off the socket since the last whole message (within one chunk: see the socket's data listener), and whether one was whole in the chunk being read. */
  private assembling = 0
  private wholeInChunk = false

  /** `socket`: the TCP (or TLS) socket under the WebSocket, for its addresses and certificate. */
  constructor (private readonly ws: NodeWebSocket, readonly direction: Direction, socket: Socket, private readonly maxPayload: number) {
    super()
    this.remoteAddress = socket.remoteAddress ?? ''
    this.remotePort = socket.remotePort ?? 0
    const peer = tlsPeer(socket)
    this.encrypted = peer.encrypted
    this.transport = peer.encrypted ? 'wss' : 'ws'
    this.peerCertificate = peer.peerCertificate
    this.peerAuthorized = peer.peerAuthorized
    this.peerAuthorizationError = peer.peerAuthorizationError
    // Nothing is read until a reader comes.
    ws.pause()
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.wholeInChunk = true
      if (this.readEnded) return
      if (!isBinary) {
        this.error ??= new ProtocolError(`connection ${this.id}: a text WebSocket message arrived; the protocol travels in binary messages only`)
        ws.close(CLOSE_UNSUPPORTED_DATA, 'binary messages only')
        this.finishRead(this.error)
        ws.terminate()
        return
      }
      this.bytesIn += data.length
      this.push(data)
    })
    // What ws holds of a message not yet whole (up to maxPayload): the bytes read
    // since the last whole one. ws reads each chunk first (its listener came
    // first) and hands over the messages it completes; a chunk that completed one
    // counts as nothing held, so the count is off by at most the chunk's tail.
    socket.on('data', (chunk: Buffer) => {
      const before = this.assembling
      this.assembling = this.wholeInChunk ? 0 : before + chunk.length
      this.wholeInChunk = false
      if (this.assembling !== before && !this.readEnded) this.reader?.pending?.(this.assembling)
    })
    // Always listened to: a WebSocket error closes this channel, never the process.
    ws.on('error', (err: Error & { code?: string }) => { this.error ??= frameError(err, this.maxPayload) })
    this.closed = new Promise((resolve) => {
      ws.once('close', (code: number) => {
        this.isClosed = true
        this.notifyDrained()
        const clean = code === CLOSE_NORMAL || code === CLOSE_GOING_AWAY
        this.finishRead(this.error ?? (clean ? null : new ClosedError(`connection ${this.id} closed (WebSocket close code ${code})`)))
        resolve()
      })
    })
    settleFields(this, 'closing', 'isClosed', 'error')
  }

  get isOpen (): boolean { return !this.isClosed && this.ws.readyState === this.ws.OPEN }
  get writable (): boolean { return !this.closing && this.isOpen && this.unsent < WEBSOCKET_HIGH_WATER }
  get writableLength (): number { return this.unsent }

  protected override pauseSource (): void { if (this.isOpen) this.ws.pause() }
  protected override resumeSource (): void { this.ws.resume() }

  write (chunks: Uint8Array | readonly Uint8Array[]): boolean {
    if (!this.isOpen || this.closing) return false
    for (const message of toMessages(chunks)) {
      const n = message.length
      this.unsent += n
      this.ws.send(message, { binary: true }, (err) => {
        this.unsent -= n
        if (err === undefined || err === null) this.bytesOut += n
        this.notifyDrained()
      })
    }
    return this.writable
  }

  async end (error?: Error): Promise<void> {
    if (error !== undefined) this.error ??= error
    if (!this.isOpen) return
    this.closing = true
    // Sent after what was written: ws queues the close frame behind the messages.
    this.ws.close(CLOSE_NORMAL)
    const timer = setTimeout(() => { this.ws.terminate() }, END_TIMEOUT)
    await this.closed
    clearTimeout(timer)
  }

  close (error?: Error): void {
    if (error !== undefined) this.error ??= error
    this.closing = true
    this.ws.terminate()
  }
}
