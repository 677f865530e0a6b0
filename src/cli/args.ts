// Command-line parsing for `smq peer`: flags to a checked PeerConfig, or a
// UsageError (exit code 2) that names the bad flag.
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { readFile } from 'node:fs/promises'
import { MAX_IDENTITY_LENGTH } from '../messaging/messaging.ts'
import { DEFAULT_MAX_PACKET_SIZE } from '../transforms/framing.ts'
import { MESSAGE_HEADER_BYTES } from '../transforms/frames.ts'

/** A command line that cannot be run; the command exits with code 2. */
export class UsageError extends Error {
  static override readonly name = 'UsageError'
  override name = 'UsageError'
}

export interface Endpoint {
  host: string
  port: number
}

/** What each message sent with --send-to carries. */
export type PayloadSpec =
  | { kind: 'generated', size: number }
  | { kind: 'text', data: Uint8Array }

/** PEM contents of the --tls-* files. */
export interface TlsFiles {
  cert?: Buffer
  key?: Buffer
  ca?: Buffer
}

export interface PeerConfig {
  ident: string
  listen: Endpoint[]
  connect: Endpoint[]
  sendTo: string | null
  count: number
  payload: PayloadSpec
  /** Seconds; null for no TTL. */
  ttl: number | null
  persistent: boolean
  store: string | null
  expect: number
  echo: boolean
  /** Seconds; null to run until interrupted. */
  timeout: number | null
  /** Seconds; null for no keepalive. */
  keepalive: number | null
  tls: TlsFiles | null
  /** Accept a remote only under an identity its verified certificate names. */
  tlsIdentity: boolean
  /** Outgoing bytes per second on each connection; null for no limit. */
  throttle: number | null
  /** Print only the start and done events on stdout; errors go to stderr. */
  quiet: boolean
  /** A progress line on stderr every second. */
  progress: boolean
}

/** The generated payload size when neither --size nor --data is given. */
export const DEFAULT_SIZE = 16
/** The default --ttl, in seconds (the tutorial's). */
export const DEFAULT_TTL = 600
/** The largest --size that fits in one packet under the default packet limit. */
export const MAX_SIZE = DEFAULT_MAX_PACKET_SIZE - 1 - MESSAGE_HEADER_BYTES

export const peerFlags = {
  ident: { type: 'string' },
  listen: { type: 'string', multiple: true },
  connect: { type: 'string', multiple: true },
  'send-to': { type: 'string' },
  count: { type: 'string' },
  size: { type: 'string' },
  data: { type: 'string' },
  ttl: { type: 'string' },
  persistent: { type: 'boolean' },
  store: { type: 'string' },
  expect: { type: 'string' },
  echo: { type: 'boolean' },
  timeout: { type: 'string' },
  keepalive: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-identity': { type: 'boolean' },
  throttle: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  progress: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
} as const satisfies NonNullable<ParseArgsConfig['options']>

type PeerValues = ReturnType<typeof parseArgs<{ options: typeof peerFlags, strict: true, allowPositionals: true }>>['values']

/**
 * parseArgs refuses `--ttl -1` as ambiguous (the value looks like a flag); a
 * negative number after a flag that takes a value is joined to it (`--ttl=-1`).
 */
function joinNegativeNumbers (args: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    const next = args[i + 1]
    const name = a.startsWith('--') ? a.slice(2) : null
    const spec = name !== null && Object.hasOwn(peerFlags, name) ? peerFlags[name as keyof typeof peerFlags] : null
    if (spec !== null && spec.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`)
      i++
    } else {
      out.push(a)
    }
  }
  return out
}

/** Splits the arguments of `smq peer`; `--help` wins over everything else. */
export function parsePeerArgs (args: readonly string[]): { help: true } | { help: false, values: PeerValues } {
  let parsed
  try {
    parsed = parseArgs({ args: joinNegativeNumbers(args), options: peerFlags, strict: true, allowPositionals: true })
  } catch (err) {
    // parseArgs explains at length how to pass a positional that starts with '-'; the first sentence is the point.
    const first = (err as Error).message.split('\n')[0] ?? String(err)
    throw new UsageError(first.replace(/\. To specify .*$/, ''))
  }
  if (parsed.values.help === true) return { help: true }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`)
  return { help: false, values: parsed.values }
}

function integer (flag: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`--${flag} must be a whole number, got ${JSON.stringify(text)}`)
  const n = Number(text)
  if (n < min || n > max) throw new UsageError(`--${flag} must be from ${min} to ${max}, got ${text}`)
  return n
}

function decimal (flag: string, text: string, { positive, unit = 'seconds' }: { positive: boolean, unit?: string }): number {
  if (!/^-?(\d+\.?\d*|\.\d+)$/.test(text)) throw new UsageError(`--${flag} must be a number of ${unit}, got ${JSON.stringify(text)}`)
  const n = Number(text)
  if (positive && !(n > 0)) throw new UsageError(`--${flag} must be more than 0 ${unit}, got ${text}`)
  return n
}

/** `[HOST:]PORT`, `HOST:PORT` or `[IPV6]:PORT`; a bare port means 127.0.0.1. */
export function parseEndpoint (flag: string, text: string, minPort: number): Endpoint {
  let host = '127.0.0.1'
  let port = text
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(text)
  if (bracketed !== null) {
    host = bracketed[1]!
    port = bracketed[2]!
  } else if (text.includes(':')) {
    const i = text.lastIndexOf(':')
    host = text.slice(0, i)
    port = text.slice(i + 1)
  }
  if (host.length === 0) throw new UsageError(`--${flag} ${JSON.stringify(text)}: the host is empty`)
  if (!/^\d+$/.test(port) || Number(port) < minPort || Number(port) > 65535) {
    throw new UsageError(`--${flag} ${JSON.stringify(text)}: the port must be a number from ${minPort} to 65535`)
  }
  return { host, port: Number(port) }
}

/** `host:port`, with IPv6 hosts in brackets, as the start event shows addresses. */
export function formatEndpoint ({ host, port }: Endpoint): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

async function readPem (flag: string, file: string | undefined): Promise<Buffer | undefined> {
  if (file === undefined) return undefined
  try {
    return await readFile(file)
  } catch (err) {
    throw new UsageError(`--${flag}: cannot read ${file}: ${(err as Error).message}`)
  }
}

/** Checks the values of `smq peer` and reads the files they name. */
export async function peerConfig (v: PeerValues): Promise<PeerConfig> {
  const ident = v.ident
  if (ident === undefined) throw new UsageError('--ident NAME is required')
  if (ident.length === 0 || ident.length > MAX_IDENTITY_LENGTH) {
    throw new UsageError(`--ident must be 1 to ${MAX_IDENTITY_LENGTH} characters long`)
  }
  const sendTo = v['send-to'] ?? null
  if (sendTo === '') throw new UsageError('--send-to needs an identity')
  if (sendTo === null) {
    for (const flag of ['count', 'size', 'data', 'ttl', 'persistent'] as const) {
      if (v[flag] !== undefined) throw new UsageError(`--${flag} applies to the messages of --send-to, which is missing`)
    }
  }
  if (v.size !== undefined && v.data !== undefined) throw new UsageError('give either --size or --data, not both')
  const payload: PayloadSpec = v.data !== undefined
    ? { kind: 'text', data: Buffer.from(v.data, 'utf8') }
    : { kind: 'generated', size: v.size !== undefined ? integer('size', v.size, 0, MAX_SIZE) : DEFAULT_SIZE }
  if (payload.kind === 'text' && payload.data.byteLength > MAX_SIZE) throw new UsageError('--data is larger than one packet may be')
  const ttl = v.ttl !== undefined ? decimal('ttl', v.ttl, { positive: false }) : DEFAULT_TTL
  const tlsRequested = v['tls-cert'] !== undefined || v['tls-key'] !== undefined || v['tls-ca'] !== undefined
  if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together')
  const listen = (v.listen ?? []).map((t) => parseEndpoint('listen', t, 0))
  if (tlsRequested && listen.length > 0 && v['tls-cert'] === undefined) {
    throw new UsageError('a TLS listener needs --tls-cert and --tls-key')
  }
  if (v['tls-identity'] === true && v['tls-ca'] === undefined) {
    throw new UsageError('--tls-identity needs --tls-ca: only a verified certificate can vouch for a name')
  }
  let tls: TlsFiles | null = null
  if (tlsRequested) {
    const [cert, key, ca] = await Promise.all([readPem('tls-cert', v['tls-cert']), readPem('tls-key', v['tls-key']), readPem('tls-ca', v['tls-ca'])])
    tls = { ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}), ...(ca !== undefined ? { ca } : {}) }
  }
  return {
    ident,
    listen,
    connect: (v.connect ?? []).map((t) => parseEndpoint('connect', t, 1)),
    sendTo,
    count: v.count !== undefined ? integer('count', v.count, 0) : 1,
    payload,
    ttl: ttl < 0 ? null : ttl,
    persistent: v.persistent === true,
    store: v.store ?? null,
    expect: v.expect !== undefined ? integer('expect', v.expect, 0) : 0,
    echo: v.echo === true,
    timeout: v.timeout !== undefined ? decimal('timeout', v.timeout, { positive: true }) : null,
    keepalive: v.keepalive !== undefined ? decimal('keepalive', v.keepalive, { positive: true }) : null,
    tls,
    tlsIdentity: v['tls-identity'] === true,
    throttle: v.throttle !== undefined ? decimal('throttle', v.throttle, { positive: true, unit: 'bytes per second' }) : null,
    quiet: v.quiet === true,
    progress: v.progress === true
  }
}
