// Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by
// playwright-core (which never downloads a browser of its own), in a fresh
// profile; and esbuild bundling a page's script for the browser as an
// application's bundler would.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build, type Metafile } from 'esbuild'
import { chromium, type BrowserContext } from 'playwright-core'

/** Where Debian's chromium package puts the browser (.ci/run installs it when missing). */
export const CHROMIUM = '/usr/bin/chromium'

/** The flags a sandboxed, offline CI machine needs: no GPU, no calls home, no sandbox (CI runs as root). */
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'
]

export interface Chromium {
  readonly context: BrowserContext
  /** Closes the browser and removes its profile. */
  close (): Promise<void>
}

/** Starts Chromium with a new, empty profile (IndexedDB included). */
export async function launchChromium (): Promise<Chromium> {
  const profile = await mkdtemp(join(tmpdir(), 'snakemq-chromium-'))
  try {
    const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30_000 })
    return {
      context,
      async close () {
        await context.close()
        await rm(profile, { recursive: true, force: true })
      }
    }
  } catch (err) {
    await rm(profile, { recursive: true, force: true })
    throw err
  }
}

/** Bundles `entry` for the browser (ES module, the `browser` export conditions); returns the code and what went in. */
export async function bundleForBrowser (entry: string): Promise<{ code: string, inputs: string[] }> {
  const result = await build({
    entryPoints: [entry], bundle: true, platform: 'browser', format: 'esm', target: 'es2022', write: false, metafile: true, logLevel: 'silent'
  })
  const metafile: Metafile = result.metafile
  return { code: result.outputFiles[0]!.text, inputs: Object.keys(metafile.inputs) }
}
