// The floor: what issuing one credential costs at least, done by a straight-line script with the operator's own
// building blocks and none of its machinery (no informers, work queue, re-reads or retries). Per credential:
//   create the DatabaseCredential (the "user" part, as kubectl apply in the operator run)
//   merge-patch the finalizer; status patch recording intent (the pending role);
//   password + SCRAM verifier; CREATE ROLE … + GRANT … + COMMENT ON ROLE in one transaction under the same
//   advisory lock (RoleAdmin.issueRole on a pool of the operator's default size);
//   create the Secret; status patch (active role, Ready/Expired conditions); the "Issued" Event (fire and forget,
//   as the operator does).
// Creates run `createConcurrency` at a time and feed `workers` issuers, as the operator's workers are fed by its
// queue, so latency (create → Secret) includes queueing exactly like the operator's.
import * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { setCondition } from '../../src/api/conditions.js';
import { toRFC3339 } from '../../src/api/duration.js';
import type { KubeClient } from '../../src/k8s/client.js';
import type { EventsV1Event } from '../../src/k8s/events.js';
import { microTime } from '../../src/k8s/leaderElection.js';
import { API_VERSION, CREDENTIAL_FINALIZER, GROUP, MANAGED_BY_LABEL, MANAGED_BY_VALUE, VERSION, type DatabaseCredential, type HeldRole } from '../../src/api/types.js';
import { poolConfig, type ConnectionSettings } from '../../src/postgres/pool.js';
import { RoleAdmin } from '../../src/postgres/roleAdmin.js';
import { scramSha256Verifier } from '../../src/postgres/scram.js';
import { DEFAULT_USERNAME_TEMPLATE, renderUsername, validateTemplate } from '../../src/postgres/usernameTemplate.js';
import { generatePassword } from '../../src/secrets/password.js';
import { SECRET_TYPE, buildSecretData } from '../../src/secrets/secretData.js';

const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const PLURAL = 'databasecredentials';

export interface FloorOptions {
  kc: k8s.KubeConfig;
  /**
   * The issuer's requests through the operator's own client (src/k8s/client.ts over rest.ts: one keep-alive
   * connection pool) instead of client-node 1.4, which builds a new https.Agent for every request
   * (KubeConfig.createAgent, kubernetes-client/javascript#2893), so each request is a new TCP + TLS handshake. The
   * DatabaseCredential creates (the "user" part) always use client-node, as in the operator run.
   */
  operatorClient?: KubeClient;
  namespace: string;
  names: string[];
  /** Where the DatabaseRole and DatabaseConfig live (only referenced, never read). */
  platformNamespace: string;
  roleName: string;
  configName: string;
  creationStatements: string[];
  settings: ConnectionSettings;
  createConcurrency: number;
  workers: number;
  ttlMs: number;
  onCreated: (name: string, atMs: number) => void;
  onSecretCreated: (name: string, atMs: number) => void;
  onReady: (name: string, atMs: number) => void;
}

export interface FloorResult {
  /** API requests by verb, the DatabaseCredential creates excluded (the operator run does not count them either). */
  apiRequests: Record<string, number>;
  createRequests: number;
  usernames: string[];
}

interface Created {
  name: string;
  obj: DatabaseCredential;
}

/** The installation id in the markers of the floor's roles: never an operator's. */
const FLOOR_INSTALLATION = 'bench-floor';

export class Floor {
  private readonly userCustom: k8s.CustomObjectsApi;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly core: k8s.CoreV1Api;
  readonly pool: pg.Pool;
  readonly admin: RoleAdmin;
  private readonly counts = new Map<string, number>();
  private readonly client: KubeClient | undefined;
  /** The uid of the credential each issued role belongs to: the revocation guard's proof. */
  private readonly owners = new Map<string, string>();

  constructor(private readonly o: FloorOptions) {
    this.client = o.operatorClient;
    this.userCustom = o.kc.makeApiClient(k8s.CustomObjectsApi);
    this.custom = o.kc.makeApiClient(k8s.CustomObjectsApi);
    this.core = o.kc.makeApiClient(k8s.CoreV1Api);
    this.pool = new pg.Pool(poolConfig(o.settings));
    this.pool.on('error', () => undefined);
    this.admin = new RoleAdmin(this.pool, (database) => poolConfig({ ...o.settings, database }));
  }

  /** Revokes a role this floor issued (through the operator's guarded revocation). */
  async revoke(username: string): Promise<void> {
    await this.admin.revokeRole(username, { installation: FLOOR_INSTALLATION, uid: this.owners.get(username) ?? '', acceptLegacy: false });
  }

  private count(verb: string): void {
    this.counts.set(verb, (this.counts.get(verb) ?? 0) + 1);
  }

  async run(): Promise<FloorResult> {
    const o = this.o;
    const queue: Created[] = [];
    let waiting: (() => void) | undefined;
    let createsDone = false;
    let createError: unknown;
    const wake = () => {
      const w = waiting;
      waiting = undefined;
      w?.();
    };
    let createRequests = 0;

    // Producer: the "kubectl apply" of N objects, createConcurrency in flight.
    const producer = (async () => {
      let next = 0;
      const one = async () => {
        for (;;) {
          const i = next++;
          const name = o.names[i];
          if (name === undefined || createError !== undefined) return;
          createRequests++;
          const obj = (await this.userCustom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: o.namespace,
            plural: PLURAL,
            body: {
              apiVersion: API_VERSION,
              kind: 'DatabaseCredential',
              metadata: { name },
              spec: { roleRef: { name: o.roleName, namespace: o.platformNamespace } },
            },
          })) as DatabaseCredential;
          o.onCreated(name, Date.now());
          queue.push({ name, obj });
          wake();
        }
      };
      try {
        await Promise.all(Array.from({ length: o.createConcurrency }, () => one()));
      } catch (err) {
        createError ??= err;
      } finally {
        createsDone = true;
        wake();
      }
    })();

    // Consumers: `workers` straight-line issuers sharing one queue.
    const usernames: string[] = [];
    const template = validateTemplate(DEFAULT_USERNAME_TEMPLATE).compiled;
    let workError: unknown;
    const worker = async () => {
      for (;;) {
        if (workError !== undefined) return;
        const item = queue.shift();
        if (!item) {
          if (createsDone) return;
          await new Promise<void>((r) => {
            const prev = waiting;
            waiting = () => {
              prev?.();
              r();
            };
          });
          continue;
        }
        try {
          usernames.push(await this.issue(item, template));
        } catch (err) {
          workError ??= err;
        }
      }
    };
    await Promise.all([producer, ...Array.from({ length: o.workers }, () => worker())]);
    if (createError !== undefined) throw createError;
    if (workError !== undefined) throw workError;
    return { apiRequests: Object.fromEntries(this.counts), createRequests, usernames };
  }

  private async patchStatus(obj: DatabaseCredential, status: object): Promise<DatabaseCredential> {
    this.count('patch');
    if (this.client) return this.client.patchStatus<DatabaseCredential>('credential', this.o.namespace, obj.metadata.name, status, obj.metadata.resourceVersion);
    return (await this.custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: this.o.namespace, plural: PLURAL, name: obj.metadata.name, body: { metadata: { resourceVersion: obj.metadata.resourceVersion }, status } },
      mergePatch,
    )) as DatabaseCredential;
  }

  private async issue({ name, obj }: Created, template: ReturnType<typeof validateTemplate>['compiled']): Promise<string> {
    const o = this.o;
    const ns = o.namespace;

    // Finalizer (optimistic lock on the version just created).
    this.count('patch');
    const finalizer = { finalizers: [CREDENTIAL_FINALIZER], resourceVersion: obj.metadata.resourceVersion };
    obj = this.client
      ? await this.client.patchMetadata<DatabaseCredential>('credential', ns, name, finalizer)
      : ((await this.custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: { metadata: finalizer } }, mergePatch)) as DatabaseCredential);

    // Intent.
    const now = new Date();
    const username = renderUsername(template, { role: o.roleName, credential: name, namespace: ns, config: o.configName }, { now });
    const password = generatePassword(32);
    const expiresAt = new Date(now.getTime() + o.ttlMs);
    const issuedAt = toRFC3339(now);
    const held: HeldRole = {
      username,
      state: 'pending',
      config: `${o.platformNamespace}/${o.configName}`,
      role: `${o.platformNamespace}/${o.roleName}`,
      issuedAt,
      expiresAt: toRFC3339(expiresAt),
    };
    obj = await this.patchStatus(obj, { roles: [held] });

    // The role.
    await this.admin.issueRole({
      username,
      passwordForSQL: await scramSha256Verifier(password),
      expiration: expiresAt,
      creationStatements: o.creationStatements,
      marker: { installation: FLOOR_INSTALLATION, namespace: ns, name, uid: obj.metadata.uid ?? '', username },
    });
    this.owners.set(username, obj.metadata.uid ?? '');

    // The Secret.
    const data = buildSecretData({
      host: o.settings.host,
      port: o.settings.port,
      database: o.settings.database,
      sslmode: 'disable',
      username,
      password,
      expiresAt,
    });
    this.count('create');
    const secret: k8s.V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: SECRET_TYPE,
      metadata: {
        name,
        namespace: ns,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
        ownerReferences: [{ apiVersion: API_VERSION, kind: 'DatabaseCredential', name, uid: obj.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }],
      },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')])),
    };
    if (this.client) await this.client.createSecret(ns, secret);
    else await this.core.createNamespacedSecret({ namespace: ns, body: secret });
    o.onSecretCreated(name, Date.now());

    // Final status.
    const gen = obj.metadata.generation;
    const message = `credential ${username} is valid until ${toRFC3339(expiresAt)}`;
    let conditions = setCondition([], { type: 'Ready', status: 'True', reason: 'Issued', message }, gen, now);
    conditions = setCondition(conditions, { type: 'Expired', status: 'False', reason: 'Valid', message: 'the credential has not expired' }, gen, now);
    obj = await this.patchStatus(obj, {
      observedGeneration: gen,
      conditions,
      roles: [{ ...held, state: 'active' }],
      username,
      issuedAt,
      expiresAt: toRFC3339(expiresAt),
      renewAt: toRFC3339(new Date(now.getTime() + o.ttlMs * 0.67)),
      secretName: name,
      binding: { name },
      issuedForHash: randomBytes(8).toString('hex'),
    });
    o.onReady(name, Date.now());

    // The Event, best effort and not awaited, like the operator's EventRecorder (a first occurrence: a create).
    this.count('create');
    const event: EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${name}.${randomBytes(8).toString('hex')}`, namespace: ns },
      eventTime: microTime(Date.now()),
      reportingController: 'dbcred.dev/bench-floor',
      reportingInstance: 'dbcred-bench-floor',
      action: 'Reconcile',
      reason: 'Issued',
      type: 'Normal',
      note: `issued ${username}, valid until ${toRFC3339(expiresAt)}`,
      regarding: { apiVersion: API_VERSION, kind: 'DatabaseCredential', name, namespace: ns, uid: obj.metadata.uid, resourceVersion: obj.metadata.resourceVersion },
    };
    const created = this.client
      ? this.client.createEvent(ns, event)
      : this.custom.createNamespacedCustomObject({ group: 'events.k8s.io', version: 'v1', namespace: ns, plural: 'events', body: event });
    void created.catch(() => undefined);
    return username;
  }

  async close(): Promise<void> {
    this.client?.rest.close();
    await this.pool.end().catch(() => undefined);
  }
}
