// Errors raised by the RPC layer, each a SnakeMQError with its own stable code.
import { SnakeMQError } from '../errors.ts'

/**
 * An RPC value could not be encoded or decoded: a value the codec does not carry
 * (function, symbol, class instance, cycle), bytes that are not a valid encoding
 * (truncated, corrupted, hostile), or a limit (depth, size, value count) exceeded.
 */
export class RpcCodecError extends SnakeMQError {
  static override readonly name = 'RpcCodecError'
  override name = 'RpcCodecError'
  override readonly code = 'ERR_RPC_CODEC'
}
