// A workload's login with the credential the operator delivered, as an application would do it:
//   node /app/login.mjs files <dir>     the Secret's keys as files in <dir> (a Secret volume)
//   node /app/login.mjs env <PREFIX>    the Secret's keys as variables <PREFIX>host, ... (envFrom with a prefix)
// Prints one line, `logged in as <user>` (exit 0) or `login failed: <reason>` (exit 1), within 5 seconds.
// The password is never printed.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** The Secret keys a login needs (the operator's Secret has these among others). */
export const SETTING_KEYS = ['host', 'port', 'database', 'username', 'password', 'sslmode'];
export const LOGIN_TIMEOUT_MS = 5000;

export class UsageError extends Error {}

/** The six settings, read from the files in a directory or from prefixed environment variables. */
export async function readSettings(mode, source, io = {}) {
  const env = io.env ?? process.env;
  const readText = io.readText ?? ((file) => readFile(file, 'utf8'));
  if (typeof source !== 'string' || (mode === 'files' && source === '')) throw new UsageError(usage());
  const settings = {};
  for (const key of SETTING_KEYS) {
    if (mode === 'files') {
      try {
        settings[key] = await readText(path.join(source, key));
      } catch (err) {
        throw new UsageError(`cannot read ${path.join(source, key)}: ${err?.code ?? err?.message ?? err}`);
      }
    } else if (mode === 'env') {
      const value = env[source + key];
      if (value === undefined) throw new UsageError(`environment variable ${source + key} is not set`);
      settings[key] = value;
    } else {
      throw new UsageError(usage());
    }
  }
  return settings;
}

function usage() {
  return 'usage: login.mjs files <dir> | env <PREFIX>';
}

/** TLS as libpq's sslmode asks: none for disable/allow, unverified for prefer/require, verified for verify-*. */
export function tlsFor(sslmode) {
  switch (sslmode) {
    case 'disable':
    case 'allow':
      return false;
    case 'prefer':
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
    case 'verify-full':
      return { rejectUnauthorized: true };
    default:
      throw new UsageError(`sslmode "${sslmode}" is not one of disable, allow, prefer, require, verify-ca, verify-full`);
  }
}

/** node-postgres client settings for one login that gives up after timeoutMs. */
export function clientConfig(settings, timeoutMs = LOGIN_TIMEOUT_MS) {
  const port = Number(settings.port);
  if (!/^[0-9]+$/.test(settings.port) || port < 1 || port > 65535) throw new UsageError(`port "${settings.port}" is not a TCP port`);
  return {
    host: settings.host,
    port,
    database: settings.database,
    user: settings.username,
    password: settings.password,
    ssl: tlsFor(settings.sslmode),
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: 'dbcred-workload',
  };
}

/** An error's message with the password cut out, should a server or library ever echo it. */
export function failureLine(err, password) {
  let message = err instanceof Error ? err.message : String(err);
  if (password) message = message.split(password).join('***');
  return `login failed: ${message || (err?.code ?? 'unknown error')}`;
}

/** Connects, asks for current_user, disconnects: the user's name, or a rejection (at the latest after timeoutMs). */
export async function login(settings, timeoutMs = LOGIN_TIMEOUT_MS) {
  const client = new pg.Client(clientConfig(settings, timeoutMs));
  client.on('error', () => {}); // a connection lost after the answer is not this login's failure
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000}s`)), timeoutMs);
  });
  const attempt = (async () => {
    await client.connect();
    const res = await client.query('select current_user');
    return res.rows[0].current_user;
  })();
  attempt.catch(() => {}); // when the deadline wins, the attempt's own failure comes later and is not news
  try {
    return await Promise.race([attempt, deadline]);
  } finally {
    clearTimeout(timer);
    client.end().catch(() => {});
  }
}

/** One login from command-line arguments: the line to print and the exit code. */
export async function loginFromArgs(args, io = {}) {
  let settings;
  try {
    settings = await readSettings(args[0], args[1], io);
    return { line: `logged in as ${await login(settings, io.timeoutMs)}`, ok: true };
  } catch (err) {
    return { line: failureLine(err, settings?.password), ok: false };
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { line, ok } = await loginFromArgs(process.argv.slice(2));
  console.log(line);
  process.exit(ok ? 0 : 1);
}
