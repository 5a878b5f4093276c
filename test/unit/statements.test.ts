import assert from 'node:assert/strict';
import {
  buildAdminMembership,
  buildOwnedObjectsCleanup,
  buildRevocation,
  checkCreationStatements,
  commentOnRole,
  databasesWithDependenciesQuery,
  defaultRenewStatements,
  formatExpiration,
  isLegacyMarker,
  markerProvesOwner,
  parseRoleComment,
  placeholdersIn,
  quoteIdentifier,
  quoteLiteral,
  renderStatements,
  StatementTemplateError,
  type StatementValues,
} from '../../src/postgres/statements.js';

const expiration = new Date('2024-05-01T12:34:56.789Z');
const plain: StatementValues = { name: 'v-app-1', password: 'Secret-123', expiration };

function renderOne(statement: string, values: StatementValues = plain): string {
  const [rendered] = renderStatements([statement], values);
  return rendered ?? '';
}

function refuses(statement: string, message: RegExp, values: StatementValues = plain): void {
  assert.throws(() => renderOne(statement, values), (err: unknown) => err instanceof StatementTemplateError && message.test(err.message));
}

describe('renderStatements', () => {
  it('renders the contract example', () => {
    assert.deepEqual(
      renderStatements(
        [
          `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
          'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";',
        ],
        plain,
      ),
      [
        `CREATE ROLE "v-app-1" WITH LOGIN PASSWORD 'Secret-123' VALID UNTIL '2024-05-01 12:34:56+00';`,
        'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "v-app-1";',
      ],
    );
  });

  it('accepts {{username}} as {{name}} and spaces inside braces', () => {
    assert.equal(renderOne('GRANT r TO "{{ username }}"'), 'GRANT r TO "v-app-1"');
  });

  it('keeps several statements in one string', () => {
    assert.equal(renderOne('CREATE ROLE "{{name}}"; GRANT r TO "{{name}}";'), 'CREATE ROLE "v-app-1"; GRANT r TO "v-app-1";');
  });

  it('renders the default renew statement', () => {
    assert.deepEqual(renderStatements(defaultRenewStatements, { name: 'u', expiration }), [
      `ALTER ROLE "u" VALID UNTIL '2024-05-01 12:34:56+00';`,
    ]);
  });

  describe('escapes each value for where it stands', () => {
    const hostile: StatementValues = { name: `a"b'c\\d`, password: `p'w"\\x`, expiration };

    it('inside "…": doubles " only', () => {
      assert.equal(renderOne('DROP ROLE "{{name}}"', hostile), `DROP ROLE "a""b'c\\d"`);
    });
    it("inside '…': doubles ' only (standard_conforming_strings=on)", () => {
      assert.equal(renderOne(`PASSWORD '{{password}}'`, hostile), `PASSWORD 'p''w"\\x'`);
      assert.equal(renderOne(`WHERE usename = '{{name}}'`, hostile), `WHERE usename = 'a"b''c\\d'`);
    });
    it("inside E'…': doubles ' and backslashes", () => {
      assert.equal(renderOne(`PASSWORD E'{{password}}'`, hostile), `PASSWORD E'p''w"\\\\x'`);
      assert.equal(renderOne(`PASSWORD e'{{password}}'`, hostile), `PASSWORD e'p''w"\\\\x'`);
    });
    it("inside U&'…' and U&\"…\": doubles the quote and backslashes", () => {
      assert.equal(renderOne(`SELECT U&'{{password}}'`, hostile), `SELECT U&'p''w"\\\\x'`);
      assert.equal(renderOne(`DROP ROLE U&"{{name}}"`, hostile), `DROP ROLE U&"a""b'c\\\\d"`);
    });
    it('an identifier ending in e before a quote is not an E string', () => {
      assert.equal(renderOne(`SELECT date'{{expiration}}', some'{{password}}'`, hostile), `SELECT date'2024-05-01 12:34:56+00', some'p''w"\\x'`);
    });
    it('bare: name as a quoted identifier, others as literals (E-string when a backslash is present)', () => {
      assert.equal(
        renderOne('CREATE ROLE {{name}} PASSWORD {{password}} VALID UNTIL {{expiration}}', hostile),
        `CREATE ROLE "a""b'c\\d" PASSWORD E'p''w"\\\\x' VALID UNTIL '2024-05-01 12:34:56+00'`,
      );
      assert.equal(renderOne('CREATE ROLE {{name}} PASSWORD {{password}}'), `CREATE ROLE "v-app-1" PASSWORD 'Secret-123'`);
    });
    it('does not mistake quotes inside strings for context changes', () => {
      assert.equal(
        renderOne(`SELECT 'it''s "x"', "we""ird", E'\\'', {{name}}`, hostile),
        `SELECT 'it''s "x"', "we""ird", E'\\'', "a""b'c\\d"`,
      );
    });
  });

  describe('comments', () => {
    it('leaves placeholders in -- and /* */ comments untouched, so no password reaches the server log', () => {
      assert.equal(
        renderOne('CREATE ROLE {{name}}; -- {{password}} \'"\nGRANT r TO {{name}} /* {{password}} /* nested */ {{foo}} */;'),
        `CREATE ROLE "v-app-1"; -- {{password}} '"\nGRANT r TO "v-app-1" /* {{password}} /* nested */ {{foo}} */;`,
      );
    });
    it('does not treat -- inside a string as a comment', () => {
      assert.equal(renderOne(`SELECT '--', '{{name}}'`), `SELECT '--', 'v-app-1'`);
    });
  });

  describe('dollar quoting', () => {
    it('renders a DO body by its own quoting', () => {
      assert.equal(
        renderOne(`DO $$BEGIN EXECUTE format('CREATE ROLE %I', '{{name}}'); GRANT r TO {{name}}; END$$;`, { name: "o'k" }),
        `DO $$BEGIN EXECUTE format('CREATE ROLE %I', 'o''k'); GRANT r TO "o'k"; END$$;`,
      );
    });
    it('handles tagged bodies and leaves $1 parameters alone', () => {
      assert.equal(renderOne(`DO $x$ SELECT $1, '{{name}}' $x$`), `DO $x$ SELECT $1, 'v-app-1' $x$`);
    });
    it('refuses a value that would close the dollar quote', () => {
      refuses('DO $$ SELECT {{name}} $$', /would end the dollar-quoted string \$\$/, { name: 'a$$b' });
    });
    it('an identifier containing $ does not open a dollar quote', () => {
      assert.equal(renderOne(`SELECT a$b$ , '{{name}}'`), `SELECT a$b$ , 'v-app-1'`);
    });
  });

  describe('nested quoting: a string that is itself SQL (EXECUTE, dblink) is escaped twice', () => {
    const hostile: StatementValues = { name: `a"b'c\\d`, password: `p'w"\\x`, expiration };
    const rotation = `DO $$ BEGIN EXECUTE 'ALTER ROLE "{{name}}" WITH PASSWORD ''{{password}}'''; END $$;`;

    /** Reads one quoted token starting at text[at] (the opening quote); returns its value and the index after it. */
    function readQuoted(text: string, at: number): { value: string; end: number } {
      const quote = text[at];
      let value = '';
      for (let i = at + 1; i < text.length; i++) {
        if (text[i] === quote) {
          if (text[i + 1] !== quote) return { value, end: i + 1 };
          i++;
        }
        value += text[i];
      }
      throw new Error(`unterminated ${quote} in ${text}`);
    }
    /** What EXECUTE runs: the text of the string after EXECUTE, quotes un-doubled, as PostgreSQL reads it. */
    function executedSql(rendered: string): string {
      const at = rendered.indexOf("EXECUTE '");
      assert.ok(at >= 0, rendered);
      return readQuoted(rendered, at + 'EXECUTE '.length).value;
    }
    /** The role an ALTER ROLE "…" statement acts on and the password it sets, as PostgreSQL reads them. */
    function alterRoleTarget(sql: string): { role: string; password: string; rest: string } {
      assert.ok(sql.startsWith('ALTER ROLE "'), sql);
      const role = readQuoted(sql, 'ALTER ROLE '.length);
      const keyword = ' WITH PASSWORD ';
      assert.equal(sql.slice(role.end, role.end + keyword.length), keyword, sql);
      const password = readQuoted(sql, role.end + keyword.length);
      return { role: role.value, password: password.value, rest: sql.slice(password.end) };
    }

    it('renders the rotation statement of the report with each value escaped for the quotes it stands in, then again', () => {
      assert.equal(
        renderOne(rotation, hostile),
        `DO $$ BEGIN EXECUTE 'ALTER ROLE "a""b''c\\d" WITH PASSWORD ''p''''w"\\x'''; END $$;`,
      );
    });

    const names = [`q"uote`, `ap'os`, `back\\slash`, `dash--dash`, `semi;colon`, `x" WITH PASSWORD 'pwned' --`, `x''; DROP ROLE postgres; --`, `"'"'`, `tail\\`];
    for (const name of names) {
      it(`EXECUTE acts on exactly ${JSON.stringify(name)} and sets exactly the password`, () => {
        const password = `pw'"\\--;${name}`;
        const sql = executedSql(renderOne(rotation, { name, password }));
        assert.deepEqual(alterRoleTarget(sql), { role: name, password, rest: '' });
      });
    }

    it('refuses a value that would end the dollar quote around the DO body, and works with another tag', () => {
      refuses(rotation, /would end the dollar-quoted string \$\$/, { name: 'a$$b', password: 'p' });
      const tagged = rotation.replaceAll('$$', '$body$');
      assert.deepEqual(alterRoleTarget(executedSql(renderOne(tagged, { name: 'a$$b', password: '$$' }))), { role: 'a$$b', password: '$$', rest: '' });
    });

    it("renders bare placeholders in EXECUTE's string as quoted SQL", () => {
      assert.equal(renderOne(`DO $$ BEGIN EXECUTE 'GRANT r TO {{name}}'; END $$`, hostile), `DO $$ BEGIN EXECUTE 'GRANT r TO "a""b''c\\d"'; END $$`);
      assert.equal(renderOne(`DO $$ BEGIN EXECUTE /* run it */ 'SELECT {{password}}'; END $$`, hostile), `DO $$ BEGIN EXECUTE /* run it */ 'SELECT E''p''''w"\\\\x'''; END $$`);
    });

    it('nests to any depth (dblink_exec running a DO block running EXECUTE)', () => {
      assert.equal(
        renderOne(`SELECT dblink_exec('dbname=x', 'DO $f$ BEGIN EXECUTE ''ALTER ROLE "{{name}}"''; END $f$')`, hostile),
        `SELECT dblink_exec('dbname=x', 'DO $f$ BEGIN EXECUTE ''ALTER ROLE "a""b''''c\\d"''; END $f$')`,
      );
    });

    it('keeps plain values as they were: PASSWORD, VALID UNTIL, format() arguments', () => {
      assert.equal(
        renderOne(`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`, hostile),
        `ALTER ROLE "a""b'c\\d" WITH PASSWORD 'p''w"\\x' VALID UNTIL '2024-05-01 12:34:56+00'`,
      );
      assert.equal(
        renderOne(`DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', '{{name}}', '{{password}}'); END $$`, hostile),
        `DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', 'a"b''c\\d', 'p''w"\\x'); END $$`,
      );
    });

    it('leaves placeholders in comments inside the nested SQL alone, and does not count them', () => {
      const statement = `DO $$ BEGIN EXECUTE 'ALTER ROLE "{{name}}" -- not {{password}}'; END $$`;
      assert.equal(renderOne(statement, { name: 'u' }), `DO $$ BEGIN EXECUTE 'ALTER ROLE "u" -- not {{password}}'; END $$`);
      assert.deepEqual([...placeholdersIn([statement])], ['name']);
    });

    it('refuses nesting it cannot make safe, with a clear error, at check time too', () => {
      const unbalanced = `DO $$ BEGIN EXECUTE 'ALTER ROLE "{{name}}" PASSWORD ''' || x || ''''; END $$`;
      refuses(unbalanced, /\{\{name\}\} stands in a '…' string whose text, read as SQL, has an unterminated quote/);
      assert.throws(() => placeholdersIn([unbalanced]), StatementTemplateError);
      refuses(`DO $$ BEGIN EXECUTE E'ALTER ROLE "{{name}}"'; END $$`, /\{\{name\}\} stands in an E'…' string that holds SQL/);
      refuses(`SELECT U&'ALTER ROLE "{{name}}"'`, /stands in an U&'…' string that holds SQL/);
    });

    it("still allows E'…' plain values and quoted strings without placeholders", () => {
      assert.equal(renderOne(`PASSWORD E'{{password}}'`, hostile), `PASSWORD E'p''w"\\\\x'`);
      assert.equal(renderOne(`SELECT 'it''s', '{{name}}'`, hostile), `SELECT 'it''s', 'a"b''c\\d'`);
    });
  });

  describe('errors', () => {
    it('unknown placeholder', () => refuses('GRANT {{foo}} TO x', /unknown placeholder \{\{foo\}\}.*\{\{name\}\} \(or \{\{username\}\}\)/));
    it('unknown placeholder named like an Object property', () => refuses('SELECT {{constructor}}', /unknown placeholder \{\{constructor\}\}/));
    it('missing password', () => refuses(`PASSWORD '{{password}}'`, /uses \{\{password\}\} but no password/, { name: 'u' }));
    it('missing expiration', () => refuses(`VALID UNTIL '{{expiration}}'`, /no expiration/, { name: 'u' }));
    it('NUL in a value', () => refuses('CREATE ROLE {{name}}', /NUL/, { name: 'a\0' }));
    it('unterminated string', () => refuses(`CREATE ROLE x PASSWORD '{{password}}`, /unterminated quoted string starting at offset 23/));
    it('unterminated identifier', () => refuses('CREATE ROLE "{{name}}', /unterminated quoted identifier/));
    it('unterminated block comment', () => refuses('SELECT 1 /* /* */', /unterminated block comment/));
    it('unterminated dollar quote', () => refuses('DO $body$ SELECT 1', /unterminated dollar-quoted string \$body\$/));
  });

  it('leaves array literals alone', () => {
    assert.equal(renderOne(`SELECT '{{1,2},{3,4}}'::int[], {{name}}`), `SELECT '{{1,2},{3,4}}'::int[], "v-app-1"`);
  });
});

describe('formatExpiration', () => {
  it('writes UTC seconds with +00', () => {
    assert.equal(formatExpiration(new Date('2030-01-02T03:04:05.999+05:00')), '2030-01-01 22:04:05+00');
  });
});

describe('placeholdersIn and checkCreationStatements', () => {
  it('folds aliases and ignores comments', () => {
    assert.deepEqual(
      placeholdersIn(['CREATE ROLE "{{username}}" -- {{password}}', "DO $$ SELECT '{{expiration}}' $$"]),
      new Set(['name', 'expiration']),
    );
  });
  it('throws on an unknown placeholder', () => assert.throws(() => placeholdersIn(['{{nope}}']), StatementTemplateError));
  it('requires {{name}}', () => {
    assert.throws(() => checkCreationStatements([`CREATE ROLE x PASSWORD '{{password}}'`]), /must use \{\{name\}\}/);
    assert.throws(() => checkCreationStatements([]), /empty/);
  });
  it('warns without {{password}}', () => {
    assert.deepEqual(checkCreationStatements(['CREATE ROLE "{{name}}" LOGIN']), [
      'creationStatements do not use {{password}}: the issued password will not log in',
    ]);
    assert.deepEqual(checkCreationStatements([`CREATE ROLE "{{name}}" PASSWORD '{{password}}'`]), []);
  });
});

describe('quoting helpers', () => {
  it('quoteIdentifier doubles "', () => assert.equal(quoteIdentifier('a"b'), '"a""b"'));
  it("quoteLiteral doubles ' and uses E'' only for backslashes", () => {
    assert.equal(quoteLiteral("it's"), "'it''s'");
    assert.equal(quoteLiteral("a\\'b"), "E'a\\\\''b'");
  });
});

describe('buildAdminMembership', () => {
  it('grants a non-superuser admin membership in the role, only when needed', () => {
    assert.equal(
      buildAdminMembership(`v-app'1`),
      "DO $dbcred$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'v-app''1') " +
        'AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) ' +
        "AND NOT pg_catalog.pg_has_role(current_user, 'v-app''1', 'MEMBER') " +
        "THEN EXECUTE pg_catalog.format('GRANT %I TO %I', 'v-app''1', current_user); END IF; END $dbcred$;",
    );
  });
});

describe('buildRevocation', () => {
  it('builds the safe revocation: NOLOGIN, membership, terminate, check, cleanup, drop', () => {
    const steps = buildRevocation('v-app-1', 'admin');
    assert.deepEqual(Object.keys(steps), ['noLogin', 'adminMembership', 'terminateSessions', 'openSessions', 'ownedObjectsCleanup', 'dropRole']);
    assert.deepEqual(steps, {
      noLogin: `DO $dbcred$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'v-app-1') THEN ALTER ROLE "v-app-1" NOLOGIN; END IF; END $dbcred$;`,
      adminMembership: buildAdminMembership('v-app-1'),
      terminateSessions: `SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = 'v-app-1' AND pid <> pg_catalog.pg_backend_pid();`,
      openSessions: `SELECT pg_catalog.count(*)::int AS sessions FROM pg_catalog.pg_stat_activity WHERE usename = 'v-app-1' AND pid <> pg_catalog.pg_backend_pid();`,
      ownedObjectsCleanup: `DO $dbcred$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'v-app-1') THEN REASSIGN OWNED BY "v-app-1" TO "admin"; DROP OWNED BY "v-app-1"; END IF; END $dbcred$;`,
      dropRole: `DROP ROLE IF EXISTS "v-app-1";`,
    });
  });

  it('escapes names and picks a dollar tag the name cannot close', () => {
    assert.equal(
      buildOwnedObjectsCleanup(`o'"$dbcred$`, 'ad"min'),
      `DO $dbcred1$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'o''"$dbcred$') THEN REASSIGN OWNED BY "o'""$dbcred$" TO "ad""min"; DROP OWNED BY "o'""$dbcred$"; END IF; END $dbcred1$;`,
    );
  });

  it('queries the databases where the role has dependencies', () => {
    assert.equal(
      databasesWithDependenciesQuery("o'k"),
      "SELECT DISTINCT d.datname FROM pg_catalog.pg_shdepend s JOIN pg_catalog.pg_database d ON d.oid = s.dbid WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'o''k') ORDER BY d.datname;",
    );
  });
});

describe('role comment marker', () => {
  const marker = { installation: 'c1', namespace: 'team-a', name: "app'db", uid: '6f1c-42', username: 'v-app-1' };
  const owner = { installation: 'c1', uid: '6f1c-42' };

  it('writes the marker, naming installation and role, as an escaped literal on that role', () => {
    assert.equal(
      commentOnRole(marker),
      `COMMENT ON ROLE "v-app-1" IS 'dbcred:v2:{"installation":"c1","namespace":"team-a","name":"app''db","uid":"6f1c-42","username":"v-app-1"}';`,
    );
  });

  it('reads back what it wrote', () => {
    assert.deepEqual(parseRoleComment(`dbcred:v2:{"installation":"c1","namespace":"team-a","name":"app'db","uid":"6f1c-42","username":"v-app-1"}`), marker);
  });

  it('reads an old-format marker as legacy', () => {
    const legacy = parseRoleComment(`dbcred:{"namespace":"team-a","name":"app'db","uid":"6f1c-42"}`);
    assert.deepEqual(legacy, { legacy: true, namespace: 'team-a', name: "app'db", uid: '6f1c-42' });
    assert.ok(legacy && isLegacyMarker(legacy));
  });

  for (const comment of [
    null, undefined, '', 'hand-made role', 'dbcred:', 'dbcred:{bad json', 'dbcred:[]', 'dbcred:{"namespace":"a","name":"b"}',
    'dbcred:v2:{"namespace":"a","name":"b","uid":"c","username":"u"}', // v2 without installation
    'dbcred:v2:{"installation":"i","namespace":"a","name":"b","uid":"c"}', // v2 without username
    'dbcred:v2:{"installation":"","namespace":"a","name":"b","uid":"c","username":"u"}',
  ]) {
    it(`ignores ${JSON.stringify(comment)}`, () => assert.equal(parseRoleComment(comment), undefined));
  }

  describe('markerProvesOwner', () => {
    const v2 = (m: Partial<typeof marker>) => `dbcred:v2:${JSON.stringify({ ...marker, ...m })}`;
    it('holds for this installation, this credential uid and this very role', () => {
      assert.equal(markerProvesOwner(v2({}), 'v-app-1', owner), true);
    });
    for (const [what, comment, username] of [
      ['another installation', v2({ installation: 'c2' }), 'v-app-1'],
      ['another credential', v2({ uid: 'other' }), 'v-app-1'],
      ['a marker copied onto another role', v2({}), 'postgres'],
      ['no comment', null, 'v-app-1'],
      ['a comment that is not ours', 'owned by the DBA', 'v-app-1'],
      ['an old-format marker of another credential', 'dbcred:{"namespace":"team-a","name":"x","uid":"other"}', 'v-app-1'],
    ] as const) {
      it(`does not hold for ${what}`, () => assert.equal(markerProvesOwner(comment, username, owner), false));
    }
    it('an old-format marker proves ownership by the credential uid alone', () => {
      assert.equal(markerProvesOwner('dbcred:{"namespace":"team-a","name":"x","uid":"6f1c-42"}', 'v-app-1', owner), true);
    });
  });
});
