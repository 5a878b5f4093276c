// Wiring only: settings, clients, caches, controllers, health endpoint, orphan sweep, shutdown.
import http from 'node:http';
import { ABANDON_ROLES_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, type AnyResource, type DatabaseConfig, type DatabaseCredential, type DatabaseRole } from './api/types.js';
import { ConfigError, loadConfig } from './config.js';
import { realClock } from './controller/clock.js';
import { Controller } from './controller/controller.js';
import { KubeClient, apiErrorMessage, type KindKey } from './k8s/client.js';
import { EventRecorder } from './k8s/events.js';
import { NamespacedInformers, ResilientInformer, metadataWatch, objectKey, withoutBookkeeping } from './k8s/informer.js';
import { LeaderElector } from './k8s/leaderElection.js';
import { RootSecretWatches } from './k8s/rootSecrets.js';
import { resolveInstallation } from './k8s/installation.js';
import { createLogger, type Logger } from './logger.js';
import { leader, observeCredentials, observeQueue, observeReconcile, registry } from './metrics.js';
import { PoolRegistry } from './postgres/pool.js';
import { keyOf, type OperatorContext } from './reconcilers/context.js';
import { DatabaseConfigReconciler } from './reconcilers/databaseconfig.js';
import { DatabaseCredentialReconciler } from './reconcilers/databasecredential.js';
import { DatabaseRoleReconciler } from './reconcilers/databaserole.js';
import { OrphanSweeper } from './reconcilers/orphans.js';
import { SecretContents, ownedSecretMeta, type SecretMeta } from './secrets/ownedSecret.js';

type Resource = DatabaseConfig | DatabaseRole | DatabaseCredential;

function readyStatus(obj: Resource | undefined): string | undefined {
  const c = obj?.status?.conditions?.find((x) => x.type === 'Ready');
  return c ? `${c.status}/${c.observedGeneration ?? ''}` : undefined;
}

/** A MODIFIED event that only our own status write caused: nothing for the object's own reconciler to do. */
function onlyStatusChanged(old: Resource | undefined, obj: Resource): boolean {
  if (!old) return false;
  const meta = (o: Resource) =>
    JSON.stringify([o.metadata.generation, o.metadata.annotations, o.metadata.labels, o.metadata.finalizers, o.metadata.deletionTimestamp]);
  return meta(old) === meta(obj);
}

/**
 * Dependents care when the object's spec, readiness or existence changed, not about every status write — and, for a
 * DatabaseConfig, when the admin sets dbcred.dev/abandon-roles (credentials stuck in deletion act on it at once).
 */
function changedForDependents(old: Resource | undefined, obj: Resource): boolean {
  const abandon = (o: Resource) => o.metadata.annotations?.[ABANDON_ROLES_ANNOTATION];
  return !old || old.metadata.generation !== obj.metadata.generation || readyStatus(old) !== readyStatus(obj) || abandon(old) !== abandon(obj);
}

/**
 * The installation id, read before anything else happens: every role's marker names it. An API server that does
 * not answer (or forbids the read) is tried again for a while, then the process exits 1 (its pod restarts).
 */
async function installationOrExit(client: KubeClient, clusterId: string | undefined, logger: Logger): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      const id = await resolveInstallation(client, clusterId);
      logger.info('installation identity', { installation: id, source: clusterId !== undefined ? 'CLUSTER_ID' : 'kube-system namespace uid' });
      return id;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (attempt >= 10) {
        logger.error('cannot establish the installation identity; exiting', { error: message });
        process.exit(1);
      }
      logger.warn('cannot establish the installation identity yet; retrying', { attempt, error: message });
      await new Promise((r) => setTimeout(r, Math.min(1000 * attempt, 5000)));
    }
  }
}

async function main(): Promise<void> {
  let settings;
  try {
    settings = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`invalid setting: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(settings.logLevel);
  const client = KubeClient.fromDefault();
  const installation = await installationOrExit(client, settings.clusterId, logger);
  // One informer per watched namespace (namespaced list/watch only), or one for all namespaces.
  const namespaces = settings.watchNamespaces;
  const crInformer = <T extends AnyResource>(kind: KindKey) =>
    new NamespacedInformers<T>(namespaces, (ns) => new ResilientInformer<T>({
      name: ns ? `${kind} ${ns}` : kind,
      client,
      path: client.resourcePath(kind, ns),
      list: () => client.listResources<T>(kind, ns),
      transform: withoutBookkeeping,
      resyncPeriodMs: settings.resyncPeriodMs,
      logger,
    }));
  const managedBy = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;
  // Whether a labelled Secret that is not ours has been seen: then the data of our Secrets is not read ahead in
  // one list, which would download theirs too (anyone can set the label, e.g. a flood of large Secrets).
  let foreignLabelled = false;
  const ownedOrNoted = (s: Parameters<typeof ownedSecretMeta>[0]) => {
    const kept = ownedSecretMeta(s);
    if (!kept) foreignLabelled = true;
    return kept;
  };
  const informers = {
    configs: crInformer<DatabaseConfig>('config'),
    roles: crInformer<DatabaseRole>('role'),
    credentials: crInformer<DatabaseCredential>('credential'),
    // Anyone who can create a Secret can label it: list and watch metadata only (never data), and keep only the
    // Secrets a DatabaseCredential or DatabaseRole controls. Their data is read when needed (secretContents).
    ownedSecrets: new NamespacedInformers<SecretMeta>(namespaces, (ns) => new ResilientInformer<SecretMeta>({
      name: ns ? `secrets ${ns}` : 'secrets',
      client,
      path: ns ? `/api/v1/namespaces/${ns}/secrets` : '/api/v1/secrets',
      labelSelector: managedBy,
      list: () => client.listSecretMetadata(ns, managedBy, ownedOrNoted),
      watch: metadataWatch(client),
      transform: ownedOrNoted,
      resyncPeriodMs: settings.resyncPeriodMs,
      logger,
    })),
  };
  const secretContents = new SecretContents(client, informers.ownedSecrets);
  const pruneTimer = setInterval(() => secretContents.prune(), settings.resyncPeriodMs);
  pruneTimer.unref();

  // Controllers are created before the context so that watches can enqueue into them.
  let configCtl: Controller | undefined;
  const rootSecrets = new RootSecretWatches(client, logger, settings.resyncPeriodMs, (configKeys) => {
    for (const k of configKeys) configCtl?.enqueue(k);
  });
  const ctx: OperatorContext = {
    client,
    logger,
    clock: realClock,
    events: new EventRecorder(client, logger, { instance: settings.identity }),
    pools: new PoolRegistry(logger),
    informers,
    secretContents,
    rootSecrets,
    installation,
  };
  const configs = new DatabaseConfigReconciler(ctx);
  const roles = new DatabaseRoleReconciler(ctx);
  const credentials = new DatabaseCredentialReconciler(ctx);
  configCtl = new Controller({ name: 'databaseconfig', logger, describeError: apiErrorMessage, observe: observeReconcile, workers: 2, reconcile: (k) => configs.reconcile(k) });
  const roleCtl = new Controller({ name: 'databaserole', logger, describeError: apiErrorMessage, observe: observeReconcile, workers: 2, reconcile: (k) => roles.reconcile(k) });
  const credCtl = new Controller({ name: 'databasecredential', logger, describeError: apiErrorMessage, observe: observeReconcile, workers: settings.workers, reconcile: (k) => credentials.reconcile(k) });

  for (const c of [configCtl, roleCtl, credCtl]) observeQueue(c.name, { depth: () => c.queue.len(), inFlight: () => c.queue.inFlight() });

  // Event → key mapping. Handlers only enqueue.
  const credentialsOfRole = (roleKey: string) =>
    informers.credentials.list().filter((c) => keyOf(c.spec.roleRef.namespace ?? c.metadata.namespace, c.spec.roleRef.name) === roleKey);
  const rolesOfConfig = (configKey: string) =>
    informers.roles.list().filter((r) => keyOf(r.metadata.namespace, r.spec.configRef.name) === configKey);
  informers.configs.on((obj, event, old) => {
    const key = objectKey(obj);
    if (event !== 'MODIFIED' || !onlyStatusChanged(old, obj)) configCtl?.enqueue(key);
    if (event === 'RESYNC' || !(changedForDependents(old, obj))) return;
    for (const role of rolesOfConfig(key)) {
      roleCtl.enqueue(objectKey(role));
      for (const c of credentialsOfRole(objectKey(role))) credCtl.enqueue(objectKey(c));
    }
  });
  informers.roles.on((obj, event, old) => {
    const key = objectKey(obj);
    if (event !== 'MODIFIED' || !onlyStatusChanged(old, obj)) roleCtl.enqueue(key);
    // Static roles on one user: the oldest manages it, so a new, changed or deleted one may change who that is.
    const staticUsers = new Set<string | undefined>([obj.spec.static?.username, old?.spec.static?.username]);
    staticUsers.delete(undefined);
    if (staticUsers.size && event !== 'RESYNC' && (event !== 'MODIFIED' || !onlyStatusChanged(old, obj))) {
      for (const other of informers.roles.list()) {
        if (objectKey(other) !== key && staticUsers.has(other.spec.static?.username)) roleCtl.enqueue(objectKey(other));
      }
    }
    if (event === 'RESYNC' || !changedForDependents(old, obj)) return;
    for (const c of credentialsOfRole(key)) credCtl.enqueue(objectKey(c));
  });
  informers.credentials.on((obj, event, old) => {
    // Our own status writes need no second look; spec, metadata and deletion do.
    if (event !== 'MODIFIED' || !onlyStatusChanged(old, obj)) credCtl.enqueue(objectKey(obj));
    // The role's activeCredentials count: collapse bursts into one role reconcile a second later.
    if (event !== 'RESYNC' && readyStatus(old) !== readyStatus(obj)) {
      roleCtl.enqueueAfter(keyOf(obj.spec.roleRef.namespace ?? obj.metadata.namespace, obj.spec.roleRef.name), 1000);
    }
  });
  informers.ownedSecrets.on((secret, event) => {
    if (event === 'RESYNC') return;
    const owner = secret.metadata?.ownerReferences?.find((o) => o.controller);
    const ns = secret.metadata?.namespace;
    if (!owner || !ns) return;
    if (owner.kind === 'DatabaseCredential') credCtl.enqueue(keyOf(ns, owner.name));
    if (owner.kind === 'DatabaseRole') {
      // A static role's password Secret: the role and every credential that delivers its password.
      roleCtl.enqueue(keyOf(ns, owner.name));
      for (const c of credentialsOfRole(keyOf(ns, owner.name))) credCtl.enqueue(objectKey(c));
    }
  });

  const sweeper = new OrphanSweeper(ctx, settings.orphanSweepPeriodMs);

  // Health: alive while the event loop turns; ready once the caches are filled.
  let ready = false;
  const server = settings.healthPort
    ? http
        .createServer((req, res) => {
          if (req.url === '/healthz') return void res.writeHead(200).end('ok');
          if (req.url === '/readyz') return void res.writeHead(ready ? 200 : 503).end(ready ? 'ok' : 'not ready');
          if (req.url === '/metrics') {
            registry.metrics().then(
              (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
              () => res.writeHead(500).end(),
            );
            return;
          }
          res.writeHead(404).end();
        })
        // reusePort: with hostNetwork, two replicas on one node share the port (the kernel spreads connections, and
        // both answer alike: ready once their caches are filled, leader or standby).
        .listen({ port: settings.healthPort, reusePort: settings.healthReusePort })
    : undefined;

  const elector = settings.leaderElection
    ? new LeaderElector({
        client,
        logger,
        namespace: settings.leaseNamespace,
        name: settings.leaseName,
        identity: settings.identity,
        leaseDurationMs: settings.leaseDurationMs,
        renewDeadlineMs: settings.renewDeadlineMs,
        retryPeriodMs: settings.retryPeriodMs,
      })
    : undefined;

  let stopping = false;
  const shutdown = async (signal: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    sweeper.stop();
    clearInterval(pruneTimer);
    for (const inf of Object.values(informers)) inf.stop();
    rootSecrets.stopAll();
    await Promise.allSettled([configCtl?.stop(), roleCtl.stop(), credCtl.stop()]);
    await ctx.pools.closeAll();
    await elector?.release();
    server?.close();
    logger.info('stopped');
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('unhandledRejection', (reason) => logger.error('unhandled rejection', { error: apiErrorMessage(reason) }));

  logger.info('starting', { watchNamespaces: namespaces.length ? namespaces : '(all)', workers: settings.workers, leaderElection: settings.leaderElection });
  // Caches fill (and enqueue every object) whether or not we lead: a standby is warm when it takes over.
  await Promise.all(Object.values(informers).map((inf) => inf.start()));
  // Our Secrets' data in one paginated read, not one GET per credential once the workers start.
  if (foreignLabelled) logger.info('labelled Secrets that are not ours exist; owned Secrets are read when needed, not ahead');
  else {
    await secretContents.prefill(namespaces, managedBy).then(
      (n) => logger.info('owned Secrets read ahead', { secrets: n }),
      (err: unknown) => logger.warn('could not read owned Secrets ahead; each is read when needed', { error: apiErrorMessage(err) }),
    );
  }
  ready = true;
  if (elector) {
    logger.info('caches synced; waiting for leadership', { lease: `${settings.leaseNamespace}/${settings.leaseName}` });
    // Leadership lost means another replica may act now: no graceful drain. Abort every in-flight reconcile and
    // exit at once (as controller-runtime does); level-based reconciles resume on the new leader.
    await elector.run(() => {
      for (const ctl of [configCtl, roleCtl, credCtl]) ctl?.abort('leadership lost');
      sweeper.stop();
      process.exit(1); // the elector has logged why
    });
  }
  if (stopping) return;
  leader.set(1);
  observeCredentials(() => informers.credentials.list());
  configCtl.start();
  roleCtl.start();
  credCtl.start();
  sweeper.start();
  logger.info('caches synced; operator ready', {
    configs: informers.configs.list().length,
    roles: informers.roles.list().length,
    credentials: informers.credentials.list().length,
  });
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 'error', message: 'operator failed to start', error: apiErrorMessage(err) }));
  process.exit(1);
});
