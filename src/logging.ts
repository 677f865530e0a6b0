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

/**
 * One log method in pino's argument order: the fields first, then the message.
 * Method syntax, so pino's overloaded `LogFn` fits.
 */
export interface FieldsFirstLogger {
  debug (fields: LogFields, message: string): void
  info (fields: LogFields, message: string): void
  warn (fields: LogFields, message: string): void
  error (fields: LogFields, message: string): void
}

/** Options of {@link pinoLogger}. */
export interface PinoLoggerOptions {
  /**
   * The field an `error` field's Error is moved to, so that pino's error
   * serializer writes its type, message and stack (pino leaves an Error under
   * any other key as `{}`). Match pino's own `errorKey` option. Default `'err'`.
   */
  errorKey?: string
}

const NO_FIELDS: LogFields = Object.freeze({})

/**
 * A {@link Logger} that writes to a pino logger (or any logger taking
 * `(fields, message)`), for the `logger` option of `Link`, `Messaging`,
 * `LevelStore`, `RpcServer` and `RpcClient`. pino is not a dependency of this
 * package: pass your own instance, or a child of it to name the component:
 *
 * ```ts
 * const log = pino()
 * const mq = new Messaging(link, { identity: 'bob', logger: pinoLogger(log.child({ component: 'messaging' })) })
 * ```
 */
export function pinoLogger (target: FieldsFirstLogger, options: PinoLoggerOptions = {}): Logger {
  const errorKey = options.errorKey ?? 'err'
  const adapt = (fields: LogFields | undefined): LogFields => {
    if (fields === undefined) return NO_FIELDS
    const error = fields.error
    if (!(error instanceof Error) || errorKey === 'error') return fields
    const { error: _moved, ...rest } = fields
    return { ...rest, [errorKey]: error }
  }
  return {
    debug (message, fields) { target.debug(adapt(fields), message) },
    info (message, fields) { target.info(adapt(fields), message) },
    warn (message, fields) { target.warn(adapt(fields), message) },
    error (message, fields) { target.error(adapt(fields), message) }
  }
}

/**
 * The key Node's util.inspect (and so console.log) looks up on an object for how
 * to show it; a plain symbol, looked up by nothing, in a browser. Not exported by
 * the package, but kept in the declarations: those of what uses it need it.
 */
export const INSPECT = Symbol.for('nodejs.util.inspect.custom')
