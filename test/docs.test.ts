// The API reference the README promises: `npm run docs` in a checkout renders
// the TSDoc as HTML. typedoc.json treats every warning as an error (a link to a
// name that is not exported, a type the reference cannot show), so one such
// comment makes the command fail and leaves no reference at all.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

test('npm run docs renders the API reference: typedoc exits 0 with no warning', async () => {
  // The same command as `npm run docs`, writing to a temporary directory instead of docs/api.
  const out = await mkdtemp(join(tmpdir(), 'snakemq-docs-'))
  try {
    const child = spawn(process.execPath, [join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--out', out], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe']
    })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { output += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { output += s })
    const killer = setTimeout(() => { child.kill('SIGKILL') }, 100_000)
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
    clearTimeout(killer)
    assert.equal(code, 0, `typedoc exited with ${code}:\n${output}`)
    assert.doesNotMatch(output, /warning/i, output)
    assert.ok(existsSync(join(out, 'index.html')), 'docs index.html')
    assert.ok(existsSync(join(out, 'classes', 'index.LevelStore.html')), 'LevelStore has its page')
  } finally {
    await rm(out, { recursive: true, force: true })
  }
})
