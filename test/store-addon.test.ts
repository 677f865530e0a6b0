// A bare import of snakemq must not load LevelDB's native addon (issue "dx2"):
// it is loaded when a LevelStore is first opened, and an addon that cannot be
// loaded is a StoreError that says why. Checked in child processes, from the
// memory map of the process (Linux's /proc/self/maps).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const PROBE = fileURLToPath(new URL('./fixtures/addon-probe.ts', import.meta.url))
const REPO = fileURLToPath(new URL('..', import.meta.url))
const noMaps = existsSync('/proc/self/maps') ? '' : 'this system has no /proc/self/maps to see which shared objects a process loaded'

const tempDirs: string[] = []
after(async () => {
  await Promise.all(tempDirs.map(async (dir) => await rm(dir, { recursive: true, force: true })))
})

interface Probe { afterImport: boolean, afterOpen: boolean, error: { name: string, code: string, message: string, cause: string } | null }

async function probe (mode?: 'unloadable'): Promise<Probe> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-addon-'))
  tempDirs.push(dir)
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', PROBE, join(dir, 'store'), ...(mode === undefined ? [] : [mode])], { cwd: REPO })
  return JSON.parse(stdout) as Probe
}

test('importing snakemq loads no native addon; opening a LevelStore loads LevelDB\'s', async (t) => {
  if (noMaps !== '') { t.skip(noMaps); return }
  assert.deepEqual(await probe(), { afterImport: false, afterOpen: true, error: null })
})

test('a LevelDB addon that cannot be loaded makes LevelStore.open() reject with a StoreError naming the cause', async (t) => {
  if (noMaps !== '') { t.skip(noMaps); return }
  const { afterImport, afterOpen, error } = await probe('unloadable')
  assert.equal(afterImport, false)
  assert.equal(afterOpen, false)
  assert.equal(error?.name, 'StoreError')
  assert.equal(error.code, 'ERR_STORE')
  assert.match(error.message, /^cannot load LevelDB \(the "level" package and its native addon, classic-level\): simulated: the classic-level addon cannot be loaded$/)
  assert.equal(error.cause, 'simulated: the classic-level addon cannot be loaded')
})
