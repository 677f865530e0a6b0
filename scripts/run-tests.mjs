#!/usr/bin/env node
// Runs every test file under test/ with node's own test runner, TypeScript loaded by tsx.
// A file list (not a glob) because Node 20's --test does not expand globs itself.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'

function find (dir) {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) return name === 'fixtures' ? [] : find(p)
    return p.endsWith('.test.ts') ? [p] : []
  })
}

const only = process.argv.slice(2)
const files = only.length > 0 ? only : find('test')
const res = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000', ...files], { stdio: 'inherit' })
process.exit(res.status ?? 1)
