// The implementations the harness knows, in table order. `name` is the key used in
// the JSON output and by --impl; `file` is a module in this directory whose default
// export satisfies Impl (benchmarks/harness/types.ts). A listed file that does not
// exist yet is reported as skipped.
export interface ImplEntry {
  name: string
  file: string
}

export const IMPLEMENTATIONS: readonly ImplEntry[] = [
  { name: 'raw_net', file: 'raw-net.ts' },
  { name: 'raw_net_simple', file: 'raw-net-simple.ts' },
  { name: 'zeromq', file: 'zeromq.ts' },
  { name: 'snakemq', file: 'snakemq.ts' },
  { name: 'snakemq_messaging', file: 'snakemq-messaging.ts' }
]

/** The reference every ratio is computed against. */
export const BASELINE = 'raw_net'
