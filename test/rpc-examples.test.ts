// The RPC examples run as the tutorial describes: the server serves, the client
// sends a signal, makes calls and catches a remote error, and both exit by themselves.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const REPO = fileURLToPath(new URL('..', import.meta.url))

function run (file: string, args: string[]): { child: ChildProcess, output: () => string, exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', `examples/${file}`, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); child.emit('output') })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  return { child, output: () => out, exited }
}

test('examples/rpc-server.ts and examples/rpc-client.ts: signal, call, remote error, then both exit', async () => {
  const server = run('rpc-server.ts', ['--port', '0', '--once', '--timeout', '60'])
  try {
    while (!/listening on 127\.0\.0\.1:\d+/.test(server.output())) {
      await Promise.race([once(server.child, 'output'), server.exited.then(() => { throw new Error(`the server exited: ${server.output()}`) })])
    }
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(server.output())![1]!
    const client = run('rpc-client.ts', ['--port', port])
    assert.equal(await client.exited, 0, client.output())
    assert.equal(await server.exited, 0, server.output())
    assert.match(client.output(), /getFo\(\) = fo value/)
    assert.match(client.output(), /divide\(1, 0\) failed remotely: RangeError: division by zero \(code E_DIV_ZERO\)/)
    assert.match(client.output(), /remote stack .*MyClass\.divide/)
    assert.match(client.output(), /divide\(10, 4\) = 2\.5/)
    assert.match(server.output(), /^signal$/m)
  } finally {
    server.child.kill()
  }
})
