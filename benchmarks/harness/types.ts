// The contract between the benchmark harness and an implementation (raw node:net,
// zeromq.js, snakemq). An implementation is one module under benchmarks/impl/ whose
// default export satisfies `Impl`; benchmarks/impl/index.ts lists the modules.
//
// Every scenario runs in two fresh child processes (never in the harness process),
// spawned as `process.execPath --import tsx benchmarks/harness/child.ts <spec>`. The
// child imports the implementation module and calls one of its role functions.
// Children talk to the harness over the IPC channel only; they never print results.

/** The only address a benchmark may use. */
export const HOST = '127.0.0.1'

/** What a role passes back once it can be reached (a server: listening). */
export interface ReadyInfo {
  /** TCP port on 127.0.0.1 the peer should connect to. */
  port?: number
  [key: string]: unknown
}

/** Handed to every role function running in a child. */
export interface RoleControl {
  /** Tell the harness the role is ready; servers pass the port they listen on. */
  ready(info?: ReadyInfo): void
  /** Aborted when the harness asks the role to finish (or is tearing the run down). */
  readonly stop: AbortSignal
  /**
   * Receivers hand every received message here (the harness checks its length and
   * times the first and the last). Returns true once `args.count` messages arrived.
   */
  deliver(msg: Uint8Array): boolean
  /** Resolves once `args.count` messages have been delivered. */
  readonly delivered: Promise<void>
}

/** S1, S2: `count` messages of `size` bytes from the sender to the receiver. */
export interface StreamArgs {
  count: number
  size: number
}

export interface StreamSenderArgs extends StreamArgs {
  host: typeof HOST
  port: number
}

/** S3a, S3b: the server echoes each request's payload back. */
export interface RpcServerArgs {
  size: number
}

export interface RpcClientArgs {
  host: typeof HOST
  port: number
  size: number
}

/** One client connection; `call` sends `req` and resolves with the server's echo of it. */
export interface RpcConnection {
  call(req: Buffer): Promise<Uint8Array>
  close(): Promise<void>
}

export interface S4Params {
  /** Persistent messages to enqueue with the receiver absent. */
  count: number
  size: number
}

export interface MemoryParams {
  /** Messages to hold queued in memory. */
  queued: number
  size: number
}

export interface S4Result {
  enqueue_per_s: number
  drain_s: number
}

export interface MemoryResult {
  bytes_per_queued_msg: number
}

/** A role that runs in a child process. `args` arrive as JSON. */
export type RoleFn = (args: Record<string, unknown>, ctl: RoleControl) => Promise<unknown>

/** What a finished child reports. */
export interface RoleResult {
  /** Whatever the role function resolved with (JSON). */
  value: unknown
  /** Peak resident set size of the child, process.resourceUsage().maxRSS, in MB (1e6 bytes). */
  maxRssMb: number
  /** Set when the role delivered messages through ctl.deliver. */
  delivery?: { count: number, bytes: number, firstToLastS: number }
}

/** A child process running one role; see Harness.spawn. */
export interface RoleHandle {
  readonly pid: number | undefined
  /** Resolves with what the role passed to ctl.ready. */
  readonly ready: Promise<ReadyInfo>
  /** Resolves when the role function resolved; rejects if it threw, the child died or timed out. */
  readonly result: Promise<RoleResult>
  /** Aborts the role's ctl.stop; the child exits once its role has resolved. */
  stop(): void
  /** Resolves once the child process has exited. */
  readonly exited: Promise<void>
}

/** Given to parent-side scenario functions (s4, memory) to run their own roles. */
export interface Harness {
  readonly quick: boolean
  /** A fresh directory for stores, deleted after the run. */
  readonly tmpdir: string
  /** Runs `impl.roles[role]` (or a standard role) in a new child process. */
  spawn(role: string, args: Record<string, unknown>): RoleHandle
}

/**
 * An implementation. Provide the functions for the scenarios it can run; the harness
 * skips the others. The module must not import heavy or native dependencies at top
 * level (the harness process imports it to call `unavailable`); import them inside
 * the functions instead.
 */
export interface Impl {
  /** Resolves to undefined when usable here, else to the reason to skip it. Runs in the harness. */
  unavailable?(): Promise<string | undefined>

  /** S1/S2 receiver (child): listen on HOST port 0, ctl.ready({ port }), ctl.deliver every message, close, resolve. */
  streamReceiver?(args: StreamArgs, ctl: RoleControl): Promise<void>
  /** S1/S2 sender (child): connect, send `count` messages of `size` bytes, resolve when none can be lost by closing. */
  streamSender?(args: StreamSenderArgs, ctl: RoleControl): Promise<void>

  /** S3 server (child): listen on HOST port 0, ctl.ready({ port }), echo every request until ctl.stop aborts. */
  rpcServer?(args: RpcServerArgs, ctl: RoleControl): Promise<void>
  /** S3 client (child): connect to the server; the harness drives `call` and times it. */
  rpcConnect?(args: RpcClientArgs): Promise<RpcConnection>

  /** S4 (harness process): orchestrate its own roles via h.spawn. */
  s4?(h: Harness, params: S4Params): Promise<S4Result>
  /** Memory (harness process): orchestrate its own roles via h.spawn. */
  memory?(h: Harness, params: MemoryParams): Promise<MemoryResult>

  /** Extra child roles for s4 and memory, spawned by name with h.spawn. */
  roles?: Record<string, RoleFn>
}
