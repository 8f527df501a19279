// The Docker Engine API over its unix socket, on node:http: the few calls the Docker provider
// and the tests make. (dockerode's docker-modem loads ssh2 and cpu-features with it, unused
// here.) Paths are versioned: the daemon's API version, negotiated once through /_ping and
// capped at the newest this client was written against, as the docker CLI does.
import { type IncomingMessage, request } from 'node:http';
import { KtrailError } from '../../../../common/errors.js';

/** Newest API version whose fields this client reads; older daemons are spoken to in theirs. */
export const MAX_API_VERSION = '1.47';
/** What a daemon that names no version (before API 1.25) is assumed to speak. */
const FALLBACK_API_VERSION = '1.24';

/** A failed call: the HTTP status (undefined when no answer came) and Docker's own message. */
export class DockerApiError extends KtrailError {
  readonly statusCode: number | undefined;

  constructor(
    message: string,
    options: { statusCode?: number; cause?: unknown; context?: Record<string, unknown> } = {},
  ) {
    const status = options.statusCode;
    // No answer or a daemon-side failure is worth retrying; a 4xx says the request was wrong.
    super(message, { ...options, retriable: status === undefined || status >= 500 });
    this.statusCode = status;
  }
}

export type DockerInfo = { CgroupDriver?: string; CgroupVersion?: string; ServerVersion?: string };

export type ContainerSummary = { Id: string; Names?: string[]; Image?: string; State?: string };

export type ContainerInspect = {
  Id: string;
  Name: string;
  /** The image id (sha256:...). */
  Image: string;
  State: {
    Status: string;
    Running: boolean;
    Pid: number;
    ExitCode: number;
    StartedAt: string;
    FinishedAt: string;
  };
  Config: { Image: string; Labels?: Record<string, string> | null };
  HostConfig: { CgroupParent?: string };
};

export type ContainerSpec = {
  Image: string;
  /** The container's name (a query parameter of the create call). */
  name?: string;
  Cmd?: string[];
  Labels?: Record<string, string>;
  HostConfig?: { NetworkMode?: string; AutoRemove?: boolean };
};

export type ContainerHandle = {
  readonly id: string;
  start(): Promise<void>;
  inspect(): Promise<ContainerInspect>;
  kill(signal?: string): Promise<void>;
  /** Until the container stops; no timeout. */
  wait(): Promise<{ StatusCode: number }>;
  remove(options?: { force?: boolean }): Promise<void>;
};

export type DockerClient = {
  readonly socketPath: string;
  ping(): Promise<void>;
  info(): Promise<DockerInfo>;
  listContainers(options?: { all?: boolean }): Promise<ContainerSummary[]>;
  inspectContainer(id: string): Promise<ContainerInspect>;
  createContainer(spec: ContainerSpec): Promise<ContainerHandle>;
  container(id: string): ContainerHandle;
  /**
   * The events stream: one JSON object per line, until the daemon goes away or the caller
   * destroys the stream. `since` in seconds since the epoch; filters as Docker names them.
   */
  events(options?: { since?: number; filters?: Record<string, string[]> }): Promise<IncomingMessage>;
};

type Query = Record<string, string | number | boolean | undefined>;

/** -1, 0, 1 as API version a is older than, equal to, newer than b ("1.41" < "1.47"). */
export function compareApiVersions(a: string, b: string): number {
  const [am = 0, an = 0] = a.split('.').map(Number);
  const [bm = 0, bn = 0] = b.split('.').map(Number);
  return Math.sign(am - bm || an - bn);
}

export function createDockerClient(options: { socketPath: string; timeoutMs?: number }): DockerClient {
  const { socketPath } = options;
  const timeoutMs = options.timeoutMs ?? 30_000;
  // Negotiated on first use; a failed negotiation is tried again by the next call (the daemon
  // may be restarting, and may come back as another version).
  let version: Promise<string> | undefined;

  type Call = { query?: Query; body?: unknown; stream?: boolean; timeout?: boolean; versioned?: boolean };

  /** The response of a stream call (status < 400), or the whole body of any other. */
  async function send(method: string, path: string, call: Call & { stream: true }): Promise<IncomingMessage>;
  async function send(method: string, path: string, call?: Call): Promise<Buffer>;
  async function send(method: string, path: string, call: Call = {}): Promise<IncomingMessage | Buffer> {
    const prefix = call.versioned === false ? '' : `/v${await apiVersion()}`;
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(call.query ?? {})) if (v !== undefined) params.set(k, String(v));
    const search = params.size > 0 ? `?${params}` : '';
    const what = `docker ${method} ${path}`;
    const payload = call.body === undefined ? undefined : Buffer.from(JSON.stringify(call.body));
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath,
          method,
          path: `${prefix}${path}${search}`,
          agent: false,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (call.stream && status < 400) {
            req.setTimeout(0); // a stream may be quiet for hours
            resolve(res);
            return;
          }
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(new DockerApiError(`${what}: ${err.message}`, { cause: err })));
          res.on('end', () => {
            const body = Buffer.concat(chunks);
            if (status < 400) resolve(body);
            else
              reject(
                new DockerApiError(`${what}: HTTP ${status}: ${dockerMessage(body)}`, { statusCode: status }),
              );
          });
        },
      );
      req.on('error', (err) =>
        reject(new DockerApiError(`${what}: ${err.message}`, { cause: err, context: { socketPath } })),
      );
      if (call.timeout !== false)
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.end(payload);
    });
  }

  function apiVersion(): Promise<string> {
    version ??= negotiate().catch((err: unknown) => {
      version = undefined;
      throw err;
    });
    return version;
  }

  async function negotiate(): Promise<string> {
    const res = await send('GET', '/_ping', { stream: true, versioned: false });
    res.resume();
    const server = res.headers['api-version'];
    const offered = typeof server === 'string' && /^\d+\.\d+$/.test(server) ? server : FALLBACK_API_VERSION;
    return compareApiVersions(offered, MAX_API_VERSION) < 0 ? offered : MAX_API_VERSION;
  }

  const json = async <T>(method: string, path: string, call?: Call): Promise<T> =>
    JSON.parse((await send(method, path, call)).toString('utf8')) as T;
  const id = (containerId: string) => `/containers/${encodeURIComponent(containerId)}`;

  function container(containerId: string): ContainerHandle {
    return {
      id: containerId,
      start: async () => void (await send('POST', `${id(containerId)}/start`)),
      inspect: () => json<ContainerInspect>('GET', `${id(containerId)}/json`),
      kill: async (signal) => void (await send('POST', `${id(containerId)}/kill`, { query: { signal } })),
      wait: () => json<{ StatusCode: number }>('POST', `${id(containerId)}/wait`, { timeout: false }),
      remove: async (opts = {}) =>
        void (await send('DELETE', id(containerId), {
          query: { force: opts.force === true ? true : undefined },
        })),
    };
  }

  return {
    socketPath,
    async ping() {
      (await send('GET', '/_ping', { stream: true, versioned: false })).resume();
    },
    info: () => json<DockerInfo>('GET', '/info'),
    listContainers: (opts = {}) =>
      json<ContainerSummary[]>('GET', '/containers/json', {
        query: { all: opts.all === true ? true : undefined },
      }),
    inspectContainer: (containerId) => container(containerId).inspect(),
    async createContainer({ name, ...spec }) {
      const created = await json<{ Id: string }>('POST', '/containers/create', {
        query: { name },
        body: spec,
      });
      return container(created.Id);
    },
    container,
    events: (opts = {}) =>
      send('GET', '/events', {
        stream: true,
        query: { since: opts.since, filters: opts.filters && JSON.stringify(opts.filters) },
      }),
  };
}

/** Docker answers errors as {"message": "..."}; anything else is shown as it came. */
function dockerMessage(body: Buffer): string {
  const text = body.toString('utf8').trim();
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message === 'string') return message;
  } catch {
    // not JSON: the text itself
  }
  return text.slice(0, 500) || '(no message)';
}
