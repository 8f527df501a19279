// containerd's gRPC API as ktrail uses it: the vendored protos (loaded by
// @grpc/proto-loader), clients for the four services, unary calls in a namespace, and the
// decoding of event payloads and timestamps.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { REPO_ROOT } from '../../../../common/repo-root.js';

const PROTO_DIR = `${join(REPO_ROOT, 'collector/src/containers/providers/containerd-api')}/`;
const API = 'github.com/containerd/containerd/api';
const SERVICE_FILES = [
  `${API}/services/containers/v1/containers.proto`,
  `${API}/services/tasks/v1/tasks.proto`,
  `${API}/services/events/v1/events.proto`,
  `${API}/services/namespaces/v1/namespace.proto`,
];
const EVENT_FILES = [`${API}/events/container.proto`, `${API}/events/task.proto`];

export type Timestamp = { seconds?: string | number; nanos?: number } | null | undefined;
export type Any = { type_url?: string; value?: Buffer } | null | undefined;
export type PbContainer = {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime?: { name?: string };
  spec?: Any;
  created_at?: Timestamp;
  updated_at?: Timestamp;
};
export type PbProcess = { pid: number; status: string; exited_at?: Timestamp };
export type Envelope = { timestamp?: Timestamp; namespace: string; topic: string; event?: Any };

export type Unary<Req, Res> = (
  req: Req,
  metadata: grpc.Metadata,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => void;
export type Clients = {
  containers: grpc.Client & { List: Unary<{ filters?: string[] }, { containers: PbContainer[] }> };
  tasks: grpc.Client & { Get: Unary<{ container_id: string }, { process: PbProcess }> };
  events: grpc.Client & { Subscribe(req: { filters: string[] }): grpc.ClientReadableStream<Envelope> };
  namespaces: grpc.Client & { List: Unary<{ filter?: string }, { namespaces: { name: string }[] }> };
};

let cachedDefinition: grpc.GrpcObject | undefined;
let cachedEvents: protobuf.Root | undefined;

function serviceDefinitions(): grpc.GrpcObject {
  cachedDefinition ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(SERVICE_FILES, {
      includeDirs: [PROTO_DIR],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
  );
  return cachedDefinition;
}

/** The event payload types (TaskStart, TaskExit, ContainerCreate ...), to decode Any values. */
function eventTypes(): protobuf.Root {
  if (!cachedEvents) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith('google/') ? target : PROTO_DIR + target);
    root.loadSync(EVENT_FILES, { keepCase: true });
    cachedEvents = root;
  }
  return cachedEvents;
}

export function tsToNs(ts: Timestamp): bigint | undefined {
  if (!ts || ts.seconds === undefined) return undefined;
  const s = BigInt(ts.seconds);
  if (s <= 0n) return undefined; // Go zero time
  return s * 1_000_000_000n + BigInt(ts.nanos ?? 0);
}

/** Decodes an event's Any payload (type_url "containerd.events.TaskExit" ...). */
export function decodeEvent(any: Any): Record<string, unknown> | undefined {
  if (!any?.type_url || !any.value) return undefined;
  const name = any.type_url.replace(/^.*\//, '');
  let type: protobuf.Type;
  try {
    type = eventTypes().lookupType(name);
  } catch {
    return undefined;
  }
  return type.toObject(type.decode(any.value), { longs: String, defaults: true }) as Record<string, unknown>;
}

export function containerdClients(socketPath: string): Clients {
  const def = serviceDefinitions() as unknown as {
    containerd: { services: Record<string, { v1: Record<string, grpc.ServiceClientConstructor> }> };
  };
  const target = `unix://${socketPath}`;
  const creds = grpc.credentials.createInsecure();
  const s = def.containerd.services;
  return {
    containers: new s.containers!.v1.Containers!(target, creds) as unknown as Clients['containers'],
    tasks: new s.tasks!.v1.Tasks!(target, creds) as unknown as Clients['tasks'],
    events: new s.events!.v1.Events!(target, creds) as unknown as Clients['events'],
    namespaces: new s.namespaces!.v1.Namespaces!(target, creds) as unknown as Clients['namespaces'],
  };
}

/** One unary call, in containerd namespace `ns` when given. */
export function call<Req, Res>(fn: Unary<Req, Res>, self: grpc.Client, req: Req, ns?: string): Promise<Res> {
  const md = new grpc.Metadata();
  if (ns !== undefined) md.set('containerd-namespace', ns);
  return new Promise((resolve, reject) =>
    fn.call(self, req, md, (err, res) => (err ? reject(err) : resolve(res))),
  );
}
