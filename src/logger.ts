// Structured JSON logs (winston). Every line goes through redaction: fields that can carry a secret are masked
// by name, and credentials embedded in strings (URLs with a password, SCRAM verifiers, PASSWORD '...') are cut.
import winston from 'winston';

export type Logger = winston.Logger;

const SECRET_KEY = /^(password|passwd|pwd|token|bearer|verifier|uri|jdbc-url|data|stringData|authorization)$/i;

/** Masks credentials inside free text: URLs with a password, SCRAM verifiers, PASSWORD '…' literals. */
export function redactText(text: string): string {
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]*@/gi, '$1***@')
    .replace(/SCRAM-SHA-256\$[^\s'"]*/g, 'SCRAM-SHA-256$***')
    .replace(/(PASSWORD\s+)(E?'(?:[^']|'')*')/gi, "$1'***'")
    .replace(/([?&]password=)[^&\s]*/gi, '$1***');
}

export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return redactText(value.message);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? '***' : redactValue(v, depth + 1);
  return out;
}

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    info[key] = SECRET_KEY.test(key) ? '***' : redactValue(info[key]);
  }
  return info;
});

export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.json()),
    defaultMeta: { logger: 'dbcred-operator' },
    transports: [new winston.transports.Console({ stderrLevels: [] })],
  });
}
