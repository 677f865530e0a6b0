// Property and fuzz tests (fast-check): the framing and the frame codec against
// random chunk boundaries and hostile bytes, the RPC codec against mutated
// encodings, and a model-based test of acknowledged delivery: random sequences of
// sends, acks, partial deliveries, disconnects, reconnects, crashes and TTL time
// passing, checked against what the application must see.
//
// The model test drives two real Messaging peers over an in-memory wire whose
// bytes move only when the test says so, with Date and setTimeout mocked, so a
// run is deterministic and needs no sleeping. Runs are bounded so the file takes
// a few seconds.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { pipe } from 'it-pipe'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  Link, Messaging, PacketDecoder, decodePackets, decodeFrames, encodeFrame, decodeFrame, encodePacketBatch, FrameType,
  PacketTooLargeError, ProtocolError, TruncatedPacketError, MessageDroppedError, QueueFullError,
  type Channel, type ChannelReader, type Frame, type Message, type QueueStore, type StoreBatch
} from '../src/index.ts'
import { MemoryStore } from '../src/store/memory.ts'
import { encodeValue, decodeValue } from '../src/rpc/codec.ts'
import { RpcCodecError } from '../src/rpc/errors.ts'

// One seed for the file's properties, printed, so that a failing or hanging run
// can be repeated: FC_SEED=<n> node scripts/run-tests.mjs test/fuzz.test.ts
const seed = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : (Math.random() * 2 ** 31) | 0
fc.configureGlobal({ seed })
console.log(`fast-check seed ${seed} (FC_SEED=${seed} repeats it)`)

/** The only errors bytes from the network may produce in framing and the frame codec. */
function isTypedWireError (err: unknown): boolean {
  return err instanceof PacketTooLargeError || err instanceof ProtocolError || err instanceof TruncatedPacketError
}

// ---- arbitraries ---------------------------------------------------------------

const bytes16 = fc.uint8Array({ minLength: 16, maxLength: 16 })
const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant(FrameType.ProtocolVersion), version: fc.nat({ max: 0xFFFFFFFF }) }),
  fc.record({ type: fc.constant(FrameType.IncompatibleProtocol) }),
  fc.record({ type: fc.constant(FrameType.Identification), identity: fc.string({ unit: 'grapheme', maxLength: 60 }) }),
  fc.record({
    type: fc.constant(FrameType.Message),
    uuid: bytes16,
    ttl: fc.nat({ max: 0xFFFFFFFF }),
    flags: fc.nat({ max: 0xFFFFFFFF }),
    data: fc.oneof({ weight: 8, arbitrary: fc.uint8Array({ maxLength: 200 }) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 4096, maxLength: 20_000 }) })
  }),
  fc.record({ type: fc.constant(FrameType.Ping) }),
  fc.record({ type: fc.constant(FrameType.Pong) }),
  fc.record({ type: fc.constant(FrameType.Extensions), version: fc.nat({ max: 255 }), features: fc.nat({ max: 0xFFFFFFFF }) }),
  fc.record({ type: fc.constant(FrameType.Ack), uuids: fc.array(bytes16, { minLength: 1, maxLength: 8 }).map((us) => Buffer.concat(us)) })
) as fc.Arbitrary<Frame>

/** Cut points, as fractions of whatever length they are applied to. */
const cutsArb = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 24 })

/** Splits `buf` at the given fractions of its length; chunks may be empty. */
function split (buf: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const at = cuts.map((c) => Math.floor(c * buf.length)).sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let prev = 0
  for (const p of at) { out.push(buf.subarray(prev, p)); prev = p }
  out.push(buf.subarray(prev))
  return out
}

function wireOf (payloads: ReadonlyArray<Uint8Array | Uint8ArrayList>): Buffer {
  return Buffer.concat(encodePacketBatch(payloads))
}

/** Frames compared by content (views and copies alike). */
function normalize (f: Frame | null): unknown {
  if (f === null) return null
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(f)) {
    out[k] = v instanceof Uint8Array || v instanceof Uint8ArrayList ? Buffer.from(v instanceof Uint8Array ? v : v.subarray()).toString('hex') : v
  }
  return out
}

/** Byte-level mutations of a valid stream, as a hostile or broken peer would produce. */
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) })
)
type Mutation = typeof mutationArb extends fc.Arbitrary<infer M> ? M : never

function mutate (buf: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let b = Buffer.from(buf)
  for (const m of mutations) {
    const at = Math.floor(m.at * b.length)
    switch (m.kind) {
      case 'flip': if (b.length > 0) b[Math.min(at, b.length - 1)] = m.value; break
      case 'insert': b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]); break
      case 'delete': b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]); break
      case 'truncate': b = b.subarray(0, at); break
    }
  }
  return b
}

/**
 * Feeds chunks to a fresh decoder and decodes each packet as a frame, the way a
 * session does: stops at the first error, which must be typed. Checks on the way
 * that no packet exceeds the limit and that at most one partial packet is held.
 */
function feed (chunks: readonly Uint8Array[], maxPacketSize: number): { frames: Array<Frame | null>, error: unknown } {
  const decoder = new PacketDecoder({ maxPacketSize })
  const frames: Array<Frame | null> = []
  try {
    for (const c of chunks) {
      for (const p of decoder.push(c)) {
        assert.ok(p.length <= maxPacketSize, `a packet of ${p.length} bytes passed a limit of ${maxPacketSize}`)
        frames.push(decodeFrame(p))
      }
      assert.ok(decoder.buffered < maxPacketSize + 4, `the decoder holds ${decoder.buffered} bytes with a limit of ${maxPacketSize}`)
    }
    decoder.end()
  } catch (err) {
    if (!isTypedWireError(err)) throw err
    return { frames, error: err }
  }
  return { frames, error: null }
}

// ---- framing and frame codec ------------------------------------------------------

test('random chunk boundaries yield the same packets', () => {
  const payloadArb = fc.oneof({ weight: 10, arbitrary: fc.uint8Array({ maxLength: 300 }) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 16 * 1024, maxLength: 40_000 }) })
  fc.assert(fc.property(fc.array(payloadArb, { maxLength: 30 }), cutsArb, (payloads, cuts) => {
    const decoder = new PacketDecoder()
    const got: Uint8Array[] = []
    for (const chunk of split(wireOf(payloads), cuts)) decoder.push(chunk, got)
    decoder.end()
    assert.equal(decoder.buffered, 0)
    assert.deepEqual(got.map((p) => Buffer.from(p).toString('hex')), payloads.map((p) => Buffer.from(p).toString('hex')))
  }), { numRuns: 300 })
})

test('random chunk boundaries yield the same frames, through the async transforms too', async () => {
  await fc.assert(fc.asyncProperty(fc.array(frameArb, { maxLength: 20 }), cutsArb, fc.boolean(), async (frames, cuts, asLists) => {
    const wire = wireOf(frames.map((f) => encodeFrame(f)))
    const chunks = split(wire, cuts)
    // Chunks arrive as bytes or, like it-length-prefixed's callers do, as lists of bytes.
    const source = asLists ? chunks.map((c) => new Uint8ArrayList(c.subarray(0, c.length >> 1), c.subarray(c.length >> 1))) : chunks
    const got: Frame[] = []
    await pipe(source, decodePackets(), decodeFrames(), async (batches) => { for await (const b of batches) got.push(...b) })
    assert.deepEqual(got.map(normalize), frames.map(normalize))
  }), { numRuns: 200 })
})

test('random bytes into PacketDecoder and decodeFrame end in frames or a typed error', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), cutsArb, fc.integer({ min: 0, max: 3000 }), (bytes, cuts, limit) => {
    feed(split(bytes, cuts), limit)
  }), { numRuns: 1000 })
})

test('random packet payloads into decodeFrame give a frame, null (unknown type) or a ProtocolError', () => {
  const payloadArb = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.tuple(fc.constantFrom(0, 1, 2, 3, 4, 5, 16, 17, 18, 255), fc.uint8Array({ maxLength: 64 })).map(([t, body]) => Buffer.concat([Buffer.of(t), body])),
    fc.tuple(fc.constantFrom(2), fc.uint8Array({ minLength: 1000, maxLength: 1100 })).map(([t, body]) => Buffer.concat([Buffer.of(t), body]))
  )
  fc.assert(fc.property(payloadArb, (payload) => {
    try {
      const f = decodeFrame(payload)
      if (f === null) assert.ok(payload[0]! > 5 && payload[0] !== FrameType.Extensions && payload[0] !== FrameType.Ack)
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err
    }
  }), { numRuns: 2000 })
})

test('mutated valid streams (flipped, inserted, deleted, truncated bytes) end in frames or a typed error', () => {
  fc.assert(fc.property(
    fc.array(frameArb, { minLength: 1, maxLength: 12 }), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), cutsArb,
    fc.constantFrom(64, 1024, 64 * 1024 * 1024),
    (frames, mutations, cuts, limit) => {
      const wire = mutate(wireOf(frames.map((f) => encodeFrame(f))), mutations)
      feed(split(wire, cuts), limit)
    }), { numRuns: 1000 })
})

test('the async pipeline over hostile bytes always finishes, with a typed error or none', async () => {
  await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), cutsArb, fc.integer({ min: 0, max: 700 }), async (bytes, cuts, limit) => {
    async function * slowly (): AsyncGenerator<Uint8Array> {
      for (const c of split(bytes, cuts)) { await new Promise((resolve) => setImmediate(resolve)); yield c }
    }
    const run = pipe(slowly(), decodePackets({ maxPacketSize: limit }), decodeFrames(), async (batches) => { for await (const _ of batches) { /* drain */ } })
    let timer: NodeJS.Timeout | undefined
    const hang = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error('the pipeline hung')) }, 10_000) })
    try {
      await Promise.race([run, hang])
    } catch (err) {
      if (!isTypedWireError(err)) throw err
    } finally {
      clearTimeout(timer)
    }
  }), { numRuns: 150 })
})

test('a length header over the limit fails at once, after the packets before it in the same chunk', async () => {
  await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 50 }), { maxLength: 5 }), fc.integer({ min: 101, max: 0xFFFFFFFF }), cutsArb, async (bodies, len, cuts) => {
    const header = Buffer.alloc(4)
    header.writeUInt32BE(len)
    // PINGs (bodies are ignored) then a header over the limit: the decoder must not wait for its payload.
    const wire = Buffer.concat([wireOf(bodies.map((b) => Buffer.concat([Buffer.of(FrameType.Ping), b]))), header])
    const got: Frame[] = []
    const run = pipe(split(wire, cuts), decodePackets({ maxPacketSize: 100 }), decodeFrames(), async (batches) => { for await (const b of batches) got.push(...b) })
    await assert.rejects(run, (err: unknown) => err instanceof PacketTooLargeError && err.length === len && err.limit === 100)
    assert.equal(got.length, bodies.length)
  }), { numRuns: 300 })
})

test('mutated RPC encodings decode to a value or give RpcCodecError, and always finish', () => {
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (value, mutations) => {
    const bytes = mutate(encodeValue(value), mutations)
    try {
      decodeValue(bytes, { maxDepth: 16, maxBytes: 4096, maxValues: 4096 })
    } catch (err) {
      if (!(err instanceof RpcCodecError)) throw err
    }
  }), { numRuns: 1000 })
})

// ---- model-based test of acknowledged delivery --------------------------------------

let memIds = 0

/**
 * One end of an in-memory connection: a Channel whose bytes, once written, wait
 * in its `outbox` until the test delivers them to the other end; closing either
 * end closes both and loses whatever was not delivered (as a reset would).
 */
class MemEnd implements Channel {
  readonly id = `m${++memIds}`
  readonly transport = 'memory'
  readonly remoteAddress = 'memory'
  readonly remotePort = 0
  readonly peerCertificate = null
  readonly peerAuthorized = false
  readonly peerAuthorizationError = null
  readonly encrypted = false
  readonly writable = true
  readonly writableLength = 0
  bytesOut = 0
  bytesIn = 0
  error: Error | undefined
  isOpen = true
  other!: MemEnd
  readonly closed: Promise<void>
  outbox: Buffer[] = []
  private inbox: Buffer[] = []
  private reader: ChannelReader | null = null
  private paused = false
  private markClosed!: () => void

  constructor (readonly direction: 'inbound' | 'outbound') {
    this.closed = new Promise((resolve) => { this.markClosed = resolve })
  }

  static pair (): [MemEnd, MemEnd] {
    const a = new MemEnd('inbound')
    const b = new MemEnd('outbound')
    a.other = b
    b.other = a
    return [a, b]
  }

  get pending (): number { let n = 0; for (const c of this.outbox) n += c.length; return n }

  /** Hands bytes to `reader` as they are delivered, as a socket's data events do. */
  read (reader: ChannelReader): void {
    this.reader = reader
    queueMicrotask(() => { this.handOn() })
  }

  pause (): void { this.paused = true }
  resume (): void {
    this.paused = false
    queueMicrotask(() => { this.handOn() })
  }

  /** Gives what waits in the inbox to the reader, unless paused. */
  private handOn (): void {
    while (this.reader !== null && !this.paused && this.inbox.length > 0) this.reader.data(this.inbox.shift()!)
    if (this.reader !== null && !this.isOpen && this.inbox.length === 0) {
      const r = this.reader
      this.reader = null
      r.end(null)
    }
  }

  write (chunks: Uint8Array | readonly Uint8Array[]): boolean {
    if (!this.isOpen) return false
    // Copied, as a socket would: the writer may reuse its buffers.
    for (const c of chunks instanceof Uint8Array ? [chunks] : chunks) {
      this.outbox.push(Buffer.from(c))
      this.bytesOut += c.length
    }
    return true
  }

  async drained (): Promise<void> {}

  /** Moves up to `max` written bytes to the other end; returns how many moved. */
  deliver (max: number): number {
    let moved = 0
    while (moved < max && this.outbox.length > 0 && this.isOpen) {
      const c = this.outbox[0]!
      const n = Math.min(c.length, max - moved)
      this.other.receive(c.subarray(0, n))
      if (n === c.length) this.outbox.shift()
      else this.outbox[0] = c.subarray(n)
      moved += n
    }
    return moved
  }

  private receive (c: Buffer): void {
    this.inbox.push(c)
    this.bytesIn += c.length
    if (this.reader !== null) this.handOn()
  }

  close (error?: Error): void {
    if (!this.isOpen) return
    if (error !== undefined) this.error ??= error
    this.isOpen = false
    this.outbox = []
    if (this.reader !== null) queueMicrotask(() => { this.handOn() })
    this.markClosed()
    this.other.close()
  }

  async end (error?: Error): Promise<void> { this.close(error) }
}

/** A QueueStore that can "crash": after `crash()` nothing it is given is written any more. */
class CrashableStore implements QueueStore {
  readonly durable = true
  private dead = false
  constructor (private readonly inner: MemoryStore) {}
  // Each incarnation (process) holds its own claim: the inner store stands for the disk.
  claim (): void {}
  release (): void {}
  async load (): ReturnType<QueueStore['load']> { return await this.inner.load() }
  async summary (): ReturnType<QueueStore['summary']> { return await this.inner.summary() }
  async read (peer: string, fromSeq: number, limit: number): ReturnType<QueueStore['read']> { return await this.inner.read(peer, fromSeq, limit) }
  async write (batch: StoreBatch): Promise<void> { if (!this.dead) await this.inner.write(batch) }
  async close (): Promise<void> { /* the inner store outlives every incarnation */ }
  crash (): void { this.dead = true }
}

type Op =
  | { op: 'send', ttl: number | null, persistent: boolean }
  | { op: 'pump', dir: 'ab' | 'ba', bytes: number }
  | { op: 'take', n: number }
  | { op: 'ack', n: number }
  | { op: 'disconnect' }
  | { op: 'reconnect' }
  | { op: 'advance', ms: number }
  | { op: 'crashReceiver' }
  | { op: 'crashSender' }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('send' as const), ttl: fc.constantFrom(null, null, 0, 1, 2.5), persistent: fc.boolean() }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('pump' as const), dir: fc.constantFrom('ab' as const, 'ba' as const), bytes: fc.integer({ min: 1, max: 400 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('take' as const), n: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('ack' as const), n: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'disconnect' as const }) },
  { weight: 3, arbitrary: fc.constant({ op: 'reconnect' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.constantFrom(300, 1000, 2600) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'crashReceiver' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'crashSender' as const }) }
)

/** What the model knows of one message. */
interface ModelMessage {
  index: number
  uuid: string
  ttlMs: number
  persistent: boolean
  /** The sender's offline clock (as the model keeps it) when it was sent. */
  sentOffline: number
  /** Outcome reported by each sender incarnation: incarnation -> what. */
  outcomes: Map<number, 'delivered' | 'dropped'>
  /** The sender crashed while it was not yet delivered: TTL accounting across the crash is the store's, not the model's. */
  crossedCrash: boolean
  /** Lost with a crashed sender (not persistent). */
  lost: boolean
  /** Receiver incarnations that handed it to the application. */
  receivedBy: number[]
  /** Receiver incarnation that acked it, if any. */
  ackedBy: number | null
}

/** Lets every in-process hop run (each setImmediate lets the outgoing side batch once). */
async function settle (signature: () => string): Promise<void> {
  let last = ''
  let stable = 0
  for (let i = 0; i < 200 && stable < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    const s = signature()
    stable = s === last ? stable + 1 : 0
    last = s
  }
}

/**
 * close() waits a while (on the mocked clock) for acknowledgements of what is in
 * flight, which the model's wire only moves when told: the clock is moved on
 * until it is closed, as time would pass.
 */
async function closeTicking (mq: Messaging, clock: { tick: (ms: number) => void }): Promise<void> {
  let done = false
  const closing = mq.close().finally(() => { done = true })
  // Time passes only while the close is really waiting (for acknowledgements that cannot come).
  for (let i = 0; i < 100 && !done; i++) {
    for (let j = 0; j < 10 && !done; j++) await new Promise((resolve) => setImmediate(resolve))
    if (!done) clock.tick(100)
  }
  await closing
}

async function runModel (ops: readonly Op[], clock: { tick: (ms: number) => void }): Promise<void> {
  const store = new MemoryStore()
  const messages: ModelMessage[] = []
  const byUuid = new Map<string, ModelMessage>()
  const unmatchedDrops = new Map<string, string>()
  const problems: string[] = []
  const check = (ok: boolean, what: string): void => { if (!ok) problems.push(what) }

  // Sender side.
  let senderInc = 0
  let senderStore!: CrashableStore
  let linkA!: Link
  let A!: Messaging
  // The model's own offline clock: advanced by `advance` while the model says alice and bob are not connected.
  let offline = 0
  let offlineSince = Date.now()
  let connected = false
  const modelOffline = (): number => connected ? offline : offline + (Date.now() - offlineSince)
  const setConnected = (c: boolean): void => {
    if (c === connected) return
    offline = modelOffline()
    offlineSince = Date.now()
    connected = c
  }

  const startSender = async (): Promise<void> => {
    senderInc++
    const inc = senderInc
    senderStore = new CrashableStore(store)
    linkA = new Link()
    A = new Messaging(linkA, { identity: 'alice', store: senderStore, queueLimits: { messages: 12 }, maxUnacked: 4, persistentWindow: { messages: 3 } })
    A.on('delivered', ({ uuid }) => {
      const m = byUuid.get(uuid)
      check(m !== undefined, `delivered an unknown message ${uuid}`)
      if (m === undefined) return
      check(!m.outcomes.has(inc), `message ${m.index}: a second outcome (delivered after ${m.outcomes.get(inc)})`)
      m.outcomes.set(inc, 'delivered')
      check(m.receivedBy.length > 0 && m.ackedBy !== null, `message ${m.index}: reported delivered before the application acked it`)
    })
    A.on('drop', ({ uuid, reason }) => {
      const m = byUuid.get(uuid)
      if (m === undefined) { unmatchedDrops.set(uuid, reason); return }
      check(!m.outcomes.has(inc), `message ${m.index}: a second outcome (dropped after ${m.outcomes.get(inc)})`)
      m.outcomes.set(inc, 'dropped')
      check(m.ttlMs !== Infinity, `message ${m.index} without TTL was dropped (${reason})`)
      if (!m.crossedCrash) {
        check(modelOffline() - m.sentOffline >= m.ttlMs, `message ${m.index} dropped after ${modelOffline() - m.sentOffline} ms offline, TTL ${m.ttlMs} ms`)
      }
    })
    A.on('error', ({ error }) => { check(isTypedWireError(error), `alice: untyped connection error ${String(error)}`) })
    await A.ready()
  }

  // Receiver side.
  let receiverInc = 0
  let linkB!: Link
  let B!: Messaging
  let consumer!: AsyncIterator<Message>
  let credit = 0
  let waiting = false
  let unacked: Message[] = []
  let lastIndex = -1
  const pull = (): void => {
    if (waiting || credit <= 0) return
    waiting = true
    const inc = receiverInc
    void consumer.next().then((r) => {
      if (inc !== receiverInc) return
      waiting = false
      if (r.done === true) return
      credit--
      const index = Buffer.from(r.value.data).readUInt32BE(0)
      const m = messages[index]
      check(m !== undefined, `received unknown message ${index}`)
      if (m === undefined) return
      check(index > lastIndex, `message ${index} received after ${lastIndex} by receiver ${inc}: out of order or twice`)
      lastIndex = index
      for (const prev of m.receivedBy) {
        // A new receiver incarnation may see a message again only if its sender was never told it was delivered.
        check(![...m.outcomes.values()].includes('delivered'), `message ${index} seen again by receiver ${inc} after receiver ${prev} acked it and the sender reported it delivered`)
      }
      m.receivedBy.push(inc)
      unacked.push(r.value)
      pull()
    })
  }
  const startReceiver = (): void => {
    receiverInc++
    linkB = new Link()
    B = new Messaging(linkB, { identity: 'bob', receiveBuffer: 3 })
    B.on('error', ({ error }) => { check(isTypedWireError(error), `bob: untyped connection error ${String(error)}`) })
    consumer = B.messages({ ack: 'manual' })[Symbol.asyncIterator]()
    credit = 0
    waiting = false
    unacked = []
    lastIndex = -1
  }

  let ends = null as [MemEnd, MemEnd] | null
  const live = (): boolean => ends !== null && ends[0].isOpen
  const signature = (): string => `${ends?.[0].pending ?? 0}/${ends?.[1].pending ?? 0}/${messages.length}/${unacked.length}/${A.queued('bob')}/${A.isConnected('bob')}/${B.isConnected('alice')}`

  const reconnect = async (): Promise<void> => {
    if (live()) return
    ends = MemEnd.pair()
    const [toA, toB] = ends
    linkA.adopt(toA)
    linkB.adopt(toB)
    // A few bytes at a time, so that message frames are still in flight when the handshake completes.
    for (let i = 0; i < 200 && !(A.isConnected('bob') && B.isConnected('alice')); i++) {
      toA.deliver(8)
      toB.deliver(8)
      await settle(signature)
    }
    assert.ok(A.isConnected('bob') && B.isConnected('alice'), 'the handshake did not complete')
    setConnected(true)
  }

  const disconnect = async (): Promise<void> => {
    if (ends === null) return
    ends[0].close()
    ends = null
    await settle(signature)
    setConnected(false)
  }

  await startSender()
  startReceiver()
  try {
    for (const o of ops) {
      switch (o.op) {
        case 'send': {
          const index = messages.length
          const data = Buffer.alloc(4 + (index * 7) % 23)
          data.writeUInt32BE(index)
          const ttlMs = o.ttl === null ? Infinity : o.ttl * 1000
          try {
            const { uuid } = await A.send('bob', data, { ...(o.ttl !== null ? { ttl: o.ttl } : {}), persistent: o.persistent, whenFull: 'reject' })
            const m: ModelMessage = { index, uuid, ttlMs, persistent: o.persistent, sentOffline: modelOffline(), outcomes: new Map(), crossedCrash: false, lost: false, receivedBy: [], ackedBy: null }
            messages.push(m)
            byUuid.set(uuid, m)
          } catch (err) {
            if (err instanceof QueueFullError) break
            assert.ok(err instanceof MessageDroppedError, `send failed with ${String(err)}`)
            assert.equal(err.reason, 'not-connected')
            check(ttlMs === 0 && !connected, `message refused as not-connected with TTL ${ttlMs} while connected=${connected}`)
            check(unmatchedDrops.get(err.uuid) === 'not-connected', 'a refused send emitted no drop event')
            // Refused at once: it takes an index so that data and indexes keep matching.
            messages.push({ index, uuid: err.uuid, ttlMs, persistent: o.persistent, sentOffline: modelOffline(), outcomes: new Map([[senderInc, 'dropped']]), crossedCrash: false, lost: false, receivedBy: [], ackedBy: null })
          }
          break
        }
        case 'pump':
          if (ends !== null) (o.dir === 'ab' ? ends[0] : ends[1]).deliver(o.bytes)
          break
        case 'take':
          credit += o.n
          pull()
          break
        case 'ack':
          for (const msg of unacked.splice(0, o.n)) {
            const m = messages[Buffer.from(msg.data).readUInt32BE(0)]!
            m.ackedBy = receiverInc
            msg.ack()
          }
          break
        case 'disconnect':
          await disconnect()
          break
        case 'reconnect':
          await reconnect()
          break
        case 'advance':
          clock.tick(o.ms)
          break
        case 'crashReceiver':
          await closeTicking(B, clock)
          ends = null
          startReceiver()
          await settle(signature)
          setConnected(false)
          break
        case 'crashSender': {
          senderStore.crash()
          A.removeAllListeners()
          for (const m of messages) {
            if (m.outcomes.has(senderInc)) continue
            if (m.persistent) m.crossedCrash = true
            else m.lost = true
          }
          await closeTicking(A, clock)
          ends = null
          await startSender()
          await settle(signature)
          setConnected(false)
          break
        }
      }
      await settle(signature)
      check(A.isConnected('bob') === connected, `after ${o.op}: alice connected=${A.isConnected('bob')}, the model says ${connected}`)
    }

    // Quiet network: everything still queued must now arrive, and be reported delivered.
    await reconnect()
    credit = Infinity
    pull()
    for (let i = 0; i < 500 && (A.queued('bob') > 0 || unacked.length > 0 || ends![0].pending + ends![1].pending > 0); i++) {
      for (const msg of unacked.splice(0)) {
        messages[Buffer.from(msg.data).readUInt32BE(0)]!.ackedBy = receiverInc
        msg.ack()
      }
      ends![0].deliver(Infinity)
      ends![1].deliver(Infinity)
      await settle(signature)
    }
    check(A.queued('bob') === 0, `alice still holds ${A.queued('bob')} messages on a quiet network`)
    for (const m of messages) {
      const outcomes = [...m.outcomes.values()]
      if (m.lost && outcomes.length === 0) {
        check(!m.persistent, `persistent message ${m.index} lost`)
        continue
      }
      check(outcomes.length > 0, `message ${m.index} neither delivered nor reported dropped`)
      if (m.ttlMs === Infinity && !m.lost) check(outcomes.includes('delivered'), `message ${m.index} without TTL was not delivered`)
    }
    assert.deepEqual(problems, [], `ops: ${JSON.stringify(ops)}`)
  } finally {
    A.removeAllListeners()
    await closeTicking(A, clock)
    await closeTicking(B, clock)
  }
}

test('model: every message is delivered or reported dropped, in order, once to the application', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_700_000_000_000 })
  const clock = { tick: (ms: number) => { t.mock.timers.tick(ms) } }
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 10, maxLength: 80, size: 'max' }), async (ops) => { await runModel(ops, clock) }), { numRuns: 300 })
})

