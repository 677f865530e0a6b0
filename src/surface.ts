// What both entry points export: src/index.ts (Node) and src/index.browser.ts
// (the package's `browser` condition) add their own Link, transports and
// LevelStore to it. Not an entry point itself.
export { LinkBase, Listener, Connector, listenDefaults } from './link/link.ts'
export type { LinkOptions, LinkEvents, ListenOptions, ConnectOptions, ReconnectOptions } from './link/link.ts'
export { Connection } from './link/connection.ts'
export type { Channel, ChannelInfo, ChannelReader, Direction } from './link/channel.ts'
export { channelDuplex, channelSource, DuplexChannel, transformChannel } from './link/duplex.ts'
export type { Duplex, SinkChunk, ConnectionTransform, TransformContext } from './link/duplex.ts'
export type { Transport, TransportServer, TransportEvents, TransportListenOptions, TransportConnectOptions } from './link/transport.ts'
export { MAX_MESSAGE_BYTES as WEBSOCKET_MAX_MESSAGE_BYTES, DEFAULT_MAX_PAYLOAD as WEBSOCKET_DEFAULT_MAX_PAYLOAD } from './link/ws-messages.ts'
export { Messaging, messagingDefaults, MAX_IDENTITY_LENGTH } from './messaging/messaging.ts'
export type {
  Message, MessagesOptions, BatchMessagesOptions, MessagingEvents, MessagingOptions, SendOptions, SendResult, KeepaliveOptions, QueueLimits, PeerEvent,
  MessagingEvent, MessagingEventType, EventsOptions, DrainOptions, DrainResult, MessagingStats, PeerStats, StatsCounts
} from './messaging/types.ts'
export {
  PacketDecoder, decodePackets, encodePackets, encodePacketBatch, uint32BEDecode, uint32BEEncode, DEFAULT_MAX_PACKET_SIZE
} from './transforms/framing.ts'
export type { PacketDecoderOptions, PacketPayload } from './transforms/framing.ts'
export {
  FrameType, encodeFrame, decodeFrame, encodeFrames, decodeFrames, PROTOCOL_VERSION, TTL_INFINITE, FLAG_PERSISTENT, FLAG_UNACKED,
  FEATURE_ACK, FEATURE_VERDICT, EXTENSIONS_VERSION, NONCE_BYTES, RefusalCode, FrameWriter
} from './transforms/frames.ts'
export type {
  Frame, MessageFrame, IdentificationFrame, ProtocolVersionFrame, IncompatibleProtocolFrame, PingFrame, PongFrame, AckFrame, ExtensionsFrame, RefusedFrame, WelcomeFrame
} from './transforms/frames.ts'
export type { QueueStore, StoredMessage, StoreBatch, StoreContents, PeerClock, StoredRef, QueueSummary, StoreSummary } from './store/types.ts'
export { MemoryStore } from './store/memory.ts'
export { debugLogger, silentLogger } from './logging.ts'
export { pinoLogger, type FieldsFirstLogger, type PinoLoggerOptions } from './logging.ts'
export type { Logger, LogFields, LogComponent } from './logging.ts'
export * from './errors.ts'
export { certificateNames, checkIdentityCertificate } from './link/certificate.ts'
export { throttle, TokenBucket } from './transforms/throttle.ts'
export type { ThrottleOptions, ThrottleRates, ThrottleSetting, ThrottleChunk, ThrottleTransform, Throttled } from './transforms/throttle.ts'
export { RpcServer, rpcServerDefaults } from './rpc/server.ts'
export type { RpcServerOptions, RegisterOptions } from './rpc/server.ts'
export { RpcClient } from './rpc/client.ts'
export type { RpcClientOptions, RpcFormat } from './rpc/client.ts'
export { asSignal } from './rpc/remote.ts'
export type { Remote, RemoteMethod, RemoteSignal, RemoteCall, RemoteSignalSend, Signal, CallOptions, SignalOptions } from './rpc/remote.ts'
export { encodeValue, decodeValue, defaultCodecLimits } from './rpc/codec.ts'
export type { RpcCodecOptions } from './rpc/codec.ts'
export { decodePickle } from './rpc/pickle-decode.ts'
export { encodePickle } from './rpc/pickle-encode.ts'
export { defaultPickleLimits } from './rpc/pickle.ts'
export type { PickleCodecOptions } from './rpc/pickle.ts'
export { PyDate, PyDecimal, PyTime, PyTimedelta, PythonException } from './rpc/python-types.ts'
export type { PyTimeOptions } from './rpc/python-types.ts'
export {
  RpcCodecError, RpcRemoteError, RpcUnknownObjectError, RpcUnknownMethodError, RpcCallKindError, RpcTimeoutError,
  RpcProtocolError, RpcResultLostError
} from './rpc/errors.ts'
export { RPC_MAGIC, RPC_VERSION } from './rpc/wire.ts'
