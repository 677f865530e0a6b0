// Logging: silent by default, switched on with DEBUG=snakemq:* (or a finer
// namespace: snakemq:link, snakemq:messaging, snakemq:store, snakemq:rpc), or
// replaced by an application's own logger through the `logger` options.
import createDebug from 'debug'

/** Structured context for a log line: connection ids, peer names, frame types. Never message contents. */
export type LogFields = Record<string, unknown>

/** Where log lines go. Each component takes one as its `logger` option. */
export interface Logger {
  debug (message: string, fields?: LogFields): void
  info (message: string, fields?: LogFields): void
  warn (message: string, fields?: LogFields): void
  error (message: string, fields?: LogFields): void
}

/** The components that log, each under `snakemq:<component>`. */
export type LogComponent = 'link' | 'messaging' | 'store' | 'rpc' | 'cli'

function format (level: string, message: string, fields?: LogFields): string {
  if (fields === undefined) return `${level} ${message}`
  const parts: string[] = []
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue
    parts.push(`${k}=${v instanceof Error ? `${v.name}: ${v.message}` : typeof v === 'string' ? v : JSON.stringify(v)}`)
  }
  return parts.length > 0 ? `${level} ${message} ${parts.join(' ')}` : `${level} ${message}`
}

/** The default logger of a component: the `debug` namespace `snakemq:<component>`. */
export function debugLogger (component: LogComponent): Logger {
  const d = createDebug(`snakemq:${component}`)
  const line = (level: string) => (message: string, fields?: LogFields): void => {
    if (d.enabled) d('%s', format(level, message, fields))
  }
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') }
}

/** A logger that drops everything. */
export const silentLogger: Logger = { debug () {}, info () {}, warn () {}, error () {} }
