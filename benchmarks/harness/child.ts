// Entry point of every benchmark child process:
//   node --import tsx benchmarks/harness/child.ts '<ChildSpec as JSON>'
// Imports the implementation module, runs one role, reports over IPC, then waits
// for the harness's stop before exiting (so a sender's socket outlives the receiver's
// last read). Exits by itself if the harness goes away.
import { pathToFileURL } from 'node:url'
import { hrtime } from 'node:process'
import { driveRpc, type RpcDriveArgs } from './rpc-driver.ts'
import type { Impl, ReadyInfo, RoleControl, RoleFn, RoleResult, RpcClientArgs, StreamArgs, StreamSenderArgs, RpcServerArgs } from './types.ts'

export interface ChildSpec {
  implFile: string
  role: string
  args: Record<string, unknown>
}

export type ToParent =
  | { type: 'ready', info: ReadyInfo }
  | { type: 'result', result: RoleResult }
  | { type: 'error', message: string }

export type ToChild = { type: 'stop' }

function send (msg: ToParent): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) { resolve(); return }
    process.send(msg, undefined, {}, () => { resolve() })
  })
}

if (process.send === undefined) {
  console.error('benchmarks/harness/child.ts is started by benchmarks/tuned.ts, not by hand')
  process.exit(2)
}
process.on('disconnect', () => process.exit(3))

const spec = JSON.parse(process.argv[2] ?? '{}') as ChildSpec
const stopper = new AbortController()
process.on('message', (m: ToChild) => { if (m.type === 'stop') stopper.abort() })
const stopped = new Promise<void>((resolve) => {
  if (stopper.signal.aborted) resolve()
  else stopper.signal.addEventListener('abort', () => { resolve() }, { once: true })
})

// Delivery accounting for receivers: cheap enough to call once per message.
const expected = typeof spec.args.count === 'number' ? spec.args.count : Number.POSITIVE_INFINITY
const expectedSize = typeof spec.args.size === 'number' ? spec.args.size : -1
let count = 0
let bytes = 0
let first = 0n
let last = 0n
let markDelivered: () => void = () => {}
const delivered = new Promise<void>((resolve) => { markDelivered = resolve })
let sizeError: Error | undefined

const ctl: RoleControl = {
  ready (info: ReadyInfo = {}) { void send({ type: 'ready', info }) },
  stop: stopper.signal,
  deliver (msg: Uint8Array): boolean {
    if (count === 0) first = hrtime.bigint()
    if (expectedSize >= 0 && msg.length !== expectedSize && sizeError === undefined) {
      sizeError = new Error(`message ${count} has ${msg.length} bytes, expected ${expectedSize}`)
    }
    bytes += msg.length
    if (++count === expected) {
      last = hrtime.bigint()
      markDelivered()
    }
    return count >= expected
  },
  delivered
}

async function main (): Promise<void> {
  const mod = await import(pathToFileURL(spec.implFile).href) as { default?: Impl }
  const impl = mod.default
  if (impl === undefined) throw new Error(`${spec.implFile} has no default export`)
  const a = spec.args
  let value: unknown
  switch (spec.role) {
    case 'idle':
      value = null
      break
    case 'streamReceiver':
      if (impl.streamReceiver === undefined) throw new Error('no streamReceiver')
      await impl.streamReceiver(a as unknown as StreamArgs, ctl)
      break
    case 'streamSender':
      if (impl.streamSender === undefined) throw new Error('no streamSender')
      await impl.streamSender(a as unknown as StreamSenderArgs, ctl)
      break
    case 'rpcServer':
      if (impl.rpcServer === undefined) throw new Error('no rpcServer')
      await impl.rpcServer(a as unknown as RpcServerArgs, ctl)
      break
    case 'rpcClient': {
      if (impl.rpcConnect === undefined) throw new Error('no rpcConnect')
      const conn = await impl.rpcConnect(a as unknown as RpcClientArgs)
      try {
        value = await driveRpc(conn, a as unknown as RpcDriveArgs)
      } finally {
        await conn.close()
      }
      break
    }
    default: {
      const fn: RoleFn | undefined = impl.roles?.[spec.role]
      if (fn === undefined) throw new Error(`no role ${spec.role}`)
      value = await fn(a, ctl)
    }
  }
  if (sizeError !== undefined) throw sizeError
  if (Number.isFinite(expected) && count > 0 && count !== expected) {
    throw new Error(`delivered ${count} messages, expected ${expected}`)
  }
  const result: RoleResult = { value: value ?? null, maxRssMb: (process.resourceUsage().maxRSS * 1024) / 1e6 }
  if (count > 0) result.delivery = { count, bytes, firstToLastS: Number(last - first) / 1e9 }
  await send({ type: 'result', result })
  await stopped
  process.exit(0)
}

main().catch(async (err: unknown) => {
  await send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  process.exit(1)
})
