// The package as users get it: this checkout packed with `npm pack` (which
// builds it), the tarball installed into a new app with its own package.json,
// and that app importing, requiring and type-checking it. Built and installed
// once; each test checks one promise of the package. The install takes its
// dependencies from npm's cache where it can and from the registry otherwise.
import { before, after, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/**
 * npm and tsc are killed after this long: a stuck registry must fail the test,
 * not hang the suite. Two such steps stay within the test runner's 120 s per
 * file, so this file kills its own processes before the runner kills it.
 */
const STEP_LIMIT = 50_000
/** What the README links to must also work on a package page, away from the repository. */
const REPOSITORY = 'https://github.com/snakemq-node/snakemq'

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs a command in its own process group, so that on timeout npm and everything it started are killed. */
async function run (command: string, args: string[], cwd: string): Promise<Run> {
  const child = spawn(command, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const limit = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL')
    } catch {
      // The group is gone already.
    }
  }, STEP_LIMIT)
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  clearTimeout(limit)
  return { code, stdout, stderr }
}

function ok (what: string, r: Run): Run {
  assert.equal(r.code, 0, `${what} failed (${r.code})\n${r.stdout}\n${r.stderr}`)
  return r
}

function walk (dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? walk(p) : [p]
  })
}

let work = ''
let app = ''
/** The installed package, node_modules/snakemq in the app. */
let pkg = ''
/** Paths in the tarball, as `npm pack` lists them. */
let packed: string[] = []
let madeDocsApi = false

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'snakemq-package-'))
  // `npm run docs` writes docs/api; whether or not it has run here, the tarball must leave it out.
  if (!existsSync(join(ROOT, 'docs', 'api'))) {
    madeDocsApi = true
    await mkdir(join(ROOT, 'docs', 'api'))
    await writeFile(join(ROOT, 'docs', 'api', 'index.html'), '<!-- made by test/package.test.ts -->\n')
  }
  const pack = ok('npm pack', await run('npm', ['pack', '--json', '--pack-destination', work], ROOT))
  // The prepack script's output comes first on stdout; the JSON report is the rest.
  const report = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('\n[') + 1)) as Array<{ filename: string, files: Array<{ path: string }> }>
  const tarball = join(work, report[0]!.filename)
  packed = report[0]!.files.map((f) => f.path).sort()

  app = join(work, 'app')
  await mkdir(app)
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'snakemq-consumer', version: '1.0.0', private: true }, null, 2))
  const typesNode = (JSON.parse(readFileSync(join(ROOT, 'node_modules', '@types', 'node', 'package.json'), 'utf8')) as { version: string }).version
  ok('npm install', await run('npm', ['install', tarball, `@types/node@${typesNode}`, '--prefer-offline', '--ignore-scripts',
    '--no-audit', '--no-fund', '--fetch-retries=1', '--fetch-timeout=20000'], app))
  pkg = join(app, 'node_modules', 'snakemq')
})

after(async () => {
  if (madeDocsApi) await rm(join(ROOT, 'docs', 'api'), { recursive: true, force: true })
  if (work !== '') await rm(work, { recursive: true, force: true })
})

test('the tarball ships the LICENSE, the build, the command and the docs, and neither docs/api nor the sources', async () => {
  for (const file of ['LICENSE', 'README.md', 'package.json', 'bin/smq.js', 'dist/index.js', 'dist/index.d.ts', 'docs/TUTORIAL.md']) {
    assert.ok(packed.includes(file), `${file} is in the tarball`)
  }
  assert.deepEqual(packed.filter((f) => f.startsWith('docs/api')), [], 'docs/api is left out even when it exists')
  assert.ok(existsSync(join(ROOT, 'docs', 'api')))
  assert.deepEqual(packed.filter((f) => /^(src|test|benchmarks|examples|scripts)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts')), [])
  const license = await readFile(join(pkg, 'LICENSE'), 'utf8')
  assert.match(license, /^MIT License\n\nCopyright \(c\) 2026 the snakemq for Node authors\n/)
  assert.match(license, /THE SOFTWARE IS PROVIDED "AS IS"/)
  const manifest = JSON.parse(await readFile(join(pkg, 'package.json'), 'utf8')) as Record<string, unknown>
  assert.equal(manifest.license, 'MIT')
  assert.deepEqual(manifest.repository, { type: 'git', url: `git+${REPOSITORY}.git` })
  assert.equal(manifest.homepage, `${REPOSITORY}#readme`)
  assert.deepEqual(manifest.bugs, { url: `${REPOSITORY}/issues` })
})

/** The same program for ESM and CommonJS: two peers over loopback, one message. */
const EXCHANGE = `
async function exchange (s) {
  const linkA = new s.Link()
  const listener = await linkA.listen({ port: 0 })
  const bob = new s.Messaging(linkA, { identity: 'bob' })
  const linkB = new s.Link()
  linkB.connect({ port: listener.port })
  const alice = new s.Messaging(linkB, { identity: 'alice' })
  try {
    await alice.send('bob', new TextEncoder().encode('hello'))
    for await (const m of bob.messages()) return new TextDecoder().decode(m.data) + ' from ' + m.from
  } finally {
    await alice.close()
    await bob.close()
  }
}
`

test('the installed package works both with import and with require()', async () => {
  await writeFile(join(app, 'esm.mjs'), `import * as s from 'snakemq'\n${EXCHANGE}\n` +
    'console.log(JSON.stringify({ got: await exchange(s), exports: Object.keys(s).sort() }))\n')
  await writeFile(join(app, 'cjs.cjs'), `const s = require('snakemq')\n${EXCHANGE}\n` +
    'exchange(s).then(async (got) => { console.log(JSON.stringify({ got, exports: Object.keys(s).sort(), same: s === await import(\'snakemq\') })) })\n')
  const [esm, cjs] = await Promise.all([run(process.execPath, ['esm.mjs'], app), run(process.execPath, ['cjs.cjs'], app)])
  ok('node esm.mjs', esm)
  ok('node cjs.cjs', cjs)
  const e = JSON.parse(esm.stdout) as { got: string, exports: string[] }
  const c = JSON.parse(cjs.stdout) as { got: string, exports: string[], same: boolean }
  assert.equal(e.got, 'hello from alice')
  assert.equal(c.got, 'hello from alice')
  assert.deepEqual(c.exports, e.exports, 'require() gives the same exports as import')
  assert.equal(c.same, true, 'and the same module instance')
  for (const name of ['Link', 'Messaging', 'LevelStore', 'RpcClient', 'pinoLogger', 'InvalidArgumentError']) assert.ok(e.exports.includes(name), name)
  assert.equal(cjs.stderr, '', 'no warning either')
})

/** A declaration, named as `Container.member` within its file. */
interface Named { name: string, node: ts.Node }

function nameOf (node: ts.Node): string | undefined {
  const name = (node as { name?: ts.Node }).name
  if (name === undefined) return undefined
  return ts.isIdentifier(name) || ts.isStringLiteral(name) || ts.isPrivateIdentifier(name) ? name.text : name.getText()
}

/**
 * Every declaration of a module that can appear in its .d.ts: top-level
 * declarations, members of classes, interfaces, enums and object types, and
 * parameter properties (a constructor parameter with a modifier is a class member).
 */
function declarations (file: string, text: string): Named[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  const out: Named[] = []
  const member = (node: ts.Node, container: string): void => {
    if (ts.isConstructorDeclaration(node)) {
      for (const p of node.parameters) {
        if ((ts.getCombinedModifierFlags(p) & ts.ModifierFlags.ParameterPropertyModifier) !== 0) out.push({ name: `${container}.${p.name.getText()}`, node: p })
      }
      return
    }
    if (ts.isSemicolonClassElement(node) || ts.isClassStaticBlockDeclaration(node)) return
    const name = nameOf(node) ?? `[${ts.SyntaxKind[node.kind]}]`
    out.push({ name: `${container}.${name}`, node })
  }
  const members = (node: ts.Node, container: string): void => {
    ts.forEachChild(node, (child) => {
      if (ts.isClassElement(child) || ts.isTypeElement(child) || ts.isEnumMember(child)) member(child, container)
      else if (ts.isTypeLiteralNode(child) || ts.isUnionTypeNode(child) || ts.isIntersectionTypeNode(child)) members(child, container)
    })
  }
  for (const node of source.statements) {
    if (ts.isVariableStatement(node)) {
      for (const d of node.declarationList.declarations) out.push({ name: d.name.getText(), node })
    } else if (ts.isClassDeclaration(node) || ts.isInterfaceDeclaration(node) || ts.isEnumDeclaration(node) || ts.isTypeAliasDeclaration(node)) {
      const name = nameOf(node)!
      out.push({ name, node })
      members(node, name)
    } else if (ts.isFunctionDeclaration(node) || ts.isModuleDeclaration(node)) {
      out.push({ name: nameOf(node)!, node })
    }
  }
  return out
}

const isInternal = (node: ts.Node): boolean => ts.getJSDocTags(node).some((tag) => tag.tagName.text === 'internal')
const isPrivateName = (node: ts.Node): boolean => {
  const name = (node as { name?: ts.Node }).name
  return name !== undefined && ts.isPrivateIdentifier(name)
}
const exported = (node: ts.Node): boolean => (ts.getCombinedModifierFlags(node as ts.Declaration) & ts.ModifierFlags.Export) !== 0

test('the shipped .d.ts files declare no member the source marks @internal, and every exported one it does not', () => {
  const sources = walk(join(ROOT, 'src')).filter((f) => f.endsWith('.ts'))
  const internal: string[] = []
  const missing: string[] = []
  const leaked: string[] = []
  for (const src of sources) {
    const rel = relative(join(ROOT, 'src'), src).replace(/\.ts$/, '')
    const dts = join(pkg, 'dist', `${rel}.d.ts`)
    assert.ok(existsSync(dts), `dist/${rel}.d.ts is shipped`)
    const declared = new Set(declarations(dts, readFileSync(dts, 'utf8')).map((d) => d.name))
    const all = declarations(src, readFileSync(src, 'utf8'))
    // What is inside an @internal declaration goes with it.
    const hidden = new Set(all.filter((d) => isInternal(d.node)).map((d) => d.name))
    const under = (name: string): boolean => [...hidden].some((h) => name === h || name.startsWith(`${h}.`))
    const topExported = new Set(all.filter((d) => !d.name.includes('.') && exported(d.node)).map((d) => d.name))
    for (const d of all) {
      if (hidden.has(d.name)) {
        internal.push(`${rel}:${d.name}`)
        if (declared.has(d.name)) leaked.push(`${rel}:${d.name}`)
      } else if (!under(d.name) && topExported.has(d.name.split('.')[0]!) && !isPrivateName(d.node) && !declared.has(d.name)) {
        missing.push(`${rel}:${d.name}`)
      }
    }
  }
  assert.ok(internal.length > 10, `the source marks members @internal: ${internal.join(', ')}`)
  assert.ok(internal.includes('messaging/messaging:Messaging.consume'), 'Messaging.consume is among them')
  assert.deepEqual(leaked, [], '@internal members in the shipped declarations')
  assert.deepEqual(missing, [], 'public declarations missing from the shipped .d.ts')
})

const CONSUMER = `import {
  Link, Messaging, LevelStore, RpcClient, RpcServer, asSignal, pinoLogger, InvalidArgumentError,
  type Message, type Signal, type Logger, type SendResult
} from 'snakemq'

const link = new Link()
const listener = await link.listen({ port: 0 })
link.connect({ host: '127.0.0.1', port: listener.port, reconnect: { minDelay: 100 } })
const logger: Logger = pinoLogger({ debug () {}, info () {}, warn () {}, error () {} })
const mq = new Messaging(link, { identity: 'bob', store: await LevelStore.open('bob.db'), logger, keepalive: { interval: 5000, wait: 5000 } })
mq.on('connect', ({ ident }) => { const name: string = ident; void name })
mq.on('drop', ({ reason }) => { const r: 'expired' | 'not-connected' | 'closed' | 'too-large' = reason; void r })
const result: SendResult = await mq.send('alice', new TextEncoder().encode('hello'), { ttl: 600, persistent: true, wait: 'delivered' })
const uuid: string = result.uuid
for await (const msg of mq.messages({ ack: 'manual' })) {
  const m: Message = msg
  const text: string = new TextDecoder().decode(m.data)
  m.ack()
  void text
  break
}

interface Calc { add (a: number, b: number): number, log: Signal<(line: string) => void> }
new RpcServer(mq).register('calc', { add: (a: number, b: number) => a + b, log: asSignal((line: string) => { void line }) })
const calc = new RpcClient(mq).proxy<Calc>('bob', 'calc')
const sum: number = await calc.add(1, 2)
await calc.log.signal({ ttl: 10 })('started')
// @ts-expect-error an @internal member is not part of the declared type
mq.consume({}, () => {})

try {
  await mq.send('alice', new Uint8Array(1), { ttl: -1 })
} catch (err) {
  if (err instanceof InvalidArgumentError) { const code: string = err.code; void code }
}
{
  await using scoped = new Messaging(new Link(), { identity: 'scoped' })
  void scoped
}
await mq.close()
void uuid
void sum
`

test('a TypeScript consumer type-checks against the installed declarations, dependencies included', async () => {
  await writeFile(join(app, 'consumer.mts'), CONSUMER)
  await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true, skipLibCheck: false, types: ['node'], noEmit: true
    },
    // Every shipped declaration file, not only those index.d.ts reaches.
    include: ['consumer.mts', 'node_modules/snakemq/dist/**/*.d.ts']
  }, null, 2))
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], app)
  assert.equal(r.code, 0, `tsc found errors:\n${r.stdout}${r.stderr}`)
})

test('every shipped source map carries the code it maps, and points at a .js that names it', () => {
  const maps = walk(join(pkg, 'dist')).filter((f) => f.endsWith('.js.map'))
  assert.equal(maps.length, walk(join(pkg, 'dist')).filter((f) => f.endsWith('.js')).length, 'one map per .js')
  for (const map of maps) {
    const m = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[], sourcesContent?: Array<string | null>, file: string }
    const js = map.replace(/\.map$/, '')
    assert.equal(m.file, js.slice(dirname(js).length + 1))
    assert.ok(readFileSync(js, 'utf8').includes(`\n//# sourceMappingURL=${m.file}.map`), `${relative(pkg, js)} names its map`)
    assert.equal(m.sourcesContent?.length, m.sources.length, `${relative(pkg, map)} inlines its sources`)
    for (const [i, source] of m.sources.entries()) {
      // The map's relative source path, resolved as it would be in the checkout, is the file whose code it carries.
      const original = resolve(join(ROOT, relative(pkg, dirname(map))), source)
      assert.equal(m.sourcesContent![i], readFileSync(original, 'utf8'), `${relative(pkg, map)}: the code of ${relative(ROOT, original)}`)
    }
  }
})

test('every package a shipped module imports is a dependency, and every dependency is imported', () => {
  const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  const deps = new Set(Object.keys(manifest.dependencies))
  const builtins = new Set(builtinModules)
  const imported = new Set<string>()
  for (const file of walk(join(pkg, 'dist')).filter((f) => f.endsWith('.js'))) {
    for (const [, a, b] of readFileSync(file, 'utf8').matchAll(/(?:^|[\s;])(?:import|export)\b[^'"]*?\bfrom\s*'([^']+)'|\bimport\s*\(\s*'([^']+)'\s*\)/g)) {
      const spec = (a ?? b)!
      // A bare builtin name that is also a dependency ('events') is Node's own in Node and the package in a browser bundle.
      if (spec.startsWith('.') || spec.startsWith('node:') || (builtins.has(spec) && !deps.has(spec))) continue
      imported.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!)
    }
  }
  assert.ok(imported.has('level'), 'the scan finds imports')
  assert.deepEqual([...imported].filter((d) => !deps.has(d)), [], 'imported but not a dependency')
  assert.deepEqual([...deps].filter((d) => !imported.has(d)), [], 'a dependency nothing imports')
})

test('esbuild bundling the installed package for the browser picks its browser build: no Node built-in, no ws, no classic-level', async () => {
  await writeFile(join(app, 'page.mjs'), "import { Link, Messaging, LevelStore } from 'snakemq'\nconsole.log(Link, Messaging, LevelStore)\n")
  const { build } = await import('esbuild')
  const result = await build({ entryPoints: [join(app, 'page.mjs')], absWorkingDir: app, bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' })
  const inputs = Object.keys(result.metafile.inputs)
  assert.ok(inputs.includes('node_modules/snakemq/dist/index.browser.js'), inputs.join('\n'))
  assert.deepEqual(inputs.filter((i) => /^node:|node_modules\/(ws|classic-level)\/|snakemq\/dist\/(index|link\/tcp|link\/ws|store\/level-node)\.js$/.test(i)), [])
  // And Node, without the browser condition, gets the Node build.
  const node = await build({ entryPoints: [join(app, 'page.mjs')], absWorkingDir: app, bundle: true, platform: 'node', format: 'esm', write: false, metafile: true, logLevel: 'silent', external: ['classic-level', 'ws'] })
  assert.ok(Object.keys(node.metafile.inputs).includes('node_modules/snakemq/dist/index.js'))
})

test('the README\'s links work away from the repository', async () => {
  const readme = await readFile(join(pkg, 'README.md'), 'utf8')
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!)
  assert.ok(links.length > 5)
  assert.deepEqual(links.filter((l) => !/^https:\/\//.test(l) && !l.startsWith('#')), [], 'relative links')
  for (const l of links.filter((l) => l.startsWith(`${REPOSITORY}/blob/main/`) || l.startsWith(`${REPOSITORY}/tree/main/`))) {
    const path = l.slice(`${REPOSITORY}/blob/main/`.length).split('#')[0]!
    assert.ok(existsSync(join(ROOT, path)), `${l} names a file of the repository`)
  }
})

test('the smq command runs from the installed package', async () => {
  const bin = join(app, 'node_modules', '.bin', 'smq')
  const r = ok('smq --help', await run(bin, ['--help'], app))
  assert.match(r.stdout, /^Usage: smq <command>/)
  const p = ok('smq peer --help', await run(bin, ['peer', '--help'], app))
  assert.match(p.stdout, /--quiet/)
})
