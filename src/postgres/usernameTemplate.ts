// The username template of DatabaseConfig.spec.usernameTemplate, after Vault's username_template:
//   v-{{role|truncate 8}}-{{credential|truncate 8}}-{{random 20}}-{{unix_time}}
// A template is parsed once (errors become a condition on the config) and rendered for every issued role.

import { ALPHANUMERIC, randomString, type RandomBytes } from '../secrets/password.js';

export const DEFAULT_USERNAME_TEMPLATE = 'v-{{role|truncate 8}}-{{credential|truncate 8}}-{{random 20}}-{{unix_time}}';

/** PostgreSQL's NAMEDATALEN - 1: longer role names are silently truncated by the server. */
export const MAX_ROLE_NAME_BYTES = 63;

// ---------------------------------------------------------------------------------------------------------------
// {{ … }} placeholder syntax, shared by the username template, SQL statements, the connection URL and the Secret
// template so that all of them agree on what a placeholder is. (It belongs in src/api/ once that file exists.)

export type TemplatePart =
  | { kind: 'text'; text: string }
  | { kind: 'placeholder'; expression: string; offset: number };

// The expression starts with a letter so that PostgreSQL array literals such as '{{1,2},{3,4}}' stay text.
const PLACEHOLDER = /\{\{\s*([A-Za-z_][^{}]*?)\s*\}\}/g;

/** Splits text into literal runs and {{ expression }} placeholders (expression trimmed). Never throws. */
export function splitPlaceholders(text: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let last = 0;
  for (const match of text.matchAll(PLACEHOLDER)) {
    const offset = match.index;
    if (offset > last) parts.push({ kind: 'text', text: text.slice(last, offset) });
    parts.push({ kind: 'placeholder', expression: match[1] ?? '', offset });
    last = offset + match[0].length;
  }
  if (last < text.length) parts.push({ kind: 'text', text: text.slice(last) });
  return parts;
}

// ---------------------------------------------------------------------------------------------------------------

export class UsernameTemplateError extends Error {
  override name = 'UsernameTemplateError';
}

const VARIABLES = ['role', 'credential', 'namespace', 'config'] as const;
type Variable = (typeof VARIABLES)[number];

/** The values a template may refer to: names of the DatabaseRole, DatabaseCredential, its namespace, the config. */
export type UsernameValues = Record<Variable, string>;

type Source = { kind: 'variable'; name: Variable } | { kind: 'random'; length: number } | { kind: 'unix_time' };
type Filter = { kind: 'truncate'; bytes: number } | { kind: 'lowercase' };
type Segment = { kind: 'text'; text: string } | { kind: 'placeholder'; source: Source; filters: Filter[] };

export interface CompiledUsernameTemplate {
  readonly template: string;
  readonly segments: readonly Segment[];
}

export interface RenderOptions {
  /** The instant of {{unix_time}}; the current time by default. */
  now?: Date;
  /** Random source of {{random N}}; crypto.randomBytes by default. */
  randomBytes?: RandomBytes;
}

const PLACEHOLDER_HELP = 'known placeholders: role, credential, namespace, config, random N, unix_time';
const FILTER_HELP = 'known filters: truncate N, lowercase';

/** Parses a template, or throws a UsernameTemplateError that says what is wrong and where. */
export function parseUsernameTemplate(template: string): CompiledUsernameTemplate {
  if (template.trim() === '') throw new UsernameTemplateError('username template is empty');
  const segments = splitPlaceholders(template).map((part): Segment => {
    if (part.kind === 'text') {
      rejectStrayBraces(part.text, template);
      return part;
    }
    return parseExpression(part.expression);
  });
  return { template, segments };
}

// Outside a placeholder a brace can only be a typo ("{{role}", "{role}}"), never part of a sensible role name.
function rejectStrayBraces(text: string, template: string): void {
  const brace = /[{}]/.exec(text);
  if (brace === null) return;
  throw new UsernameTemplateError(
    `unbalanced braces in username template ${JSON.stringify(template)} near ${JSON.stringify(text.slice(brace.index, brace.index + 12))}: ` +
      'placeholders are written {{role}} or {{role|truncate 8}}',
  );
}

function parseExpression(expression: string): Segment {
  const [sourceText = '', ...filterTexts] = expression.split('|').map((piece) => piece.trim());
  return { kind: 'placeholder', source: parseSource(sourceText), filters: filterTexts.map(parseFilter) };
}

function parseSource(text: string): Source {
  const [name = '', ...args] = text.split(/\s+/);
  if ((VARIABLES as readonly string[]).includes(name) && args.length === 0) {
    return { kind: 'variable', name: name as Variable };
  }
  if (name === 'unix_time' && args.length === 0) return { kind: 'unix_time' };
  if (name === 'random') return { kind: 'random', length: parseCount('random', args) };
  throw new UsernameTemplateError(`unknown placeholder {{${text}}} in username template; ${PLACEHOLDER_HELP}`);
}

function parseFilter(text: string): Filter {
  const [name = '', ...args] = text.split(/\s+/);
  if (name === 'lowercase' && args.length === 0) return { kind: 'lowercase' };
  if (name === 'truncate') return { kind: 'truncate', bytes: parseCount('truncate', args) };
  const shown = text === '' ? 'an empty filter' : `unknown filter "${text}"`;
  throw new UsernameTemplateError(`${shown} in username template; ${FILTER_HELP}`);
}

// Above 63 a count could only be cut by the final 63-byte limit, so it is a mistake worth reporting.
function parseCount(keyword: string, args: string[]): number {
  const [arg] = args;
  const count = arg !== undefined && /^\d+$/.test(arg) ? Number(arg) : NaN;
  if (args.length !== 1 || !(count >= 1 && count <= MAX_ROLE_NAME_BYTES)) {
    throw new UsernameTemplateError(
      `"${[keyword, ...args].join(' ')}" in username template: ${keyword} needs one whole number N from 1 to ${MAX_ROLE_NAME_BYTES}`,
    );
  }
  return count;
}

/**
 * Renders a username: placeholders and filters applied, the result cut to 63 bytes on a character boundary.
 * Throws a UsernameTemplateError if the result cannot be a role name (see roleNameProblem).
 */
export function renderUsername(
  compiled: CompiledUsernameTemplate,
  values: UsernameValues,
  options: RenderOptions = {},
): string {
  const rendered = compiled.segments
    .map((segment) => (segment.kind === 'text' ? segment.text : renderPlaceholder(segment, values, options)))
    .join('');
  const username = truncateUtf8(rendered, MAX_ROLE_NAME_BYTES);
  const problem = roleNameProblem(username);
  if (problem !== undefined) {
    throw new UsernameTemplateError(`username template ${JSON.stringify(compiled.template)} yields ${problem}`);
  }
  return username;
}

function renderPlaceholder(
  segment: Extract<Segment, { kind: 'placeholder' }>,
  values: UsernameValues,
  options: RenderOptions,
): string {
  return segment.filters.reduce(applyFilter, sourceValue(segment.source, values, options));
}

function sourceValue(source: Source, values: UsernameValues, options: RenderOptions): string {
  switch (source.kind) {
    case 'variable':
      return values[source.name];
    case 'random':
      return randomString(ALPHANUMERIC, source.length, options.randomBytes);
    case 'unix_time':
      return String(Math.floor((options.now ?? new Date()).getTime() / 1000));
  }
}

function applyFilter(value: string, filter: Filter): string {
  switch (filter.kind) {
    case 'lowercase':
      return value.toLowerCase();
    case 'truncate':
      return truncateUtf8(value, filter.bytes);
  }
}

/**
 * Why a string cannot be used as a PostgreSQL role name we create, or undefined if it can.
 * "pg_" is reserved by PostgreSQL (case-sensitive, as the server checks it); NUL cannot be sent in a query.
 */
export function roleNameProblem(name: string): string | undefined {
  if (name === '') return 'an empty role name';
  if (name.startsWith('pg_')) return `role name ${JSON.stringify(name)}, but names starting with "pg_" are reserved`;
  if (name.includes('\0')) return 'a role name containing a NUL character';
  if (Buffer.byteLength(name, 'utf8') > MAX_ROLE_NAME_BYTES) return `a role name longer than ${MAX_ROLE_NAME_BYTES} bytes`;
  return undefined;
}

/** Keeps at most maxBytes bytes of UTF-8, never splitting a character. Also the meaning of `truncate N` (as Vault). */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  let result = '';
  let bytes = 0;
  for (const character of text) {
    bytes += Buffer.byteLength(character, 'utf8');
    if (bytes > maxBytes) break;
    result += character;
  }
  return result;
}

const SAMPLE_VALUES: UsernameValues = {
  role: 'sample-role',
  credential: 'sample-credential',
  namespace: 'sample-namespace',
  config: 'sample-config',
};

export interface TemplateValidation {
  compiled: CompiledUsernameTemplate;
  /** A username rendered from sample values, for messages. */
  sample: string;
  /** Problems that do not make the template unusable, e.g. a way to produce colliding names. */
  warnings: string[];
}

/**
 * Parses the template and renders it once with sample values; throws a UsernameTemplateError if either fails.
 * A template without {{random N}} is accepted with a warning: a rotation in the same second as the previous issue
 * would reuse the name and fail with "role already exists".
 */
export function validateTemplate(template: string, options: RenderOptions = {}): TemplateValidation {
  const compiled = parseUsernameTemplate(template);
  const sample = renderUsername(compiled, SAMPLE_VALUES, options);
  const hasRandom = compiled.segments.some((s) => s.kind === 'placeholder' && s.source.kind === 'random');
  const warnings = hasRandom ? [] : ['username template has no {{random N}}: issued usernames may collide'];
  return { compiled, sample, warnings };
}
