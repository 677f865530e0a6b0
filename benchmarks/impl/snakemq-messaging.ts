// S3 for snakemq without its RPC layer: request/reply over plain Messaging (see
// messagingServer/messagingConnect in snakemq.ts). Beside the `snakemq` column,
// which runs S3 through RpcClient/RpcServer, it shows what the RPC layer costs.
import type { Impl } from '../harness/types.ts'
import { messagingConnect, messagingServer } from './snakemq.ts'

const impl: Impl = {
  rpcServer: messagingServer,
  rpcConnect: messagingConnect
}

export default impl
