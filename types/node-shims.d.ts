// For the browser type check only (tsconfig.browser.json, which has no Node
// types): the node:tls and node:http types that code shared with the browser
// names. The certificate of a TLS peer, which a browser's channels never have
// (its fields are those certificate.ts reads), and the types of the Link's
// Node-only options (tls, server), which a browser's Link refuses.
declare module 'node:tls' {
  export interface PeerCertificate {
    subject: Record<string, string | string[] | undefined>
    subjectaltname?: string
    [field: string]: unknown
  }
  export type TlsOptions = Record<string, unknown>
  export type ConnectionOptions = Record<string, unknown>
}

declare module 'node:http' {
  export interface Server {
    listen (...args: unknown[]): unknown
  }
}
