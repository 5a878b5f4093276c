// A throwaway certificate authority for the environment's PostgreSQL, made with the openssl CLI: so that TLS in
// the tests is real (a CA the client trusts, a server certificate for 127.0.0.1 and localhost), and a test can
// make a second CA (a wrong one) or a server certificate for other names (a wrong host name).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCommand } from './processes.js';

const OPENSSL = process.env.OPENSSL ?? 'openssl';
const DAYS = '30';

export interface ServerCertificate {
  certFile: string;
  keyFile: string;
}

export class CertificateAuthority {
  private issued = 0;

  private constructor(
    private readonly dir: string,
    readonly certFile: string,
    private readonly keyFile: string,
  ) {}

  /** A new CA (EC P-256) in dir, its subject CN the given name. */
  static async create(dir: string, name = 'dbcred test CA'): Promise<CertificateAuthority> {
    mkdirSync(dir, { recursive: true });
    const certFile = path.join(dir, 'ca.crt');
    const keyFile = path.join(dir, 'ca.key');
    await runCommand(OPENSSL, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', DAYS, '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    return new CertificateAuthority(dir, certFile, keyFile);
  }

  /** The CA certificate (PEM), what a client trusts. */
  get certPem(): string {
    return readFileSync(this.certFile, 'utf8');
  }

  /**
   * A server certificate signed by this CA for the given subjectAltName entries ("IP:127.0.0.1", "DNS:localhost"),
   * written into dir as server.crt and server.key (mode 0600, as PostgreSQL demands of its key).
   */
  async issueServerCertificate(dir: string, subjectAltNames: readonly string[]): Promise<ServerCertificate> {
    return this.issue(dir, 'server', `/CN=${subjectAltNames[0]?.replace(/^[A-Z]+:/, '') ?? 'server'}`,
      [`subjectAltName=${subjectAltNames.join(',')}`, 'extendedKeyUsage=serverAuth']);
  }

  /**
   * A client certificate signed by this CA (subject CN=commonName, O=organization: the user name and group a
   * Kubernetes component derives from it), written into dir as <name>.crt and <name>.key.
   */
  async issueClientCertificate(dir: string, name: string, commonName: string, organization?: string): Promise<ServerCertificate> {
    return this.issue(dir, name, `/CN=${commonName}${organization ? `/O=${organization}` : ''}`, ['extendedKeyUsage=clientAuth']);
  }

  /** A new EC key and a certificate for it signed by this CA, written into dir as <name>.key and <name>.crt. */
  private async issue(dir: string, name: string, subject: string, extensions: string[]): Promise<ServerCertificate> {
    mkdirSync(dir, { recursive: true });
    const n = ++this.issued;
    const keyFile = path.join(dir, `${name}.key`);
    const certFile = path.join(dir, `${name}.crt`);
    const csr = path.join(this.dir, `${name}-${n}.csr`);
    const ext = path.join(this.dir, `${name}-${n}.ext`);
    writeFileSync(ext, [...extensions, 'basicConstraints=CA:FALSE', 'keyUsage=digitalSignature,keyEncipherment', ''].join('\n'));
    await runCommand(OPENSSL, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', csr, '-subj', subject]);
    await runCommand(OPENSSL, ['x509', '-req', '-in', csr, '-CA', this.certFile, '-CAkey', this.keyFile, '-CAcreateserial',
      '-out', certFile, '-days', DAYS, '-extfile', ext]);
    return { certFile, keyFile };
  }
}
