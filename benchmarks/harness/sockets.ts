// Small pieces every implementation's roles share: binding a loopback listener,
// connecting to one, and waiting for the harness's stop signal.
import net from 'node:net'
import { once } from 'node:events'
import { HOST, type RoleControl } from './types.ts'

/** Binds `server` to a free port on the loopback address; resolves with the port. */
export function listen (server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: HOST, port: 0, exclusive: true }, () => {
      const addr = server.address()
      if (addr === null || typeof addr === 'string') reject(new Error('no TCP address'))
      else resolve(addr.port)
    })
  })
}

/** A connected loopback socket with Nagle off. */
export async function connect (port: number): Promise<net.Socket> {
  const socket = net.connect({ host: HOST, port, noDelay: true })
  await once(socket, 'connect')
  return socket
}

/** Resolves when the ctl.stop signal aborts. */
export function stopped (ctl: RoleControl): Promise<void> {
  if (ctl.stop.aborted) return Promise.resolve()
  return once(ctl.stop, 'abort').then(() => {})
}
