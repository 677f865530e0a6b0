#!/usr/bin/env node
// Copies the examples into docs/TUTORIAL.md: every code block placed right after
// a `<!-- example: NAME.ts -->` line is replaced by examples/NAME.ts as an
// application would write it (tutorial-code.mjs). test/examples.test.ts fails
// when the two differ.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stdout } from 'node:process'
import { URL, fileURLToPath } from 'node:url'
import { tutorialCode } from './tutorial-code.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const docPath = join(root, 'docs', 'TUTORIAL.md')
const doc = readFileSync(docPath, 'utf8')
let count = 0
const synced = doc.replace(/(<!-- example: (\S+) -->\n)```ts\n[\s\S]*?```\n/g, (_block, marker, file) => {
  count++
  const code = tutorialCode(readFileSync(join(root, 'examples', file), 'utf8'))
  return `${marker}\`\`\`ts\n${code}\`\`\`\n`
})
if (synced !== doc) writeFileSync(docPath, synced)
stdout.write(`${count} examples in docs/TUTORIAL.md, ${synced === doc ? 'already up to date' : 'updated'}\n`)
