// A recorded pod list and watch stream served the way the API server serves them (the list,
// then the watch as chunked JSON lines, held open like a quiet server), so the collector's
// real Kubernetes provider (@kubernetes/client-node's ListWatch) reads them. Owner objects
// (ReplicaSets, Jobs) are answered by name; anything else is 404. A watch from before the
// list's resourceVersion gets 410 Gone, as from the API server. The real API server tests are
// test/integration/k8s-*.test.ts; this replays recordings for the provider's own logic.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

export interface RecordedApi {
  url: string;
  kubeConfig: KubeConfig;
  /** Every request's URL, in order. */
  requests: URL[];
  /** Watch lines written so far. */
  sent(): number;
  close(): void;
}

type K8sObject = { metadata: { name: string; namespace: string; uid?: string } } & Record<string, unknown>;

export interface RecordedPods {
  podList: { metadata: { resourceVersion: string } } & Record<string, unknown>;
  /** Watch events (JSON lines), sent on the first watch only, `gapMs` apart. */
  stream: string[];
  gapMs?: number;
  /** Objects answered at /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>. */
  owners?: ({ apiVersion: string; kind: string } & K8sObject)[];
  port?: number;
}

const plural = (kind: string) => `${kind.toLowerCase()}s`;

export async function serveRecordedPods(options: RecordedPods): Promise<RecordedApi> {
  const { podList, stream } = options;
  const owners = new Map(
    (options.owners ?? []).map((o) => [
      `/apis/${o.apiVersion}/namespaces/${o.metadata.namespace}/${plural(o.kind)}/${o.metadata.name}`,
      o,
    ]),
  );
  const held: ServerResponse[] = [];
  const requests: URL[] = [];
  let sent = 0;
  let watched = false;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(url);
    const owner = owners.get(url.pathname);
    if (owner) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(owner));
      return;
    }
    if (url.pathname !== '/api/v1/pods') {
      const status = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 };
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify(status));
      return;
    }
    if (url.searchParams.get('watch') !== 'true') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(podList));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    held.push(res);
    if (Number(url.searchParams.get('resourceVersion')) < Number(podList.metadata.resourceVersion)) {
      // What the API server says to a watch from before its history: 410 Gone, then relist.
      const gone = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 };
      res.end(
        `${JSON.stringify({ type: 'ERROR', object: { ...gone, message: 'too old resource version' } })}\n`,
      );
      return;
    }
    if (watched) return; // a re-watch after the recording: nothing new
    watched = true;
    const next = () => {
      if (sent >= stream.length || res.writableEnded) return;
      res.write(`${stream[sent++]}\n`);
      setTimeout(next, options.gapMs ?? 5);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'recorded', server: url, skipTLSVerify: true }],
    users: [{ name: 'collector' }],
    contexts: [{ name: 'recorded', cluster: 'recorded', user: 'collector' }],
    currentContext: 'recorded',
  });
  return {
    url,
    kubeConfig,
    requests,
    sent: () => sent,
    close() {
      for (const r of held) r.destroy();
      server.close();
      server.closeAllConnections();
    },
  };
}

/** Moves every RFC 3339 time in `text` by `deltaMs`: recordings are replayed relative to now. */
export function shiftTimes(text: string, deltaMs: number): string {
  return text.replace(/"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)"/g, (_, t: string) =>
    JSON.stringify(new Date(Date.parse(t) + deltaMs).toISOString()),
  );
}
