// Every program in examples/ runs here as a child process, as a reader would run
// it (`npx tsx examples/NAME.ts`), and must exit 0 by itself and print its key
// lines: examples that stop working fail the build instead of rotting. A new
// example fails the first test until it is added to the table below. The code
// docs/TUTORIAL.md shows must be the examples' code (scripts/sync-tutorial.mjs).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { tutorialCode } from '../scripts/tutorial-code.mjs'
import { launchChromium } from './helpers/chromium.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const EXAMPLES = join(ROOT, 'examples')
/** A generous ceiling for a loaded CI machine; each example takes a second or two. */
const KILL_AFTER_MS = 60_000

interface Run { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string, ms: number }

interface Started { child: ReturnType<typeof spawn>, done: Promise<Run>, line: (re: RegExp) => Promise<RegExpMatchArray> }

function start (file: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Started {
  const t0 = performance.now()
  const child = spawn(process.execPath, ['--import', 'tsx', join(EXAMPLES, file), ...args], {
    cwd: ROOT, env: { ...process.env, DEBUG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  const watchers = new Set<(line: string) => void>()
  createInterface({ input: child.stdout! }).on('line', (l) => {
    stdout += l + '\n'
    for (const w of watchers) w(l)
  })
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const killer = setTimeout(() => { child.kill('SIGKILL') }, KILL_AFTER_MS)
  const done = new Promise<Run>((resolve) => child.once('close', (code, signal) => {
    clearTimeout(killer)
    resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 })
  }))
  const line = async (re: RegExp): Promise<RegExpMatchArray> => {
    const seen = stdout.split('\n').map((l) => l.match(re)).find((m) => m !== null)
    if (seen != null) return seen
    return await new Promise<RegExpMatchArray>((resolve, reject) => {
      const w = (l: string): void => { const m = l.match(re); if (m !== null) { watchers.delete(w); resolve(m) } }
      watchers.add(w)
      void done.then((r) => { if (watchers.delete(w)) reject(new Error(`${file} ended without printing ${String(re)}\n${r.stdout}${r.stderr}`)) })
    })
  }
  return { child, done, line }
}

function expectOk (file: string, r: Run, lines: RegExp[]): void {
  assert.equal(r.code, 0, `${file} exited with ${r.code ?? r.signal}\n${r.stdout}${r.stderr}`)
  for (const re of lines) assert.match(r.stdout, re, `${file} prints ${String(re)}`)
}

interface Case {
  /** What the example shows, for the test's name. */
  shows: string
  /** Lines its output must contain. */
  lines: RegExp[]
  /** Further checks of its output. */
  check?: (r: Run) => void
}

/** Examples run on their own. */
const single: Record<string, Case> = {
  'simple-peers.ts': {
    shows: 'bob, alice and jack exchange messages in one process',
    lines: [
      /^alice got "hello" from bob \(TTL (599|600) s\)$/m,
      /^bob got "hey bob, jack here" from jack \(no TTL\)$/m,
      /^bob got "hello to you too, bob" from alice/m,
      /^jack got "hi jack, alice here" from alice/m,
      /^all three peers got their messages$/m
    ]
  },
  'persistent-queue.ts': {
    shows: 'a persistent message survives its sender\'s restart and is delivered',
    lines: [
      /^bob queued [0-9a-f]{8} for alice: 1 message\(s\) waiting$/m,
      /^bob stopped$/m,
      /^bob started again: 1 message\(s\) waiting for alice$/m,
      /^alice got "hello, this survives a restart" from bob \(persistent: true\)$/m,
      /^bob: [0-9a-f]{8} delivered, 0 message\(s\) waiting$/m
    ],
    check: (r) => {
      const queued = /^bob queued ([0-9a-f]{8})/m.exec(r.stdout)?.[1]
      assert.equal(/^bob: ([0-9a-f]{8}) delivered/m.exec(r.stdout)?.[1], queued, 'the message delivered is the one queued before the restart')
    }
  },
  'logging.ts': {
    shows: 'an injected logger sees link, messaging, store and rpc lines, never message data',
    lines: [
      /^\[alice\/store\] info {2}queue store opened/m,
      /^\[alice\/link\] info {2}connection up \(conn=c\d+, direction=inbound/m,
      /^\[bob\/messaging\] debug got IDENTIFICATION \(conn=c\d+, peer=alice\)$/m,
      /^\[alice\/messaging\] info {2}peer connected \(conn=c\d+, peer=bob, acks=true\)$/m,
      /^\[bob\/messaging\] info {2}message dropped \(to=carol, uuid=[0-9a-f]{32}, reason=not-connected\)$/m,
      /^\[alice\/rpc\] error a call failed \(not transferred to the caller\) \(from=bob, object=vault, method=open/m,
      /^bob: vault\.open failed: RpcRemoteError$/m,
      /^\d+ log lines, 0 with message data$/m
    ],
    check: (r) => { assert.ok(!r.stdout.includes('12-34-56'), 'no line shows the secret') }
  },
  'compression.ts': {
    shows: 'a deflate transform on both links carries messages intact in fewer bytes, and a tap under it counts them',
    lines: [/^alice received 200 messages, 192690 bytes of data, intact$/m, /^bob wrote \d+ bytes on the wire for them: [\d.]+x smaller$/m],
    check: (r) => {
      const ratio = Number(/: ([\d.]+)x smaller$/m.exec(r.stdout)?.[1])
      assert.ok(ratio > 5, `compressed only ${ratio}x`)
    }
  },
  'throttle.ts': {
    shows: 'a throttled link sends no faster than its limit',
    lines: [/^bob sent 32768 bytes to alice through a 16 KiB\/s throttle$/m, /^took \d+\.\d+ s, about \d+\.\d KiB\/s$/m],
    check: (r) => {
      const seconds = Number(/^took (\d+\.\d+) s/m.exec(r.stdout)?.[1])
      // 32 KiB at 16 KiB/s, less the first burst (50 ms worth): never much faster.
      assert.ok(seconds >= 1.8, `32 KiB took ${seconds} s at 16 KiB/s`)
    }
  },
  'packet-level.ts': {
    shows: 'two bare links exchange length-prefixed packets',
    lines: [
      /^connected: c\d+, outbound, to 127\.0\.0\.1:\d+$/m,
      /^"hello" on the wire: 00000005 68656c6c6f$/m,
      /^sent 5 packets, got back: HELLO FROM A BARE LINK$/m
    ]
  },
  'pipeline-it-pipe.ts': {
    shows: 'it-pipe pipelines into sink() and out of messages()',
    lines: [/^bob> 1\. the queue is bounded$/m, /^bob> 6\. and everybody goes home$/m, /^alice read 6 lines; bob's queue never held more than [12] message\(s\)$/m],
    check: (r) => {
      const numbers = [...r.stdout.matchAll(/^bob> (\d)\./gm)].map((m) => Number(m[1]))
      assert.deepEqual(numbers, [1, 2, 3, 4, 5, 6], 'in order')
    }
  },
  'pipeline-node-streams.ts': {
    shows: 'Node stream pipelines with backpressure end to end',
    lines: [/^alice stored reading 5 from bob$/m, /^alice stored reading 20 from bob$/m, /^alice stored 20 readings; bob's source was never more than \d ahead of alice's Writable$/m],
    check: (r) => {
      const ahead = Number(/never more than (\d+) ahead/.exec(r.stdout)?.[1])
      assert.ok(ahead <= 6, `bob's source ran ${ahead} ahead; the queue bound is 4`)
    }
  }
}

/** Examples run with others, or tested elsewhere: each name maps to the test that covers it. */
const covered: Record<string, string> = {
  'ssl-listener.ts': 'the SSL pair below',
  'ssl-connector.ts': 'the SSL pair below',
  'rpc-server.ts': 'the RPC pair below',
  'rpc-client.ts': 'the RPC pair below',
  'demo.ts': 'test/cli.test.ts ("npm run demo plays the tutorial scene")'
}

test('every example in examples/ is run by a test', () => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.ts')).sort()
  const untested = files.filter((f) => single[f] === undefined && covered[f] === undefined)
  assert.deepEqual(untested, [], 'add these examples to test/examples.test.ts')
  const gone = [...Object.keys(single), ...Object.keys(covered)].filter((f) => !files.includes(f))
  assert.deepEqual(gone, [], 'these examples are tested but no longer exist')
  assert.match(readFileSync(join(ROOT, 'test', 'cli.test.ts'), 'utf8'), /examples', 'demo\.ts'/)
})

for (const [file, c] of Object.entries(single)) {
  test(`examples/${file}: ${c.shows}`, async (t) => {
    const r = await start(file).done
    t.diagnostic(`${file}: ${Math.round(r.ms)} ms`)
    expectOk(file, r, c.lines)
    c.check?.(r)
  })
}

test('examples/ssl-listener.ts and ssl-connector.ts: mutual TLS, each side prints the other\'s certificate', async (t) => {
  const listener = start('ssl-listener.ts', ['--port', '0', '--timeout', '30'])
  const port = (await listener.line(/^bob is listening on 127\.0\.0\.1:(\d+) \(TLS, client certificates required\)$/))[1]!
  const connector = await start('ssl-connector.ts', ['--port', port]).done
  const l = await listener.done
  t.diagnostic(`ssl-connector.ts: ${Math.round(connector.ms)} ms`)
  expectOk('ssl-connector.ts', connector, [
    /^connected to bob; certificate subject CN=bob, issuer CN=snakemq example CA$/m,
    /^alice got "hello back, alice" from bob$/m
  ])
  expectOk('ssl-listener.ts', l, [
    /^alice connected over TLS \(verified: true\)$/m,
    /^alice's certificate: subject CN=alice, issuer CN=snakemq example CA, valid until /m,
    /^bob got "hello over TLS" from alice$/m,
    /^alice left; bob stops$/m
  ])
})

test('examples/rpc-server.ts and rpc-client.ts: a call, a signal with a TTL and a remote exception', async (t) => {
  const server = start('rpc-server.ts', ['--port', '0', '--once', '--timeout', '30'])
  const port = (await server.line(/^boss is listening on 127\.0\.0\.1:(\d+)$/))[1]!
  const client = await start('rpc-client.ts', ['--port', port]).done
  const s = await server.done
  t.diagnostic(`rpc-client.ts: ${Math.round(client.ms)} ms`)
  expectOk('rpc-client.ts', client, [
    /^getFo\(\) = fo value$/m,
    /^divide\(1, 0\) failed remotely: RangeError: division by zero \(code E_DIV_ZERO\)$/m,
    /^remote stack \(snakeMQ's __remote_traceback__\): at /m,
    /^divide\(10, 4\) = 2\.5$/m
  ])
  expectOk('rpc-server.ts', s, [/^soldier connected$/m, /^signal$/m, /^soldier disconnected$/m, /^stopping: --once and the client left$/m])
})

test('examples/browser/serve.ts: a page in Chromium hands the Node worker a job over WebSocket and shows its answer', async (t) => {
  const serve = start('browser/serve.ts', ['--port', '0', '--once', '--timeout', '50'])
  const url = (await serve.line(/^open (http:\/\/127\.0\.0\.1:\d+\/) \(WebSocket peers on ws:\/\/127\.0\.0\.1:\d+\/mq, TCP peers on 127\.0\.0\.1:\d+\)$/))[1]!
  const browser = await launchChromium()
  try {
    const page = await browser.context.newPage()
    await page.goto(url)
    await page.locator('#state').filter({ hasText: /^connected$/ }).waitFor({ timeout: 20_000 })
    await page.locator('#log li').filter({ hasText: /^worker status: 0 jobs done, 1 page\(s\) connected$/ }).waitFor({ timeout: 20_000 })
    await page.fill('#job', 'hello worker')
    await page.click('#add')
    await page.locator('#log li').filter({ hasText: /^done: HELLO WORKER!$/ }).waitFor({ timeout: 20_000 })
    await page.close()
  } finally {
    await browser.close()
  }
  const r = await serve.done
  t.diagnostic(`browser/serve.ts: ${Math.round(r.ms)} ms`)
  expectOk('browser/serve.ts', r, [
    /^page-[0-9a-z]+ connected over ws$/m,
    /^job 1 from page-[0-9a-z]+: "hello worker" -> "HELLO WORKER!"$/m,
    /^stopping: --once and the page left$/m
  ])
})

test('docs/TUTORIAL.md shows the examples\' current code', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'TUTORIAL.md'), 'utf8')
  const blocks = [...doc.matchAll(/<!-- example: (\S+) -->\n```ts\n([\s\S]*?)```\n/g)]
  assert.ok(blocks.length > 0, 'the tutorial embeds examples')
  for (const [, file, code] of blocks) {
    const source = tutorialCode(readFileSync(join(EXAMPLES, file!), 'utf8'))
    assert.equal(code, source, `docs/TUTORIAL.md's copy of examples/${file} is stale: run node scripts/sync-tutorial.mjs`)
    assert.doesNotMatch(code!, /\.\.\/src\/index\.ts|instead of(?:\s|\/\/)*'snakemq'/, `the tutorial's copy of ${file} reads as an application's code`)
  }
})
