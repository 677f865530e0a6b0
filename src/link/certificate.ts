// The names a peer's TLS certificate carries, and the check that binds a claimed
// identity to them: snakeMQ lets any peer claim any name; with the binding on, a
// name can only be claimed with a verified certificate that carries it.
import type { PeerCertificate } from 'node:tls'
import type { Connection } from './connection.ts'
import { IdentityMismatchError } from '../errors.ts'

/**
 * Splits Node's `subjectaltname` string (`DNS:a, IP Address:127.0.0.1, ...`)
 * into [type, value] pairs. Node writes a value containing a comma, quote or
 * other special character as a JSON string, so a name cannot smuggle in a second
 * entry.
 */
export function parseSubjectAltNames (text: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  let i = 0
  while (i < text.length) {
    const colon = text.indexOf(':', i)
    if (colon < 0) break
    const type = text.slice(i, colon)
    let value: string
    let end: number
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote, skipping escaped characters.
      let j = colon + 2
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      end = j + 1
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string
      } catch {
        break
      }
    } else {
      const comma = text.indexOf(', ', colon + 1)
      end = comma < 0 ? text.length : comma
      value = text.slice(colon + 1, end)
    }
    out.push([type, value])
    i = end
    if (text.startsWith(', ', i)) i += 2
  }
  return out
}

/** The names a certificate carries: its subject CN(s), then its DNS subjectAltNames. */
export function certificateNames (cert: PeerCertificate): string[] {
  const names: string[] = []
  const cn = cert.subject?.CN as string | string[] | undefined
  if (typeof cn === 'string') names.push(cn)
  else if (Array.isArray(cn)) names.push(...cn)
  if (typeof cert.subjectaltname === 'string') {
    for (const [type, value] of parseSubjectAltNames(cert.subjectaltname)) {
      if (type === 'DNS' && !names.includes(value)) names.push(value)
    }
  }
  return names
}

/**
 * Checks that `identity` is bound to the connection's certificate: the
 * connection must carry a certificate that was verified against the trusted
 * CAs, and the identity must equal its subject CN or one of its DNS names
 * exactly (case-sensitive, as identities are; a wildcard name does not match).
 * Returns the error to refuse the remote with, or null when it may go on.
 */
export function checkIdentityCertificate (connection: Connection, identity: string): IdentityMismatchError | null {
  const cert = connection.peerCertificate
  if (cert === null) {
    return new IdentityMismatchError(identity, [], `the remote identified as ${JSON.stringify(identity)} without a TLS certificate, and identities must be bound to certificates`)
  }
  const names = certificateNames(cert)
  if (!connection.peerAuthorized) {
    const why = connection.peerAuthorizationError?.message ?? 'it was not verified'
    return new IdentityMismatchError(identity, names, `the remote identified as ${JSON.stringify(identity)} with a certificate that did not verify (${why})`)
  }
  return names.includes(identity) ? null : new IdentityMismatchError(identity, names)
}
