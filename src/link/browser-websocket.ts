// A channel over a browser's own WebSocket (binaryType 'arraybuffer'), and the
// transport of a browser's Link: connectors to ws:// and wss:// URLs only. Each
// write() goes out as binary messages; each binary message that comes in is
// pushed as one chunk, a text message closes the connection with ProtocolError
// (close code 4003, reason 'binary messages only').
//
// A browser's WebSocket cannot stop reading and has no drain event: pause()
// holds what arrives until resume() (past RECEIVE_HOLD_LIMIT bytes the
// connection is closed with ReceiveOverflowError, close code 4008, reason
// 'receive overflow'), and congestion is bufferedAmount, looked at again every
// few milliseconds while a writer waits.
import { AbortError, ClosedError, ConnectFailedError, ConnectTimeoutError, InvalidArgumentError, ProtocolError, ReceiveOverflowError } from '../errors.ts'
import type { Channel } from './channel.ts'
import { MessageChannelBase } from './message-channel.ts'
import type { Transport, TransportConnectOptions } from './transport.ts'
import { toMessages, webSocketUrl, WEBSOCKET_HIGH_WATER } from './ws-messages.ts'

/**
 * How long a closing channel waits for the closing handshake before it counts
 * as closed anyway, in ms. The browser goes on waiting for the remote's answer
 * (Chromium for a minute) with nothing a script can do to drop the socket: a
 * remote that never answers, or a network that is gone, would hold up every
 * close() for that long.
 */
const END_TIMEOUT = 2000
/** How often a waiting writer looks at bufferedAmount again, in ms. */
const DRAIN_POLL = 5
const CLOSE_NORMAL = 1000
const CLOSE_GOING_AWAY = 1001
/**
 * RFC 6455's 1003 (unsupported data), in the private range: a script may close
 * a WebSocket with 1000 or 3000-4999 only (close() throws InvalidAccessError
 * on any other code).
 */
const CLOSE_UNSUPPORTED_DATA = 4003
/** RFC 6455's 1008 (policy violation), in the private range: the remote sent more than RECEIVE_HOLD_LIMIT while not read. */
const CLOSE_RECEIVE_OVERFLOW = 4008
/**
 * Bytes held while the reader is paused (its consumers have not taken what came
 * before) past which the connection is closed with ReceiveOverflowError. A
 * sender of this library keeps at most `maxUnacked` (8,192) messages
 * unacknowledged and, by default, 64 MiB of them queued in memory (`queueLimits`),
 * and the page's own receive buffer holds the first `receiveBuffer` (1,024)
 * of them; a sender with more in flight is cut and resends after reconnecting.
 */
export const RECEIVE_HOLD_LIMIT = 64 * 1024 * 1024

/** The part of the WebSocket API used here, as browsers (and Node 22's global WebSocket) have it. */
interface BrowserWebSocket {
  binaryType: string
  readonly readyState: number
  readonly bufferedAmount: number
  readonly url: string
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onerror: ((event: unknown) => void) | null
  onclose: ((event: { code: number, reason: string, wasClean: boolean }) => void) | null
  send (data: Uint8Array): void
  close (code?: number, reason?: string): void
}

type WebSocketConstructor = new (url: string) => BrowserWebSocket

const OPEN = 1

export class BrowserWebSocketChannel extends MessageChannelBase implements Channel {
  readonly transport: 'ws' | 'wss'
  readonly direction = 'outbound' as const
  /** What a page knows of the remote: its host name from the URL (a browser does not tell the address). */
  readonly remoteAddress: string
  readonly remotePort: number
  readonly encrypted: boolean
  /** The browser checks a wss: certificate itself and does not show it. */
  readonly peerCertificate = null
  readonly peerAuthorized = false
  readonly peerAuthorizationError = null
  readonly closed: Promise<void>
  bytesIn = 0
  protected override readonly holdLimit = RECEIVE_HOLD_LIMIT
  private sent = 0
  private poll: ReturnType<typeof setTimeout> | undefined = undefined
  private giveUp: ReturnType<typeof setTimeout> | undefined = undefined
  private resolveClosed!: () => void

  constructor (private readonly ws: BrowserWebSocket) {
    super()
    const url = new URL(ws.url)
    this.encrypted = url.protocol === 'wss:'
    this.transport = this.encrypted ? 'wss' : 'ws'
    this.remoteAddress = url.hostname
    this.remotePort = url.port !== '' ? Number(url.port) : this.encrypted ? 443 : 80
    ws.onmessage = (event) => { this.onMessage(event.data) }
    ws.onerror = () => { this.error ??= new ClosedError(`connection ${this.id}: the WebSocket to ${ws.url} failed`) }
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve })
    ws.onclose = (event) => { this.finish(event.code) }
  }

  /** The WebSocket closed (with `code`), or this side stopped waiting for it to. */
  private finish (code: number): void {
    if (this.isClosed) return
    this.isClosed = true
    clearTimeout(this.poll)
    clearTimeout(this.giveUp)
    this.ws.onmessage = this.ws.onerror = this.ws.onclose = null
    this.notifyDrained()
    const clean = code === CLOSE_NORMAL || code === CLOSE_GOING_AWAY
    this.finishRead(this.error ?? (clean ? null : new ClosedError(`connection ${this.id} closed (WebSocket close code ${code})`)))
    this.resolveClosed()
  }

  /** Closes the WebSocket, and counts it closed after END_TIMEOUT if the browser has not said so by then. */
  private shut (code: number, reason?: string): void {
    if (this.isClosed) return
    if (this.ws.readyState <= OPEN) this.ws.close(code, reason)
    this.giveUp ??= setTimeout(() => { this.finish(CLOSE_NORMAL) }, END_TIMEOUT)
  }

  private onMessage (data: unknown): void {
    if (this.readEnded) return
    if (!(data instanceof ArrayBuffer)) {
      this.refuse(new ProtocolError(`connection ${this.id}: a text WebSocket message arrived; the protocol travels in binary messages only`), CLOSE_UNSUPPORTED_DATA, 'binary messages only')
      return
    }
    const chunk = new Uint8Array(data)
    this.bytesIn += chunk.length
    this.push(chunk)
  }

  protected override overflow (held: number): void {
    this.refuse(new ReceiveOverflowError(held, this.holdLimit), CLOSE_RECEIVE_OVERFLOW, 'receive overflow')
  }

  /** Closes the WebSocket with `code` and `reason`, telling the remote why, and ends the reader with `error`. */
  private refuse (error: Error, code: number, reason: string): void {
    this.error ??= error
    // Closed before the reader ends, whose end closes the connection (with 1000, telling the remote nothing).
    this.shut(code, reason)
    this.finishRead(this.error)
    this.closing = true
  }

  get isOpen (): boolean { return !this.isClosed && this.ws.readyState === OPEN }
  get writable (): boolean { return !this.closing && this.isOpen && this.ws.bufferedAmount < WEBSOCKET_HIGH_WATER }
  get writableLength (): number { return this.ws.bufferedAmount }
  get bytesOut (): number { return this.sent - this.ws.bufferedAmount }

  write (chunks: Uint8Array | readonly Uint8Array[]): boolean {
    if (!this.isOpen || this.closing) return false
    for (const message of toMessages(chunks)) {
      this.sent += message.length
      this.ws.send(message)
    }
    return this.writable
  }

  override drained (): Promise<void> {
    const waiting = super.drained()
    if (this.waitingForDrain) this.schedulePoll()
    return waiting
  }

  private schedulePoll (): void {
    if (this.poll !== undefined) return
    this.poll = setTimeout(() => {
      this.poll = undefined
      this.notifyDrained()
      if (this.waitingForDrain && this.isOpen) this.schedulePoll()
    }, DRAIN_POLL)
  }

  async end (error?: Error): Promise<void> {
    if (error !== undefined) this.error ??= error
    if (!this.isOpen) return
    this.closing = true
    // The browser sends what was written before the close frame.
    this.shut(CLOSE_NORMAL)
    await this.closed
  }

  close (error?: Error): void {
    if (error !== undefined) this.error ??= error
    this.closing = true
    this.shut(CLOSE_NORMAL)
    // A browser cannot drop a WebSocket at once: the reader ends now, the socket when the browser is done (or END_TIMEOUT).
    this.finishRead(null)
  }
}

/** The browser's WebSocket class, or an error that says there is none. */
function webSocketClass (): WebSocketConstructor {
  const ctor = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  if (ctor === undefined) throw new InvalidArgumentError('connect: this runtime has no global WebSocket')
  return ctor
}

async function connectBrowser (options: TransportConnectOptions, signal: AbortSignal): Promise<Channel> {
  const url = options.url as string
  const ws = new (webSocketClass())(url)
  ws.binaryType = 'arraybuffer'
  return await new Promise<Channel>((resolve, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      ws.onopen = ws.onerror = ws.onclose = null
      if (ws.readyState <= OPEN) ws.close()
      reject(err)
    }
    const onAbort = (): void => { fail(new AbortError(`connecting to ${url} was cancelled`)) }
    const timer = setTimeout(() => { fail(new ConnectTimeoutError(url, options.connectTimeout)) }, options.connectTimeout)
    signal.addEventListener('abort', onAbort, { once: true })
    // A browser tells a script nothing about why a WebSocket failed.
    ws.onerror = () => { fail(new ConnectFailedError(`connecting to ${url} failed`)) }
    ws.onclose = (event) => { fail(new ConnectFailedError(`connecting to ${url} failed (close code ${event.code})`)) }
    ws.onopen = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      ws.onopen = ws.onerror = ws.onclose = null
      resolve(new BrowserWebSocketChannel(ws))
    }
  })
}

/**
 * The one transport of a browser's Link: WebSocket connectors. It takes every
 * listener and connector so that what a browser cannot do is refused with a
 * clear InvalidArgumentError: listening, TLS options, host/port connectors.
 */
export const browserWebSocketTransport: Transport = {
  name: 'ws',
  listens: () => true,
  connects: () => true,
  prepare (options) {
    const url = options.url
    if (url === undefined) {
      throw new InvalidArgumentError('connect: a browser connects over WebSocket only: give { url: \'ws://host:port/path\' } (or wss://) of a peer that listens with websocket: true')
    }
    webSocketUrl(url)
    if (options.tls !== undefined) {
      throw new InvalidArgumentError('connect: tls options cannot be used in a browser: a wss:// URL uses the browser\'s own TLS, which checks the certificate against its trusted CAs')
    }
    return options
  },
  listen () {
    return Promise.reject(new InvalidArgumentError('listen: a browser cannot listen for connections; let a Node peer listen with websocket: true and connect to it with { url }'))
  },
  connect: connectBrowser
}
