// A long-lived Node process that drives real Verdant clients for the interop tests.
//
// Protocol: one JSON command per stdin line, `{"id": 1, "cmd": "open", "args": {...}}`, and one
// JSON reply per stdout line, `{"id": 1, "ok": true, "result": ...}` or
// `{"id": 1, "ok": false, "error": "...", "stack": "..."}`. Commands run concurrently, so replies
// can come back out of order; the id ties them together. Nothing else is written to stdout (the
// store's console output is redirected to stderr by globals.mjs).
//
// The store import is resolved at bundle time: build.mjs aliases `verdant-store` to
// `@verdant-web/store` (3.6.x), `store321` (3.2.1) or store 5.5.0 (tests/store5).
import './globals.mjs';
import { IDBFactory } from 'fake-indexeddb';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { WebSocket as NodeWebSocket } from 'ws';
import * as verdant from 'verdant-store';

const { createMigration, schema } = verdant;
// Store 3.x opens clients through ClientDescriptor; 5.x constructs a Client directly. Looked up
// by name, so that neither bundle refers to an export its store lacks.
const ClientDescriptor = Reflect.get(verdant, 'ClientDescriptor');
const Client = Reflect.get(verdant, 'Client');
const IS_STORE5 = typeof ClientDescriptor !== 'function';

const STORE_VERSION = globalThis.__VERDANT_STORE_VERSION__ ?? 'unknown';
const START = Date.now();
const VERBOSE = process.env.VERDANT_DRIVER_LOG === '1';
// With VERDANT_DRIVER_LOG_DIR set, each client's own log goes to <dir>/<client name>.log.
const LOG_DIR = process.env.VERDANT_DRIVER_LOG_DIR;

// The store's log function for client `name`, or undefined when nothing is logged.
function clientLog(name) {
  if (LOG_DIR) {
    const file = join(LOG_DIR, `${name}.log`);
    return (...args) => appendFileSync(file, `${Date.now() - START} ${args.map(logText).join(' ')}\n`);
  }
  return VERBOSE ? (...args) => console.error(`[${name}]`, ...args) : undefined;
}

function logText(value) {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack ?? String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

// ---------------------------------------------------------------------------------------------
// Schema used by every client: one `items` collection exercising scalars, lists and nested
// objects.
const itemSchema = schema.collection({
  name: 'item',
  primaryKey: 'id',
  fields: {
    id: schema.fields.string({ default: () => crypto.randomUUID() }),
    title: schema.fields.string({ default: '' }),
    done: schema.fields.boolean({ default: false }),
    tags: schema.fields.array({ items: schema.fields.string() }),
    meta: schema.fields.object({
      default: () => ({ count: 0, note: '', nested: { flag: false } }),
      properties: {
        count: schema.fields.number({ default: 0 }),
        note: schema.fields.string({ default: '' }),
        nested: schema.fields.object({
          default: () => ({ flag: false }),
          properties: {
            flag: schema.fields.boolean({ default: false }),
          },
        }),
      },
    }),
  },
});
// Files (tests/interop/test_files.py): a separate collection, so `items` documents stay as they are.
const attachmentSchema = schema.collection({
  name: 'attachment',
  primaryKey: 'id',
  fields: {
    id: schema.fields.string({ default: () => crypto.randomUUID() }),
    file: schema.fields.file({ nullable: true }),
  },
});
const appSchema = schema({
  version: 1,
  collections: { items: itemSchema, attachments: attachmentSchema },
});
const migrations = [createMigration(appSchema)];

// ---------------------------------------------------------------------------------------------
// Wire tracing: every sync request/response (HTTP) and websocket frame is recorded, tagged with
// the replica ids found in the outgoing messages, so a failing test can show what each client
// sent and received.
const TRACE_LIMIT = 4000;
const trace = [];
let traceSeq = 0;
// replicaId -> number of sync-resp messages received
const syncResponses = new Map();
// replicaId -> number of HTTP sync requests in flight
const inflight = new Map();

function addInflight(replicaIds, delta) {
  for (const id of replicaIds) inflight.set(id, (inflight.get(id) ?? 0) + delta);
}

function record(entry) {
  entry.seq = ++traceSeq;
  entry.t = Date.now() - START;
  trace.push(entry);
  if (trace.length > TRACE_LIMIT) trace.splice(0, trace.length - TRACE_LIMIT);
  if (VERBOSE) console.error('[trace]', JSON.stringify(entry));
}

function countSyncResponses(replicaIds, messages) {
  if (!Array.isArray(messages)) return;
  const n = messages.filter((m) => m && m.type === 'sync-resp').length;
  if (!n) return;
  for (const id of replicaIds) syncResponses.set(id, (syncResponses.get(id) ?? 0) + n);
}

function replicaIdsOf(messages) {
  const ids = new Set();
  for (const m of messages ?? []) if (m && m.replicaId) ids.add(m.replicaId);
  return [...ids];
}

const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async function tracingFetch(input, init = {}) {
  const url = typeof input === 'string' ? input : input?.url ?? String(input);
  const method = (init.method ?? 'GET').toUpperCase();
  let requestMessages = null;
  if (method === 'POST' && typeof init.body === 'string') {
    try {
      requestMessages = JSON.parse(init.body).messages ?? null;
    } catch {
      requestMessages = null;
    }
  }
  if (!requestMessages) {
    // auth and file requests: not traced in detail
    return realFetch(input, init);
  }
  const replicaIds = replicaIdsOf(requestMessages);
  const started = Date.now();
  const entry = { kind: 'http', url, replicaIds, request: requestMessages };
  addInflight(replicaIds, 1);
  try {
    const response = await realFetch(input, init);
    entry.status = response.status;
    entry.ms = Date.now() - started;
    const text = await response.clone().text();
    try {
      entry.response = JSON.parse(text).messages ?? JSON.parse(text);
    } catch {
      entry.response = text;
    }
    if (response.ok) countSyncResponses(replicaIds, entry.response);
    record(entry);
    return response;
  } catch (error) {
    entry.ms = Date.now() - started;
    entry.error = String(error?.cause ?? error);
    record(entry);
    throw error;
  } finally {
    addInflight(replicaIds, -1);
  }
};

class TracingWebSocket extends NodeWebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    this._replicaIds = [];
    this.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(String(event.data));
      } catch {
        message = String(event.data);
      }
      countSyncResponses(this._replicaIds, [message]);
      record({ kind: 'ws-in', url: String(url), replicaIds: this._replicaIds, response: [message] });
    });
    this.addEventListener('close', (event) => {
      record({ kind: 'ws-close', url: String(url), replicaIds: this._replicaIds, code: event.code });
    });
  }
  send(data, ...rest) {
    let message;
    try {
      message = JSON.parse(String(data));
    } catch {
      message = String(data);
    }
    if (message && message.replicaId && !this._replicaIds.includes(message.replicaId)) {
      this._replicaIds = [...this._replicaIds, message.replicaId];
    }
    record({ kind: 'ws-out', url: this.url, replicaIds: this._replicaIds, request: [message] });
    return super.send(data, ...rest);
  }
}
globalThis.WebSocket = TracingWebSocket;

// ---------------------------------------------------------------------------------------------
// Clients and devices. A device is one fake IndexedDB factory: reopening a client with the same
// device key reopens the same local databases, i.e. the same replica.
const devices = new Map();
const clients = new Map(); // name -> { client, device, replicaId, user, library }

function deviceFactory(key) {
  let factory = devices.get(key);
  if (!factory) {
    factory = new IDBFactory();
    devices.set(key, factory);
  }
  return factory;
}

function getClient(name) {
  const entry = clients.get(name);
  if (!entry) throw new Error(`no open client named ${JSON.stringify(name)}`);
  return entry;
}

async function replicaIdOf(client) {
  if (typeof client.getReplicaId === 'function') return client.getReplicaId();
  const fromPresence = client.sync?.presence?.self?.replicaId;
  if (fromPresence) return fromPresence;
  const meta = client.meta ?? client.context?.meta;
  if (meta?.localReplica) return (await meta.localReplica.get()).id;
  return null;
}

async function getEntity(client, id) {
  const entity = await client.items.get(id).resolved;
  if (!entity) throw new Error(`no document with id ${JSON.stringify(id)}`);
  return entity;
}

function pathOf(path) {
  if (Array.isArray(path)) return path;
  if (typeof path === 'string') return path.split('.');
  throw new Error('path must be a list of keys or a dotted string');
}

// Walks all but the last key of `path` from a document entity; returns [parent, lastKey].
function resolveParent(entity, path) {
  const keys = pathOf(path);
  if (!keys.length) throw new Error('empty path');
  let node = entity;
  for (const key of keys.slice(0, -1)) {
    const next = node.get(key);
    if (next === null || next === undefined || typeof next.get !== 'function') {
      throw new Error(`path ${JSON.stringify(keys)}: ${JSON.stringify(key)} is not an object or list`);
    }
    node = next;
  }
  return [node, keys[keys.length - 1]];
}

function resolveNode(entity, path) {
  const keys = pathOf(path);
  let node = entity;
  for (const key of keys) {
    node = node.get(key);
    if (node === null || node === undefined || typeof node.get !== 'function') {
      throw new Error(`path ${JSON.stringify(keys)}: ${JSON.stringify(key)} is not an object or list`);
    }
  }
  return node;
}

function sortById(docs) {
  return docs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function toFile(spec) {
  if (!spec) return null;
  return new File([Buffer.from(spec.base64, 'base64')], spec.name, { type: spec.type });
}

function plain(value) {
  return value === undefined ? null : JSON.parse(JSON.stringify(value));
}

// ---------------------------------------------------------------------------------------------
const commands = {
  async hello() {
    return { storeVersion: STORE_VERSION, node: process.version, pid: process.pid };
  },

  async open({
    name,
    user,
    library,
    authUrl,
    transport = 'pull',
    pullInterval = 300,
    device,
    start = true,
    presence = {},
    profile = {},
    automaticTransportSelection = false,
  }) {
    // `null`: leave the option out, i.e. the store's default (true, for 5.x apps)
    if (!name) throw new Error('open: name is required');
    if (clients.has(name)) throw new Error(`a client named ${JSON.stringify(name)} is already open`);
    if (transport !== 'pull' && transport !== 'realtime') {
      throw new Error(`transport must be 'pull' or 'realtime', not ${JSON.stringify(transport)}`);
    }
    const deviceKey = device ?? name;
    const init = {
      schema: appSchema,
      migrations,
      namespace: 'interop',
      log: clientLog(name),
      sync: {
        authEndpoint: authUrl,
        initialPresence: presence,
        defaultProfile: profile,
        initialTransport: transport,
        ...(automaticTransportSelection === null ? {} : { automaticTransportSelection }),
        pullInterval,
        autoStart: false,
      },
    };
    let client;
    if (IS_STORE5) {
      // 5.x captures fetch and WebSocket when it loads, before the tracing ones above exist
      client = new Client({
        ...init,
        oldSchemas: [],
        environment: {
          indexedDB: deviceFactory(deviceKey),
          fetch: globalThis.fetch,
          WebSocket: TracingWebSocket,
        },
      });
    } else {
      client = await new ClientDescriptor({
        ...init,
        indexedDb: deviceFactory(deviceKey),
      }).open();
    }
    const entry = { client, device: deviceKey, user, library, replicaId: null };
    clients.set(name, entry);
    entry.replicaId = await replicaIdOf(client);
    if (start) client.sync.start();
    return { name, replicaId: entry.replicaId, device: deviceKey };
  },

  async start({ name }) {
    getClient(name).client.sync.start();
    return null;
  },

  async stop({ name }) {
    getClient(name).client.sync.stop();
    return null;
  },

  async set_mode({ name, transport }) {
    getClient(name).client.sync.setMode(transport);
    return null;
  },

  async close({ name }) {
    const { client } = getClient(name);
    clients.delete(name);
    await client.close();
    return null;
  },

  async close_all() {
    const names = [...clients.keys()];
    const errors = [];
    for (const name of names) {
      const { client } = clients.get(name);
      clients.delete(name);
      try {
        await client.close();
      } catch (error) {
        errors.push(`${name}: ${error}`);
      }
    }
    if (errors.length) throw new Error(`close_all: ${errors.join('; ')}`);
    return names;
  },

  // `private`: a document only its user may read (store 5.x access control)
  async put({ name, doc, private: isPrivate = false }) {
    const { client } = getClient(name);
    if (isPrivate && !IS_STORE5) throw new Error('private documents need store 5.x');
    const options = isPrivate ? { access: Reflect.get(verdant, 'authorization').private } : undefined;
    const entity = await client.items.put(doc, options);
    return plain(entity.getSnapshot());
  },

  // list.set(index, value) on the list at `path` (store 5.x: a list-set patch).
  async list_set({ name, id, path, index, value }) {
    const { client } = getClient(name);
    const entity = await getEntity(client, id);
    resolveNode(entity, path).set(index, value);
    return plain(entity.getSnapshot());
  },

  // Store 5.x view presence: this client's view, and the peers it sees in the same view.
  async set_view({ name, viewId }) {
    getClient(name).client.sync.presence.setViewId(viewId);
    return null;
  },

  async view_peers({ name }) {
    return plain(getClient(name).client.sync.presence.getViewPeers().map((peer) => peer.id));
  },

  async put_many({ name, docs }) {
    const { client } = getClient(name);
    const ids = [];
    for (const doc of docs) ids.push((await client.items.put(doc)).get('id'));
    return ids;
  },

  async update({ name, id, fields }) {
    const { client } = getClient(name);
    const entity = await getEntity(client, id);
    entity.update(fields);
    return plain(entity.getSnapshot());
  },

  async delete({ name, id }) {
    const { client } = getClient(name);
    await client.items.delete(id);
    return null;
  },

  // Sets one field anywhere in a document: path ['meta', 'nested', 'flag'] or 'meta.nested.flag'.
  async set({ name, id, path, value }) {
    const { client } = getClient(name);
    const entity = await getEntity(client, id);
    const [parent, key] = resolveParent(entity, path);
    parent.set(key, value);
    return plain(entity.getSnapshot());
  },

  // Pushes a value onto the list at `path` (e.g. 'tags').
  async push({ name, id, path, value }) {
    const { client } = getClient(name);
    const entity = await getEntity(client, id);
    const list = resolveNode(entity, path);
    list.push(value);
    return plain(entity.getSnapshot());
  },

  // Removes the first occurrence of `value` from the list at `path`.
  async remove_from_list({ name, id, path, value }) {
    const { client } = getClient(name);
    const entity = await getEntity(client, id);
    const list = resolveNode(entity, path);
    list.removeFirst(value);
    return plain(entity.getSnapshot());
  },

  async get({ name, id }) {
    const { client } = getClient(name);
    const entity = await client.items.get(id).resolved;
    return entity ? plain(entity.getSnapshot()) : null;
  },

  // The `items` documents as the client stored them (store 3.x): a second, local-only client on
  // the same device loads each document its export names from storage, apart from the entity
  // views and query indexes the first client keeps, which can miss data the client stored
  // (docs/protocol.md, "Known client defects").
  async read_stored({ name }) {
    const { device } = getClient(name);
    if (IS_STORE5) throw new Error('read_stored reads store 3.x clients only');
    const copy = await new ClientDescriptor({
      schema: appSchema,
      migrations,
      namespace: 'interop',
      log: clientLog(`${name}.stored`),
      indexedDb: deviceFactory(device),
    }).open();
    try {
      const exported = await copy.export({ downloadRemoteFiles: false });
      // 3.2.x exports a Buffer of JSON; 3.6.x an object whose `data` holds the same.
      const data =
        exported instanceof Uint8Array ? JSON.parse(Buffer.from(exported).toString()) : exported.data;
      const ids = new Set();
      for (const record of [...data.operations, ...data.baselines]) {
        const [collection, id] = record.oid.split('/');
        if (collection === 'items' && !id.includes(':')) ids.add(id);
      }
      const docs = [];
      for (const id of ids) {
        const entity = await copy.items.get(id).resolved;
        if (entity) docs.push(plain(entity.getSnapshot()));
      }
      return sortById(docs);
    } finally {
      await copy.close();
    }
  },

  // What the client holds in its own history: the oid and timestamp of every operation and
  // baseline it stored (its export), to see where it compacted.
  async history({ name }) {
    const { client } = getClient(name);
    const exported = await client.export({ downloadRemoteFiles: false });
    // 3.2.x exports a Buffer of JSON; 3.6.x and 5.x an object whose `data` holds the same.
    const data =
      exported instanceof Uint8Array ? JSON.parse(Buffer.from(exported).toString()) : exported.data;
    const brief = (records) => records.map(({ oid, timestamp }) => ({ oid, timestamp }));
    return { operations: brief(data.operations), baselines: brief(data.baselines) };
  },

  async read({ name }) {
    const { client } = getClient(name);
    const query = client.items.findAll();
    const entities = await query.resolved;
    return sortById(entities.map((entity) => plain(entity.getSnapshot())));
  },

  // How many `items` documents the client holds: cheaper than `read` when only the count
  // matters (benchmarks/newcomer.py polls it). Store 3.x keeps one IndexedDB record per document;
  // 5.x hides its storage, so there the documents are loaded.
  async count({ name }) {
    const { client } = getClient(name);
    const database = client.documentDb;
    if (!database) return (await client.items.findAll().resolved).length;
    const request = database.transaction(['items'], 'readonly').objectStore('items').count();
    return new Promise((resolve, reject) => {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  },

  // Files: `file` is {name, type, base64} (a File the client uploads) or null (removes it).
  async put_attachment({ name, id, file, private: isPrivate = false }) {
    const { client } = getClient(name);
    if (isPrivate && !IS_STORE5) throw new Error('private documents need store 5.x');
    const options = isPrivate ? { access: Reflect.get(verdant, 'authorization').private } : undefined;
    const entity = await client.attachments.put({ id, file: toFile(file) }, options);
    return entity.get('id');
  },

  async set_attachment_file({ name, id, file }) {
    const { client } = getClient(name);
    const entity = await client.attachments.get(id).resolved;
    if (!entity) throw new Error(`no attachment with id ${JSON.stringify(id)}`);
    entity.set('file', toFile(file));
    return null;
  },

  // What the client knows of an attachment's file; with `download`, the bytes at its URL too.
  async attachment_file({ name, id, download = false }) {
    const { client } = getClient(name);
    const entity = await client.attachments.get(id).resolved;
    if (!entity) return null;
    const file = entity.get('file');
    if (!file) return { id: null };
    const result = {
      id: file.id, url: file.url, name: file.name, type: file.type,
      loading: file.loading, failed: file.failed,
    };
    if (download && file.url && file.url.startsWith('http')) {
      const response = await fetch(file.url);
      result.status = response.status;
      result.contentType = response.headers.get('content-type');
      result.base64 = Buffer.from(await response.arrayBuffer()).toString('base64');
    }
    return result;
  },

  async status({ name }) {
    const entry = getClient(name);
    const { client } = entry;
    if (!entry.replicaId) entry.replicaId = await replicaIdOf(client);
    return {
      isConnected: client.sync.isConnected,
      status: client.sync.status,
      mode: client.sync.mode,
      replicaId: entry.replicaId,
      syncResponses: syncResponses.get(entry.replicaId) ?? 0,
      inflight: inflight.get(entry.replicaId) ?? 0,
    };
  },

  async presence({ name }) {
    const { client } = getClient(name);
    const presence = client.sync.presence;
    return plain({ self: presence.self, peers: presence.peers });
  },

  async update_presence({ name, presence }) {
    getClient(name).client.sync.presence.update(presence);
    return null;
  },

  // Recent wire traffic of one client (by its replica id) or of everything (no name).
  async trace({ name, limit = 200 }) {
    let entries = trace;
    if (name) {
      const entry = getClient(name);
      if (!entry.replicaId) entry.replicaId = await replicaIdOf(entry.client);
      entries = trace.filter((e) => e.replicaIds?.includes(entry.replicaId));
    }
    return entries.slice(-limit);
  },

  async clients() {
    return [...clients.entries()].map(([name, e]) => ({
      name,
      device: e.device,
      user: e.user,
      library: e.library,
      replicaId: e.replicaId,
    }));
  },

  async exit() {
    await commands.close_all().catch((error) => console.error(error));
    setTimeout(() => process.exit(0), 0);
    return null;
  },
};

// ---------------------------------------------------------------------------------------------
function reply(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

process.on('unhandledRejection', (reason) => {
  console.error('[driver] unhandled rejection:', reason?.stack ?? reason);
});
process.on('uncaughtException', (error) => {
  console.error('[driver] uncaught exception:', error?.stack ?? error);
});

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
const pending = new Set();

lines.on('line', (line) => {
  if (!line.trim()) return;
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    reply({ id: null, ok: false, error: `bad JSON command: ${error.message}` });
    return;
  }
  const { id = null, cmd, args = {} } = request;
  const handler = Object.hasOwn(commands, cmd) ? commands[cmd] : null;
  if (!handler) {
    reply({ id, ok: false, error: `unknown command ${JSON.stringify(cmd)}` });
    return;
  }
  const job = (async () => {
    try {
      const result = await handler(args ?? {});
      reply({ id, ok: true, result: result ?? null });
    } catch (error) {
      reply({ id, ok: false, error: String(error?.message ?? error), stack: error?.stack ?? null });
    }
  })();
  pending.add(job);
  job.finally(() => pending.delete(job));
});

// stdin closed (the test process went away): close every client so the process exits.
lines.on('close', async () => {
  await Promise.allSettled([...pending]);
  await commands.close_all().catch((error) => console.error('[driver] close_all:', error));
  setTimeout(() => process.exit(0), 50).unref();
});

reply({ id: 0, ok: true, result: { ready: true, storeVersion: STORE_VERSION } });
