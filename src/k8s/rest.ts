// The HTTP under every API call: JSON over one keep-alive connection pool, and watches as line-delimited JSON.
// Written here rather than taken from @kubernetes/client-node, which the operator used before: importing it cost
// 74 MiB of RSS (every generated model and API class is loaded, the source kept as strings) for the dozen calls
// the operator makes, and each of its requests went through a serializer, an rxjs stub and node-fetch. This is
// small and central: what is needed of the REST protocol (verbs, status errors, ?watch streams) and nothing else.
import http from 'node:http';
import https from 'node:https';
import type { ClusterAccess, TlsIdentity } from './kubeconfig.js';

/** A request the API server answered with an error status; body is its Status object (or text) when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly body: unknown,
  ) {
    const status = body as { reason?: unknown } | null;
    super(`API server answered ${code}${typeof status?.reason === 'string' ? ` (${status.reason})` : ''}`);
    this.name = 'ApiError';
  }

  /** Status.message: what the API server says went wrong (e.g. a conflict on "the object has been modified"). */
  get statusMessage(): string | undefined {
    const m = (this.body as { message?: unknown } | null)?.message;
    return typeof m === 'string' ? m : undefined;
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** Default application/json; patches say which patch (merge, strategic merge). */
  contentType?: string;
  accept?: string;
  signal?: AbortSignal;
  /** Default REQUEST_TIMEOUT_MS: a hung API server fails the request instead of holding a worker forever. */
  timeoutMs?: number;
}

export const MERGE_PATCH = 'application/merge-patch+json';
export const STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json';

const REQUEST_TIMEOUT_MS = 30_000;

export function queryString(query: Query | undefined): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== '') params.set(k, String(v));
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** A watch event as the API server streams it: one JSON object per line. */
export type WatchHandler = (type: string, object: unknown) => void;

export class RestClient {
  private readonly base: URL;
  private readonly transport: typeof http | typeof https;
  /** The server URL's path, if any (a proxy in front of the API server), put before every request path. */
  private readonly prefix: string;
  private agent: http.Agent | undefined;
  private agentIdentity: TlsIdentity | undefined;

  constructor(readonly access: ClusterAccess) {
    this.base = new URL(access.server);
    this.transport = this.base.protocol === 'http:' ? http : https;
    this.prefix = this.base.pathname.replace(/\/$/, '');
  }

  /** One keep-alive pool per TLS identity: a new pool only when an exec plugin hands out a new client certificate. */
  private agentFor(tls: TlsIdentity): http.Agent {
    const was = this.agentIdentity;
    // Compared field by field (the same strings each time, so each comparison is one pointer check on the hot path).
    const same = was && was.ca === tls.ca && was.cert === tls.cert && was.key === tls.key && was.rejectUnauthorized === tls.rejectUnauthorized && was.servername === tls.servername;
    if (!this.agent || !same) {
      this.agent?.destroy();
      const options = { keepAlive: true, maxFreeSockets: 16 };
      this.agent =
        this.transport === http
          ? new http.Agent(options)
          : new https.Agent({ ...options, ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername });
      this.agentIdentity = tls;
    }
    return this.agent;
  }

  /** Sends one request; resolves with the response stream once headers arrived (any status). */
  private async send(method: string, path: string, opts: RequestOptions, stream: boolean): Promise<{ res: http.IncomingMessage; req: http.ClientRequest }> {
    const [tls, authorization] = await Promise.all([this.access.tls(), this.access.authorization()]);
    const agent = this.agentFor(tls);
    const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: http.OutgoingHttpHeaders = { Accept: opts.accept ?? 'application/json', 'User-Agent': 'dbcred-operator' };
    if (authorization) headers.Authorization = authorization;
    if (body) {
      headers['Content-Type'] = opts.contentType ?? 'application/json';
      headers['Content-Length'] = body.length;
    }
    return new Promise((resolve, reject) => {
      const req = this.transport.request(
        { method, protocol: this.base.protocol, hostname: this.base.hostname.replace(/^\[|\]$/g, ''), port: this.base.port, path: `${this.prefix}${path}${queryString(opts.query)}`, headers, agent, signal: opts.signal },
        (res) => resolve({ res, req }),
      );
      req.on('error', reject);
      if (!stream) {
        req.setTimeout(opts.timeoutMs ?? REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: no answer from the API server within ${opts.timeoutMs ?? REQUEST_TIMEOUT_MS} ms`)));
      }
      req.end(body);
    });
  }

  /** A JSON request; resolves with the parsed body (undefined when empty), rejects with ApiError on an error status. */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const { res } = await this.send(method, path, opts, false);
      const text = await readAll(res);
      const code = res.statusCode ?? 0;
      if (code === 401 && attempt === 0) {
        // An exec plugin's token may have been revoked early: ask it again, once.
        this.access.invalidate();
        continue;
      }
      const parsed = parseJson(text);
      if (code < 200 || code >= 300) throw new ApiError(code, parsed ?? text.slice(0, 1000));
      return parsed as T;
    }
  }

  /**
   * Watches path (query gets watch=true): each line's {type, object} goes to onEvent; done is called once, with
   * null when the stream ended or was aborted, else with the error (an ApiError for an error status, e.g. 410).
   * Resolves with the controller that aborts the watch, once the API server answered.
   */
  async watch(path: string, query: Query, onEvent: WatchHandler, done: (err: unknown) => void, accept?: string): Promise<AbortController> {
    const controller = new AbortController();
    let finished = false;
    const finish = (err: unknown) => {
      if (finished) return;
      finished = true;
      done(controller.signal.aborted ? null : err);
    };
    const { res } = await this.send('GET', path, { query: { ...query, watch: true }, accept, signal: controller.signal }, true);
    const code = res.statusCode ?? 0;
    if (code !== 200) {
      const text = await readAll(res).catch(() => '');
      if (code === 401) this.access.invalidate();
      finish(new ApiError(code, parseJson(text) ?? text.slice(0, 1000)));
      return controller;
    }
    let partial = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        let event: { type?: string; object?: unknown };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          controller.abort();
          finished = true;
          done(new Error('watch stream sent a line that is not JSON'));
          return;
        }
        if (typeof event.type === 'string') onEvent(event.type, event.object);
      }
    });
    res.on('end', () => finish(null));
    res.on('error', (err) => finish(err));
    res.on('close', () => finish(null));
    return controller;
  }

  /** Closes idle connections (shutdown). */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
