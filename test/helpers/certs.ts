// Throwaway certificates for TLS tests, made with the openssl command line in a
// temp dir: CAs, and peer certificates signed by them (P-256 keys, which are
// fast to make). Nothing here is committed; every key lives only in its temp dir.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

async function openssl (cwd: string, ...args: string[]): Promise<void> {
  try {
    await run('openssl', args, { cwd })
  } catch (err) {
    const e = err as Error & { stderr?: string }
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`, { cause: err })
  }
}

/** PEM key and certificate, and the files they are in. */
export interface KeyPair {
  key: Buffer
  cert: Buffer
  keyFile: string
  certFile: string
}

export interface CertOptions {
  /** Subject CN. */
  cn: string
  /** DNS subjectAltNames. */
  dns?: string[]
  /** IP subjectAltNames; default 127.0.0.1, so a connector's host name check passes on loopback. */
  ips?: string[]
  /** Make a certificate whose validity ended in 2020 (2020-01-01 to 2020-01-02). */
  expired?: boolean
}

/** A temp dir of certificates; `remove()` deletes it and every key in it. */
export class CertDir {
  private constructor (readonly dir: string) {}

  static async create (): Promise<CertDir> {
    return new CertDir(await mkdtemp(join(tmpdir(), 'snakemq-certs-')))
  }

  /** A self-signed CA. */
  async ca (name: string): Promise<KeyPair> {
    await openssl(this.dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    return await this.read(name)
  }

  /** A certificate for `name`, signed by `ca`, usable as both TLS server and client. */
  async cert (name: string, ca: KeyPair, options: CertOptions): Promise<KeyPair> {
    const sans = [...(options.dns ?? []).map((d) => `DNS:${d}`), ...(options.ips ?? ['127.0.0.1']).map((ip) => `IP:${ip}`)]
    const ext = [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : [])
    ].join('\n') + '\n'
    await writeFile(join(this.dir, `${name}.ext`), ext)
    await openssl(this.dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${options.cn}`)
    if (options.expired === true) {
      // OpenSSL 3.0's `x509 -req` cannot back-date a certificate; `openssl ca` can, given a minimal database.
      const db = join(this.dir, `${name}-db`)
      await mkdir(db)
      await writeFile(join(db, 'index.txt'), '')
      await writeFile(join(db, 'serial'), '01\n')
      await writeFile(join(db, 'ca.cnf'), [
        '[ca]', 'default_ca = test_ca', '[test_ca]', `database = ${join(db, 'index.txt')}`, `new_certs_dir = ${db}`,
        `serial = ${join(db, 'serial')}`, 'default_md = sha256', 'policy = any', 'unique_subject = no',
        '[any]', 'commonName = supplied', ''
      ].join('\n'))
      await openssl(this.dir, 'ca', '-batch', '-config', join(db, 'ca.cnf'), '-cert', ca.certFile, '-keyfile', ca.keyFile,
        '-in', `${name}.csr`, '-out', `${name}.crt`, '-startdate', '20200101000000Z', '-enddate', '20200102000000Z',
        '-extfile', `${name}.ext`, '-notext')
    } else {
      await openssl(this.dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile,
        // A random serial: a shared serial file would race when certificates are made in parallel.
        '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-out', `${name}.crt`, '-days', '2', '-sha256', '-extfile', `${name}.ext`)
    }
    return await this.read(name)
  }

  async remove (): Promise<void> {
    await rm(this.dir, { recursive: true, force: true })
  }

  private async read (name: string): Promise<KeyPair> {
    const keyFile = join(this.dir, `${name}.key`)
    const certFile = join(this.dir, `${name}.crt`)
    return { key: await readFile(keyFile), cert: await readFile(certFile), keyFile, certFile }
  }
}

/** True when an `openssl` command line is available. */
export async function hasOpenssl (): Promise<boolean> {
  try {
    await run('openssl', ['version'])
    return true
  } catch {
    return false
  }
}
