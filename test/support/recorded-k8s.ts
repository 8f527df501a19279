// A recorded pod list and watch stream served the way the API server serves them (the list,
// then the watch as chunked JSON lines, held open like a quiet server), so the collector's
// real Kubernetes provider (@kubernetes/client-node's ListWatch) reads them.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

export interface RecordedApi {
  kubeConfig: KubeConfig;
  /** Watch lines written so far. */
  sent(): number;
  close(): void;
}

export async function serveRecordedPods(podList: unknown, stream: string[], gapMs = 5): Promise<RecordedApi> {
  const held: ServerResponse[] = [];
  let sent = 0;
  let watched = false;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/api/v1/pods') {
      res.writeHead(404).end();
      return;
    }
    if (url.searchParams.get('watch') !== 'true') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(podList));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    held.push(res);
    if (watched) return; // a re-watch after the recording: nothing new
    watched = true;
    const next = () => {
      if (sent >= stream.length || res.writableEnded) return;
      res.write(`${stream[sent++]}\n`);
      setTimeout(next, gapMs);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [
      {
        name: 'recorded',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'collector' }],
    contexts: [{ name: 'recorded', cluster: 'recorded', user: 'collector' }],
    currentContext: 'recorded',
  });
  return {
    kubeConfig,
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
