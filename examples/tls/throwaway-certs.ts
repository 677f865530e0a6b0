// Throwaway certificates for the SSL examples, so they run without any setup:
// a CA and one certificate per peer, made with the openssl command line in a
// temp dir that both examples share (the first one to run makes them; a
// certificate near its end is made again). For real use, bring your own files.
import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Where the examples keep their throwaway certificates. */
export const EXAMPLE_CERT_DIR = join(tmpdir(), 'snakemq-ssl-example')

/** The peers the examples have certificates for: the listener is bob, the connector alice. */
export type ExamplePeer = 'bob' | 'alice'

/** PEM contents, ready for `tls` options. */
export interface PeerFiles { key: Buffer, cert: Buffer, ca: Buffer }

async function make (dir: string): Promise<void> {
  const openssl = async (...args: string[]): Promise<void> => { await run('openssl', args, { cwd: dir }) }
  await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.crt', '-days', '30', '-subj', '/CN=snakemq example CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  for (const peer of ['bob', 'alice']) {
    // The CN is the peer's identity (for bindIdentityToCertificate); the IP and
    // DNS names let a connector check the listener's host name on this machine.
    await writeFile(join(dir, `${peer}.ext`), 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' +
      `subjectAltName=DNS:${peer},DNS:localhost,IP:127.0.0.1\n`)
    await openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${peer}.key`,
      '-out', `${peer}.csr`, '-subj', `/CN=${peer}`)
    await openssl('x509', '-req', '-in', `${peer}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(Date.now()),
      '-days', '30', '-sha256', '-extfile', `${peer}.ext`, '-out', `${peer}.crt`)
  }
}

/** True when the shared certificates are there and good for at least another day. */
async function usable (dir: string): Promise<boolean> {
  if (!existsSync(join(dir, 'alice.crt'))) return false
  const cert = new X509Certificate(await readFile(join(dir, 'bob.crt')))
  return new Date(cert.validTo).getTime() > Date.now() + 86_400_000
}

/** The key, certificate and CA of `peer`, made first if needed. Prints where they are. */
export async function throwawayCerts (peer: ExamplePeer): Promise<PeerFiles> {
  if (!(await usable(EXAMPLE_CERT_DIR))) {
    // Made aside and renamed into place, so two examples started together do not trip over each other.
    const fresh = await mkdtemp(`${EXAMPLE_CERT_DIR}-`)
    try {
      await make(fresh)
      await rm(EXAMPLE_CERT_DIR, { recursive: true, force: true })
      await rename(fresh, EXAMPLE_CERT_DIR).catch(async () => { await rm(fresh, { recursive: true, force: true }) })
    } catch (err) {
      await rm(fresh, { recursive: true, force: true })
      throw new Error(`could not make throwaway certificates with openssl (is it installed?): ${(err as Error).message}`, { cause: err })
    }
  }
  console.log(`using throwaway certificates from ${EXAMPLE_CERT_DIR}`)
  const read = async (name: string): Promise<Buffer> => await readFile(join(EXAMPLE_CERT_DIR, name))
  return { key: await read(`${peer}.key`), cert: await read(`${peer}.crt`), ca: await read('ca.crt') }
}

/** The files given on the command line, or throwaway ones when none are. */
export async function certsFor (peer: ExamplePeer, files: { key?: string | undefined, cert?: string | undefined, ca?: string | undefined }): Promise<PeerFiles> {
  if (files.key === undefined && files.cert === undefined && files.ca === undefined) return await throwawayCerts(peer)
  if (files.key === undefined || files.cert === undefined || files.ca === undefined) {
    throw new Error('give all of --key, --cert and --ca, or none of them for throwaway certificates')
  }
  return { key: await readFile(files.key), cert: await readFile(files.cert), ca: await readFile(files.ca) }
}
