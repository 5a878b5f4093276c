// Types of login.mjs for the unit tests (the image runs the .mjs as it is).
export interface LoginSettings {
  host: string;
  port: string;
  database: string;
  username: string;
  password: string;
  sslmode: string;
}
export interface LoginIO {
  env?: Record<string, string | undefined>;
  readText?: (file: string) => Promise<string>;
  timeoutMs?: number;
}
export const SETTING_KEYS: readonly (keyof LoginSettings)[];
export const LOGIN_TIMEOUT_MS: number;
export class UsageError extends Error {}
export function readSettings(mode: string | undefined, source: string | undefined, io?: LoginIO): Promise<LoginSettings>;
export function tlsFor(sslmode: string): false | { rejectUnauthorized: boolean };
export function clientConfig(settings: LoginSettings, timeoutMs?: number): {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  ssl: false | { rejectUnauthorized: boolean };
  connectionTimeoutMillis: number;
  query_timeout: number;
  application_name: string;
};
export function failureLine(err: unknown, password: string | undefined): string;
export function login(settings: LoginSettings, timeoutMs?: number): Promise<string>;
export function loginFromArgs(args: readonly string[], io?: LoginIO): Promise<{ line: string; ok: boolean }>;
