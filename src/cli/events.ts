// The events `smq peer` prints, one JSON object per line on stdout, and its
// notes for people on stderr. The field names are a contract that tests and
// outside interop checks script against.
import type { Writable } from 'node:stream'

export type PeerEventLine =
  | { event: 'start', ident: string, pid: number, listen: string[], connect: string[] }
  | { event: 'connect', ident: string }
  | { event: 'disconnect', ident: string }
  | ({ event: 'recv', from: string, uuid: string, ttl: number | null, flags: number, len: number } & ({ data_hex: string } | { sha256: string }))
  | { event: 'queued', to: string, count: number, seconds: number }
  | { event: 'delivered', to: string, uuid: string }
  | { event: 'drop', to: string, uuid: string }
  | { event: 'error', error: string }
  | {
    event: 'done', ok: boolean, received: number, sent: number, delivered: number,
    /** Seconds since the peer started. */
    elapsed: number,
    /** Messages received plus messages delivered, per second of `elapsed`. */
    rate: number,
    reason: string
  }

export type PeerEventName = PeerEventLine['event']

export interface EventLogOptions {
  /** Only `start` and `done` go to stdout; `error` events go to `stderr` as text. Default false. */
  quiet?: boolean
  /** Where notes for people go (connection trouble, progress, errors when quiet). */
  stderr: Writable
}

/** Lines are gathered for the rest of the event-loop turn and written together: one write per burst, not per message. */
const FLUSH_BYTES = 64 * 1024

export class EventLog {
  private lines: string[] = []
  private bytes = 0
  private scheduled = false
  private ended = false
  private broken = false
  /** Events that came before `start` (say, a connection accepted while a second port was being bound), printed after it. */
  private held: PeerEventLine[] | null = []

  private readonly quiet: boolean
  private readonly err: Writable

  constructor (private readonly out: Writable, options: EventLogOptions) {
    this.quiet = options.quiet ?? false
    this.err = options.stderr
    // A reader that went away (`smq peer ... | head`) must not crash the peer.
    out.on('error', () => { this.broken = true })
  }

  /** True when `event` lines go to stdout: callers skip the work of building the ones that do not. */
  prints (event: PeerEventName): boolean {
    return !this.quiet || event === 'start' || event === 'done'
  }

  /** Prints one event, unless `end()` was called. Quiet, an error becomes a note and other events are left out. */
  write (line: PeerEventLine): void {
    if (this.ended) return
    if (!this.prints(line.event)) {
      if (line.event === 'error') this.note(line.error)
      return
    }
    this.push(line)
  }

  /** One line for people on stderr, `smq: ` first; stdout stays JSON. */
  note (text: string): void {
    this.err.write(`smq: ${text}\n`)
  }

  /** Prints `line` as the last event; everything written afterwards is left out. */
  end (line: PeerEventLine): void {
    if (this.ended) return
    this.push(line)
    this.ended = true
  }

  get isEnded (): boolean { return this.ended }

  /** Resolves once everything printed so far has been handed to the stream. */
  async flush (): Promise<void> {
    const text = this.take()
    if (text === null || this.broken) return
    await new Promise<void>((resolve) => { this.out.write(text, () => { resolve() }) })
  }

  private push (line: PeerEventLine): void {
    if (this.held !== null) {
      if (line.event !== 'start' && line.event !== 'done') { this.held.push(line); return }
      // A peer that failed to start prints its errors, then done, without a start event.
      const held = this.held
      this.held = null
      if (line.event === 'start') this.push(line)
      for (const h of held) this.push(h)
      if (line.event === 'done') this.push(line)
      return
    }
    const text = JSON.stringify(line) + '\n'
    this.lines.push(text)
    this.bytes += text.length
    if (this.bytes >= FLUSH_BYTES) { this.writeOut(); return }
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => { this.scheduled = false; this.writeOut() })
    }
  }

  private take (): string | null {
    if (this.lines.length === 0) return null
    const text = this.lines.join('')
    this.lines = []
    this.bytes = 0
    return text
  }

  private writeOut (): void {
    const text = this.take()
    if (text !== null && !this.broken) this.out.write(text)
  }
}
