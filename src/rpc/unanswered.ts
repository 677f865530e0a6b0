// Answers for RPC messages that reach a Messaging with no one to take them: a
// request with no RpcServer gets "unknown object" (snakeMQ's NoInstanceError for a
// snakeMQ-format one), a reply with no RpcClient is dropped. An RpcClient answers
// them itself while no server is there; once a Messaging's RpcServer or its last
// RpcClient has closed, fallback consumers do it (see answerOrphans), so RPC bytes
// never reach the application's own loop and no caller waits for ever.
import type { Messaging } from '../messaging/messaging.ts'
import type { Message } from '../messaging/types.ts'
import type { Logger } from '../logging.ts'
import { decodePickle } from './pickle-decode.ts'
import type { PickleCodecOptions } from './pickle.ts'
import { hasClients, hasServer } from './registry.ts'
import { SNAKEMQ_PREFIX_BYTES, SNAKEMQ_REPLY_PREFIX, SNAKEMQ_REQUEST_PREFIX, formatExceptionOnly, noInstanceError, readSnakeRequest, snakeExceptionMessage } from './snakemq.ts'
import { BODY_OFFSET, Kind, RPC_MAGIC, RPC_VERSION, Status, failedMessage, isReply, tail } from './wire.ts'

/** A request in this library's format reached `mq`, which has no RpcServer: a call is answered "unknown object". */
export function answerWithoutServer (mq: Messaging, log: Logger, m: Message, why: string): void {
  const data = m.data
  log.warn(`an RPC request reached a Messaging ${why}`, { from: m.from })
  if (data.length >= BODY_OFFSET && data[6] === RPC_VERSION && data[7] === Kind.Call) {
    mq.send(m.from, failedMessage(data, Status.UnknownObject, 'no RpcServer'), { ttl: 60 }).catch((err: unknown) => {
      log.warn('an RPC reply could not be queued', { to: m.from, error: err as Error })
    })
  }
}

/** A snakeMQ-format request reached `mq`, which has no RpcServer: a call gets snakeMQ's NoInstanceError. */
export function answerSnakeWithoutServer (mq: Messaging, log: Logger, m: Message, why: string, codec?: PickleCodecOptions): void {
  log.warn(`a snakeMQ RPC request reached a Messaging ${why}`, { from: m.from })
  let req
  try {
    req = readSnakeRequest(decodePickle(tail(m.data, SNAKEMQ_PREFIX_BYTES), codec))
  } catch {
    return
  }
  if (typeof req === 'string' || req.reqId === null) return
  const e = noInstanceError(req.object)
  mq.send(m.from, snakeExceptionMessage(req.reqId, e, formatExceptionOnly(e)), { ttl: 60 }).catch((err: unknown) => {
    log.warn('an RPC reply could not be queued', { to: m.from, error: err as Error })
  })
}

const orphaned = new WeakSet<Messaging>()

/**
 * Once per Messaging, when its RpcServer or an RpcClient closes: consumers that
 * take RPC messages while it has neither (requests answered as above, replies
 * dropped), and leave them to a server or client made later.
 */
export function answerOrphans (mq: Messaging, log: Logger): void {
  if (orphaned.has(mq)) return
  orphaned.add(mq)
  const none = (): boolean => !hasServer(mq) && !hasClients(mq)
  const why = 'whose RpcServer is closed (or that never had one)'
  mq.consume({ prefix: RPC_MAGIC, filter: none }, (m) => {
    if (isReply(m.data)) log.debug('dropped an RPC reply: no RpcClient on this Messaging', { from: m.from })
    else answerWithoutServer(mq, log, m, why)
  })
  mq.consume({ prefix: SNAKEMQ_REQUEST_PREFIX, filter: none }, (m) => { answerSnakeWithoutServer(mq, log, m, why) })
  mq.consume({ prefix: SNAKEMQ_REPLY_PREFIX, filter: none }, (m) => {
    log.debug('dropped a snakeMQ RPC reply: no RpcClient on this Messaging', { from: m.from })
  })
}
