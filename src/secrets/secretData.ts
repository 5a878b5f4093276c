// The data of an issued credential's Secret (type servicebinding.io/postgresql) and the DatabaseConfig's
// connection URL. Keys follow the Service Binding spec's PostgreSQL entries so that Spring Cloud Bindings,
// Quarkus and the servicebinding.io runtimes read the Secret as it is.

import { toRFC3339 } from '../api/duration.js';
import { splitPlaceholders } from '../postgres/usernameTemplate.js';

export const SECRET_TYPE = 'servicebinding.io/postgresql';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

const DEFAULT_PORT = 5432;
const DEFAULT_DATABASE = 'postgres';

/**
 * The sslmode when the URL names none: libpq's and pgjdbc's default, prefer (TLS when the server offers it), or
 * verify-full when the config gives a CA (caSecretRef): a CA is given to have the server verified.
 */
export function defaultSslMode(caConfigured: boolean): SslMode {
  return caConfigured ? 'verify-full' : 'prefer';
}

/**
 * The Secret keys that carry the server's CA for clients, present when the config has a CA and sslmode is not
 * disable. Spring Cloud Bindings and Quarkus read the key sslrootcert as the name of the binding's file holding
 * the CA and add sslrootcert=<binding directory>/<that name> to the JDBC URL they build; root.crt is libpq's and
 * pgjdbc's default file name (~/.postgresql/root.crt), and the key kube-service-bindings gives to node-postgres
 * as ssl.ca. The spec's well-known "certificates" entry is the client's own chain for mTLS, not a CA.
 */
export const CA_KEY = 'root.crt';
export const SSL_ROOT_CERT_KEY = 'sslrootcert';

/** Where issued credentials connect: taken from the config's connectionURL. */
export interface ConnectionTarget {
  host: string; // without IPv6 brackets
  port: number;
  database: string;
  sslmode: SslMode;
}

export interface SecretDataInput extends ConnectionTarget {
  username: string;
  password: string;
  expiresAt: Date;
  /** The config's CA (PEM), carried for clients under CA_KEY. */
  ca?: string;
  /** DatabaseCredential.spec.secretTemplate.data: extra keys whose values may use {{uri}}, {{password}}, … */
  template?: Record<string, string>;
}

export class SecretTemplateError extends Error {
  override name = 'SecretTemplateError';
}

/** Never carries the URL itself: it may hold a password. */
export class ConnectionURLError extends Error {
  override name = 'ConnectionURLError';
}

/**
 * The Secret's data: type, provider, host, port, database, username, password, sslmode, uri, jdbc-url,
 * expires-at, with a CA also sslrootcert and root.crt (CA_KEY), plus the rendered template keys. A template key may not replace one of these (the binding's
 * consumers rely on them) and must be a valid Secret key; violations throw a SecretTemplateError.
 */
export function buildSecretData(input: SecretDataInput): Record<string, string> {
  const data: Record<string, string> = {
    type: 'postgresql',
    provider: 'dbcred',
    host: input.host,
    port: String(input.port),
    database: input.database,
    username: input.username,
    password: input.password,
    sslmode: input.sslmode,
    uri: postgresURI(input),
    'jdbc-url': jdbcURL(input),
    'expires-at': toRFC3339(input.expiresAt),
  };
  if (input.ca !== undefined && input.sslmode !== 'disable') {
    data[SSL_ROOT_CERT_KEY] = CA_KEY;
    data[CA_KEY] = input.ca;
  }
  for (const [key, template] of Object.entries(input.template ?? {})) {
    checkTemplateKey(key, data);
    data[key] = renderTemplateValue(key, template, data);
  }
  return data;
}

function checkTemplateKey(key: string, data: Record<string, string>): void {
  if (!/^[-._a-zA-Z0-9]+$/.test(key) || key.length > 253) {
    throw new SecretTemplateError(`secretTemplate.data key ${JSON.stringify(key)} is not a valid Secret key`);
  }
  if (key in data) throw new SecretTemplateError(`secretTemplate.data key "${key}" is set by the operator`);
}

// Placeholders are the standard keys; they are looked up before any template key is added.
const TEMPLATE_PLACEHOLDERS = ['uri', 'jdbc-url', 'username', 'password', 'host', 'port', 'database', 'sslmode', 'expires-at'];

function renderTemplateValue(key: string, template: string, data: Record<string, string>): string {
  return splitPlaceholders(template)
    .map((part) => {
      if (part.kind === 'text') {
        if (part.text.includes('{{')) throw new SecretTemplateError(`secretTemplate.data["${key}"] has an unclosed {{`);
        return part.text;
      }
      const value = TEMPLATE_PLACEHOLDERS.includes(part.expression) ? data[part.expression] : undefined;
      if (value === undefined) {
        throw new SecretTemplateError(
          `secretTemplate.data["${key}"] uses unknown placeholder {{${part.expression}}}; known: ` +
            TEMPLATE_PLACEHOLDERS.map((p) => `{{${p}}}`).join(', '),
        );
      }
      return value;
    })
    .join('');
}

function hostForURL(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** postgresql://user:pass@host:port/db?sslmode=…, the libpq URI form; user and password URL-escaped. */
function postgresURI(target: SecretDataInput): string {
  const credentials = `${encodeURIComponent(target.username)}:${encodeURIComponent(target.password)}`;
  return `postgresql://${credentials}@${hostForURL(target.host)}:${target.port}/${encodeURIComponent(target.database)}?sslmode=${target.sslmode}`;
}

/**
 * jdbc:postgresql://host:port/db?sslmode=…, without credentials: Spring Cloud Bindings and Quarkus take the
 * username and password from their own keys, and applications and pools (HikariCP) log JDBC URLs.
 */
function jdbcURL(target: ConnectionTarget): string {
  return `jdbc:postgresql://${hostForURL(target.host)}:${target.port}/${encodeURIComponent(target.database)}?sslmode=${target.sslmode}`;
}

/** Query parameters of a connectionURL: only sslmode is accepted; the others are refused with these reasons. */
const REFUSED_PARAMETERS: ReadonlyMap<string, string> = new Map([
  ...['password', 'sslpassword'].map((p): [string, string] => [p, 'is a password: the password comes from rootCredentialsSecretRef (write {{password}} in the URL)']),
  ...['sslrootcert', 'sslcert', 'sslkey', 'sslcrl', 'sslcrldir', 'passfile', 'service', 'servicefile'].map((p): [string, string] => [
    p,
    "names a file on the operator's machine, which the operator never reads: give the server's CA with caSecretRef (client certificates are not supported)",
  ]),
  ...['host', 'hostaddr', 'port', 'dbname', 'user'].map((p): [string, string] => [p, 'would override the URL itself: write it in the URL (postgresql://{{username}}:{{password}}@host:port/database)']),
  ['require_auth', 'is spec.allowedAuthenticationMethods'],
]);

/** libpq's connection keywords (and pg's own): their names are shown in errors; any other name may be a typed secret. */
const KNOWN_PARAMETERS = new Set([
  'application_name', 'fallback_application_name', 'connect_timeout', 'client_encoding', 'options', 'keepalives',
  'keepalives_idle', 'keepalives_interval', 'keepalives_count', 'tcp_user_timeout', 'replication', 'gssencmode',
  'sslnegotiation', 'sslcompression', 'sslcertmode', 'sslsni', 'requirepeer', 'ssl_min_protocol_version',
  'ssl_max_protocol_version', 'krbsrvname', 'gsslib', 'gssdelegation', 'target_session_attrs', 'load_balance_hosts',
  'channel_binding', 'ssl', 'uselibpqcompat', 'statement_timeout', 'query_timeout', 'lock_timeout',
  'idle_in_transaction_session_timeout',
]);

/** Checks the query parameters against the allow-list (sslmode only) and returns sslmode if given. */
function sslmodeParameter(params: URLSearchParams): string | undefined {
  const seen = new Set<string>();
  for (const key of params.keys()) {
    const refused = REFUSED_PARAMETERS.get(key);
    if (refused !== undefined) throw new ConnectionURLError(`connectionURL must not have the parameter ${key}: it ${refused}`);
    if (key !== 'sslmode') {
      const name = KNOWN_PARAMETERS.has(key) ? `the parameter ${key}` : 'an unknown query parameter (its name is not shown: it may be a secret)';
      throw new ConnectionURLError(`connectionURL has ${name}; the only parameter accepted is sslmode (the CA: caSecretRef; authentication: allowedAuthenticationMethods)`);
    }
    if (seen.has(key)) throw new ConnectionURLError('connectionURL has sslmode twice');
    seen.add(key);
  }
  return params.get('sslmode') ?? undefined;
}

/**
 * Parses the config's connectionURL (postgres:// or postgresql://). The password, if any, must be the
 * {{password}} placeholder: a literal password in a spec would be readable by everyone who can read the config.
 * The only query parameter is sslmode (default: defaultSslMode); a parameter that could carry a secret, make the
 * operator read a local file or override the URL is refused, like any other.
 */
export function parseConnectionURL(connectionURL: string, caConfigured = false): ConnectionTarget {
  let url: URL;
  try {
    url = new URL(connectionURL);
  } catch {
    throw new ConnectionURLError('connectionURL is not a valid URL (one host only; placeholders {{username}} and {{password}})');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConnectionURLError(`connectionURL must start with postgresql:// or postgres://, not ${url.protocol}//`);
  }
  if (url.password !== '' && decodeURLPart(url.password, 'password') !== '{{password}}') {
    throw new ConnectionURLError('connectionURL must not contain a password: write {{password}} instead');
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new ConnectionURLError('connectionURL has no host');

  const sslmode = sslmodeParameter(url.searchParams) ?? defaultSslMode(caConfigured);
  if (!(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new ConnectionURLError(`connectionURL has sslmode=${sslmode}; use one of ${SSL_MODES.join(', ')}`);
  }
  return {
    host,
    port: parsePort(url.port),
    database: decodeURLPart(url.pathname.replace(/^\//, ''), 'database') || DEFAULT_DATABASE,
    sslmode: sslmode as SslMode,
  };
}

function decodeURLPart(encoded: string, what: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    throw new ConnectionURLError(`connectionURL has a malformed %-escape in its ${what}`);
  }
}

function parsePort(port: string): number {
  if (port === '') return DEFAULT_PORT;
  const value = Number(port);
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new ConnectionURLError(`connectionURL has invalid port ${port}`);
  return value;
}

/** The connectionURL with {{username}} and {{password}} replaced by URL-escaped values, for the admin pool. */
export function fillConnectionURL(connectionURL: string, username: string, password: string): string {
  const values = new Map([
    ['username', username],
    ['password', password],
  ]);
  return splitPlaceholders(connectionURL)
    .map((part) => {
      if (part.kind === 'text') return part.text;
      const value = values.get(part.expression);
      if (value === undefined) {
        throw new ConnectionURLError(`connectionURL uses unknown placeholder {{${part.expression}}}; known: {{username}}, {{password}}`);
      }
      return encodeURIComponent(value);
    })
    .join('');
}

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const MAX_ANNOTATIONS_BYTES = 256 * 1024;

/** Why key is not a valid label/annotation key (apimachinery's IsQualifiedName), or undefined. */
function qualifiedNameProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return 'its prefix must be a DNS subdomain';
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) return 'its name part must be 1-63 characters of [A-Za-z0-9-_.], starting and ending with a letter or digit';
  return undefined;
}

/**
 * Checks secretTemplate.labels and .annotations as the API server would, so that a bad key is reported before any
 * SQL runs (a Secret write refused with 422 after CREATE ROLE would create and drop a role on every retry).
 */
export function validateSecretMetadata(labels: Record<string, string> | undefined, annotations: Record<string, string> | undefined): void {
  for (const [key, value] of Object.entries(labels ?? {})) {
    const problem = qualifiedNameProblem(key);
    if (problem) throw new SecretTemplateError(`secretTemplate.labels key ${JSON.stringify(key.slice(0, 80))} is invalid: ${problem}`);
    if (value.length > 63 || !LABEL_VALUE.test(value)) {
      throw new SecretTemplateError(`secretTemplate.labels["${key}"] value is invalid: at most 63 characters of [A-Za-z0-9-_.], starting and ending with a letter or digit`);
    }
  }
  let bytes = 0;
  for (const [key, value] of Object.entries(annotations ?? {})) {
    const problem = qualifiedNameProblem(key);
    if (problem) throw new SecretTemplateError(`secretTemplate.annotations key ${JSON.stringify(key.slice(0, 80))} is invalid: ${problem}`);
    bytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  if (bytes > MAX_ANNOTATIONS_BYTES) throw new SecretTemplateError(`secretTemplate.annotations total ${bytes} bytes, more than the API server's 256 KiB limit`);
}
