#!/usr/bin/env node
// The `smq` command. In a checkout (after `npm ci`, no build) it runs the
// TypeScript source through tsx; an installed package has no src/ and runs the
// compiled dist/ instead.
import { existsSync } from 'node:fs'
import process from 'node:process'
import { URL, fileURLToPath } from 'node:url'

const source = new URL('../src/cli/main.ts', import.meta.url)

async function loadCli () {
  if (existsSync(fileURLToPath(source))) {
    let register = null
    try {
      ({ register } = await import('tsx/esm/api'))
    } catch {
      // No tsx (dev dependencies left out): fall back to the build, if there is one.
    }
    if (register !== null) {
      register()
      return await import(source.href)
    }
  }
  try {
    return await import('../dist/cli/main.js')
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err
    process.stderr.write('smq: neither tsx (to run src/) nor a build in dist/ was found; run `npm ci` or `npm run build`\n')
    process.exit(1)
  }
}

const { main } = await loadCli()
process.exit(await main(process.argv.slice(2)))
