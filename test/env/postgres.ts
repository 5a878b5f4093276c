// A throwaway PostgreSQL server on a free loopback port. TCP logins use scram-sha-256, so a wrong password
// really fails. It serves TLS too (a CA made at init; plaintext logins still work), so sslmode means something.
// Tests own their instance: they can stop and restart it without touching anything else.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ManagedProcess, freePort, runCommand, waitFor } from './processes.js';
import { CertificateAuthority, type ServerCertificate } from './tls.js';

export interface PostgresConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** Finds a PostgreSQL server binary: PG_BIN_DIR, then PATH, then Debian's /usr/lib/postgresql/<v>/bin. */
export function findPgBinary(name: string): string {
  const candidates: string[] = [];
  if (process.env.PG_BIN_DIR) candidates.push(path.join(process.env.PG_BIN_DIR, name));
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir) candidates.push(path.join(dir, name));
  for (const v of ['17', '16', '15', '14']) candidates.push(`/usr/lib/postgresql/${v}/bin/${name}`);
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new Error(
      `PostgreSQL server binary '${name}' not found (looked in PG_BIN_DIR, PATH, /usr/lib/postgresql/*/bin). ` +
        'Install the server (Debian: apt-get install postgresql) or set PG_BIN_DIR.',
    );
  }
  return found;
}

/** uid/gid of the postgres OS user when we run as root (initdb and postgres refuse to run as root). */
function serverIdentity(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { uid, gid };
  } catch {
    throw new Error("running as root, but there is no 'postgres' OS user to run PostgreSQL as (useradd -r postgres)");
  }
}

/** Adds o+x to dir and its ancestors that we own, so another OS user can reach a path below them. */
function allowTraversal(dir: string): void {
  for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
    const st = statSync(d);
    if (st.uid === process.getuid?.() && (st.mode & 0o001) === 0) chmodSync(d, (st.mode & 0o777) | 0o011);
  }
}

export interface PostgresServerOptions {
  /**
   * TLS (default on): the server certificate is signed by ca (default: a CA made at init) for subjectAltNames
   * (default IP:127.0.0.1 and DNS:localhost). false: no TLS at all (ssl=off).
   */
  tls?: false | { ca?: CertificateAuthority; subjectAltNames?: readonly string[] };
  /** The pg_hba method of TCP logins (default scram-sha-256); password asks clients for the cleartext password. */
  hostAuthMethod?: 'scram-sha-256' | 'md5' | 'password';
}

export class PostgresServer {
  readonly superuser = 'postgres';
  readonly password = randomBytes(18).toString('base64url');
  readonly database = 'postgres';
  port = 0;
  private process: ManagedProcess | undefined;
  private readonly dataDir: string;
  private readonly socketDir: string;
  private readonly identity = serverIdentity();
  /** The CA that signed the server certificate (undefined without TLS). */
  ca: CertificateAuthority | undefined;
  private serverCertificate: ServerCertificate | undefined;

  /** settings: extra server settings (postgres -c name=value), e.g. to load an extension for one test. */
  constructor(
    private readonly baseDir: string,
    private readonly settings: Readonly<Record<string, string>> = {},
    private readonly options: PostgresServerOptions = {},
  ) {
    this.dataDir = path.join(baseDir, 'data');
    this.socketDir = path.join(baseDir, 'socket');
  }

  get connection(): PostgresConnection {
    return { host: '127.0.0.1', port: this.port, user: this.superuser, password: this.password, database: this.database };
  }

  /** The PEM of the CA that signed the server certificate: what a client given caSecretRef trusts. */
  get caPem(): string {
    if (!this.ca) throw new Error('this PostgreSQL server runs without TLS');
    return this.ca.certPem;
  }

  get logFile(): string {
    return path.join(this.baseDir, 'postgres.log');
  }

  async init(): Promise<void> {
    mkdirSync(this.baseDir, { recursive: true });
    mkdirSync(this.socketDir, { recursive: true });
    const pwfile = path.join(this.baseDir, 'pwfile');
    writeFileSync(pwfile, `${this.password}\n`, { mode: 0o600 });
    if (this.identity.uid !== undefined && this.identity.gid !== undefined) {
      // The postgres user must own its directories and be able to reach them (mkdtemp makes 0700 parents).
      allowTraversal(path.dirname(this.baseDir));
      for (const p of [this.baseDir, this.socketDir, pwfile]) chownSync(p, this.identity.uid, this.identity.gid);
    }
    await runCommand(
      findPgBinary('initdb'),
      ['-D', this.dataDir, '-U', this.superuser, '--pwfile', pwfile, '--auth-host=scram-sha-256',
        '--auth-local=trust', '-E', 'UTF8', '--no-sync', '--locale=C'],
      { ...this.identity, cwd: this.baseDir },
    );
    // Only loopback TCP with scram; the socket in our private directory stays trusted for the test harness.
    // "host" lines match TLS and plaintext connections alike.
    const method = this.options.hostAuthMethod ?? 'scram-sha-256';
    writeFileSync(
      path.join(this.dataDir, 'pg_hba.conf'),
      ['local all all trust', `host all all 127.0.0.1/32 ${method}`, `host all all ::1/128 ${method}`, ''].join('\n'),
    );
    if (this.identity.uid !== undefined && this.identity.gid !== undefined) {
      chownSync(path.join(this.dataDir, 'pg_hba.conf'), this.identity.uid, this.identity.gid);
    }
    if (this.options.tls !== false) await this.makeServerCertificate(this.options.tls ?? {});
    this.port = await freePort();
  }

  private async makeServerCertificate(tls: { ca?: CertificateAuthority; subjectAltNames?: readonly string[] }): Promise<void> {
    this.ca = tls.ca ?? (await CertificateAuthority.create(path.join(this.baseDir, 'ca')));
    const dir = path.join(this.baseDir, 'tls');
    const cert = await this.ca.issueServerCertificate(dir, tls.subjectAltNames ?? ['IP:127.0.0.1', 'DNS:localhost']);
    // PostgreSQL refuses a key that others may read; it runs as the postgres OS user when we are root.
    chmodSync(cert.keyFile, 0o600);
    if (this.identity.uid !== undefined && this.identity.gid !== undefined) {
      for (const p of [dir, cert.certFile, cert.keyFile]) chownSync(p, this.identity.uid, this.identity.gid);
    }
    this.serverCertificate = cert;
  }

  private get tlsArgs(): string[] {
    const cert = this.serverCertificate;
    return cert ? ['-c', 'ssl=on', '-c', `ssl_cert_file=${cert.certFile}`, '-c', `ssl_key_file=${cert.keyFile}`] : ['-c', 'ssl=off'];
  }

  async start(): Promise<void> {
    if (this.process?.running) return;
    this.process = new ManagedProcess({
      name: 'postgres',
      command: findPgBinary('postgres'),
      args: ['-D', this.dataDir, '-p', String(this.port), '-c', 'listen_addresses=127.0.0.1',
        '-c', `unix_socket_directories=${this.socketDir}`, '-c', 'fsync=off', '-c', 'synchronous_commit=off',
        '-c', 'full_page_writes=off', '-c', 'max_connections=200', '-c', 'password_encryption=scram-sha-256',
        // Log every statement, as a strict audit setup would: tests check that no secret reaches this log.
        '-c', 'log_statement=all', '-c', 'logging_collector=off', ...this.tlsArgs,
        ...Object.entries(this.settings).flatMap(([name, value]) => ['-c', `${name}=${value}`])],
      logFile: this.logFile,
      ...this.identity,
    });
    this.process.start();
    const proc = this.process;
    await waitFor('PostgreSQL to accept logins', () => this.canLogin(), {
      timeoutMs: 30_000,
      failFast: () => (proc.running ? undefined : `postgres exited; see ${this.logFile}`),
    });
  }

  /** Fast shutdown (SIGINT): open sessions are cut, as in a crash of the network path. */
  async stop(): Promise<void> {
    await this.process?.stop('SIGINT', 15_000);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Signals the postmaster's process group, backends included (fault tests: SIGSTOP, then SIGCONT). */
  signal(signal: NodeJS.Signals): boolean {
    return this.process?.signalGroup(signal) ?? false;
  }

  private async canLogin(): Promise<boolean> {
    const client = new pg.Client({ ...this.connection, connectionTimeoutMillis: 2000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
