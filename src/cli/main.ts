// The `smq` command: picks the subcommand and turns usage errors into exit code 2.
// bin/smq.js imports this (the .ts through tsx in a checkout, dist/ when installed).
import { pathToFileURL } from 'node:url'
import type { Writable } from 'node:stream'
import { UsageError, parsePeerArgs, peerConfig } from './args.ts'
import { EventLog } from './events.ts'
import { mainHelp, peerHelp } from './help.ts'
import { runPeer } from './peer.ts'

export interface CliStreams {
  stdout: Writable
  stderr: Writable
}

async function write (stream: Writable, text: string): Promise<void> {
  await new Promise<void>((resolve) => { stream.write(text, () => { resolve() }) })
}

/** Runs `smq` with `argv` (without the node and script paths); resolves with the exit code. */
export async function main (argv: readonly string[], streams: CliStreams = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [command, ...rest] = argv
  let helpFor = 'smq --help'
  try {
    if (command === undefined) throw new UsageError('a command is missing')
    if (command === '--help' || command === '-h' || command === 'help') {
      await write(streams.stdout, rest[0] === 'peer' ? peerHelp : mainHelp)
      return 0
    }
    if (command !== 'peer') throw new UsageError(`unknown command ${JSON.stringify(command)}`)
    helpFor = 'smq peer --help'
    const parsed = parsePeerArgs(rest)
    if (parsed.help) {
      await write(streams.stdout, peerHelp)
      return 0
    }
    const config = await peerConfig(parsed.values)
    return await runPeer(config, new EventLog(streams.stdout, { quiet: config.quiet, stderr: streams.stderr }))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    await write(streams.stderr, `smq: ${err.message}\nSee '${helpFor}'.\n`)
    return 2
  }
}

// `tsx src/cli/main.ts peer ...` works too.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exit(await main(process.argv.slice(2)))
}
