// Which Messaging instances have an RpcServer, and how many RpcClients, so that
// each RPC message finds a taker: with no server on a Messaging its clients answer
// requests (the object is unknown there), with no client its server drops replies.
// An RPC message nobody takes would wait for a consumer forever and, counted
// against the receive buffer, could in the end stop the connection being read.
import type { Messaging } from '../messaging/messaging.ts'

const servers = new WeakSet<Messaging>()
const clients = new WeakMap<Messaging, number>()

export function hasServer (mq: Messaging): boolean { return servers.has(mq) }
/** Returns false if `mq` already has a server. */
export function addServer (mq: Messaging): boolean {
  if (servers.has(mq)) return false
  servers.add(mq)
  return true
}
export function removeServer (mq: Messaging): void { servers.delete(mq) }

export function hasClients (mq: Messaging): boolean { return (clients.get(mq) ?? 0) > 0 }
export function addClient (mq: Messaging): void { clients.set(mq, (clients.get(mq) ?? 0) + 1) }
export function removeClient (mq: Messaging): void {
  const n = (clients.get(mq) ?? 0) - 1
  if (n > 0) clients.set(mq, n)
  else clients.delete(mq)
}
