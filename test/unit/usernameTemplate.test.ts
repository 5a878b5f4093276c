import assert from 'node:assert/strict';
import {
  DEFAULT_USERNAME_TEMPLATE,
  parseUsernameTemplate,
  renderUsername,
  splitPlaceholders,
  truncateUtf8,
  UsernameTemplateError,
  validateTemplate,
  type RenderOptions,
  type UsernameValues,
} from '../../src/postgres/usernameTemplate.js';
import type { RandomBytes } from '../../src/secrets/password.js';

const values: UsernameValues = {
  role: 'Reporting-Role',
  credential: 'app-database',
  namespace: 'team-a',
  config: 'main-pg',
};

// Bytes 0,1,2,… map to a,b,c,… in the letters-and-digits alphabet.
const counting: RandomBytes = (size) => Uint8Array.from({ length: size }, (_, i) => i);
const fixed: RenderOptions = { now: new Date('2024-05-01T00:00:00.900Z'), randomBytes: counting };

function render(template: string, overrides: Partial<UsernameValues> = {}): string {
  return renderUsername(parseUsernameTemplate(template), { ...values, ...overrides }, fixed);
}

function refuses(template: string, message: RegExp): void {
  assert.throws(() => parseUsernameTemplate(template), (err: unknown) => err instanceof UsernameTemplateError && message.test(err.message));
}

describe('username template', () => {
  it('renders the default template', () => {
    assert.equal(
      render(DEFAULT_USERNAME_TEMPLATE),
      'v-Reportin-app-data-abcdefghijklmnopqrst-1714521600',
    );
  });

  it('renders every placeholder, with spaces allowed inside the braces', () => {
    assert.equal(
      render('{{ namespace }}.{{config}}.{{credential}}.{{ role | lowercase }}.{{unix_time}}.{{random 3}}'),
      'team-a.main-pg.app-database.reporting-role.1714521600.abc',
    );
  });

  it('applies filters left to right', () => {
    assert.equal(render('{{role|lowercase|truncate 4}}'), 'repo');
    assert.equal(render('{{role|truncate 4|lowercase}}'), 'repo');
    assert.equal(render('{{random 8|truncate 2}}-{{unix_time|truncate 4}}'), 'ab-1714');
    assert.equal(render('{{random 4|lowercase}}', {}), 'abcd');
  });

  it('draws {{random N}} from letters and digits with crypto randomness by default', () => {
    const username = renderUsername(parseUsernameTemplate('{{random 40}}'), values);
    assert.match(username, /^[A-Za-z0-9]{40}$/);
  });

  it('cuts the result to 63 bytes without splitting a UTF-8 character', () => {
    const username = render('{{role}}', { role: 'x' + 'é'.repeat(40) });
    assert.equal(Buffer.byteLength(username), 63);
    assert.equal(username, 'x' + 'é'.repeat(31));
    const emoji = render('{{role}}', { role: '😀'.repeat(20) });
    assert.equal(emoji, '😀'.repeat(15)); // 60 bytes: a 16th would need 64
  });

  it('cuts plain ASCII at exactly 63 bytes', () => {
    assert.equal(render('{{role}}-{{random 63}}', { role: 'r' }).length, 63);
  });

  it('truncate N counts bytes, like Vault, never splitting a character', () => {
    assert.equal(render('{{role|truncate 3}}', { role: 'ééé' }), 'é');
    assert.equal(truncateUtf8('aé', 2), 'a');
  });

  describe('refuses at parse time', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /empty/],
      ['   ', /empty/],
      ['{{foo}}', /unknown placeholder \{\{foo\}\}.*known placeholders: role, credential/],
      ['{{role truncate 8}}', /unknown placeholder \{\{role truncate 8\}\}/],
      ['{{unix_time 3}}', /unknown placeholder/],
      ['{{role|upper}}', /unknown filter "upper".*known filters: truncate N, lowercase/],
      ['{{role|}}', /an empty filter/],
      ['{{role|lowercase 2}}', /unknown filter "lowercase 2"/],
      ['{{random}}', /random needs one whole number N from 1 to 63/],
      ['{{random 0}}', /"random 0".*from 1 to 63/],
      ['{{random 64}}', /"random 64"/],
      ['{{random x}}', /"random x"/],
      ['{{random 1.5}}', /"random 1.5"/],
      ['{{random 2 3}}', /"random 2 3"/],
      ['{{role|truncate}}', /truncate needs one whole number/],
      ['{{role|truncate -1}}', /"truncate -1"/],
      ['{{role}', /unbalanced braces.*near "\{\{role\}"/],
      ['{role}}', /unbalanced braces/],
      ['{{role', /unbalanced braces/],
      ['a}b-{{role}}', /unbalanced braces.*near "\}b-"/],
      ['{{}}', /unbalanced braces/],
    ];
    for (const [template, message] of cases) {
      it(JSON.stringify(template), () => refuses(template, message));
    }
  });

  describe('refuses a rendered name that cannot be a role', () => {
    it('starting with pg_ (reserved)', () => {
      assert.throws(() => render('pg_{{role}}'), /yields role name "pg_Reporting-Role", but names starting with "pg_" are reserved/);
    });
    it('empty', () => assert.throws(() => render('{{role}}', { role: '' }), /yields an empty role name/));
    it('containing NUL', () => assert.throws(() => render('{{role}}', { role: 'a\0b' }), /NUL/));
    it('but allows PG_ (the reservation is case-sensitive)', () => assert.equal(render('PG_{{role|truncate 2}}'), 'PG_Re'));
  });

  describe('validateTemplate', () => {
    it('accepts the default with a sample and no warnings', () => {
      const result = validateTemplate(DEFAULT_USERNAME_TEMPLATE, fixed);
      assert.equal(result.sample, 'v-sample-r-sample-c-abcdefghijklmnopqrst-1714521600');
      assert.deepEqual(result.warnings, []);
      assert.equal(renderUsername(result.compiled, values, fixed), render(DEFAULT_USERNAME_TEMPLATE));
    });
    it('warns when names may collide', () => {
      assert.deepEqual(validateTemplate('{{credential}}-{{unix_time}}').warnings, [
        'username template has no {{random N}}: issued usernames may collide',
      ]);
    });
    it('refuses a template that always yields a reserved name', () => {
      assert.throws(() => validateTemplate('pg_{{random 5}}'), UsernameTemplateError);
    });
    it('refuses a template that does not parse', () => {
      assert.throws(() => validateTemplate('{{nope}}'), UsernameTemplateError);
    });
  });
});

describe('splitPlaceholders', () => {
  it('splits text and trimmed expressions', () => {
    assert.deepEqual(splitPlaceholders('a{{ x | y }}b{{z}}'), [
      { kind: 'text', text: 'a' },
      { kind: 'placeholder', expression: 'x | y', offset: 1 },
      { kind: 'text', text: 'b' },
      { kind: 'placeholder', expression: 'z', offset: 13 },
    ]);
  });
  it('leaves PostgreSQL array literals as text', () => {
    assert.deepEqual(splitPlaceholders("'{{1,2},{3,4}}'"), [{ kind: 'text', text: "'{{1,2},{3,4}}'" }]);
  });
});
