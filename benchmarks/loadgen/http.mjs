// Workload (b): L libraries x R pull replicas over HTTP, each looping like a 3.x pull client with no
// pause: POST [op] with one new operation, POST [presence-update, sync], and POST [ack{nonce}] when
// the sync-resp asks for it (docs/protocol.md, "HTTP push/pull"). After `duration` the writes stop and the replicas keep
// polling until each has every other replica's operations: that wait is the time to convergence.
//
// Operations are counted as delivered when a sync-resp carries them: that is the pull path, where
// the nonce ack must keep the next answer from repeating them. op-re broadcasts that ride along in
// a response (docs/protocol.md, "HTTP push/pull") are counted apart as `piggybacked`.
import { Agent, request } from 'node:http';
import { DocumentWriter, keyOf } from './documents.mjs';
import { HybridClock, nodeId } from './hlc.mjs';
import { fetchToken } from './replica.mjs';
import { Ledger, summarize } from './stats.mjs';
import { sleep } from './util.mjs';

class PullReplica {
  constructor({ url, agent, token, library, replicaId, clock, ledger }) {
    this.url = new URL(url);
    this.agent = agent;
    this.token = token;
    this.library = library;
    this.replicaId = replicaId;
    this.clock = clock;
    this.ledger = ledger;
    this.writer = new DocumentWriter(clock, replicaId);
    this.local = [];
    this.lastSynced = null;
    this.piggybacked = 0;
    this.failures = 0;
  }

  post(messages) {
    const body = JSON.stringify({ messages });
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.url.hostname,
          port: this.url.port,
          path: this.url.pathname,
          method: 'POST',
          agent: this.agent,
          headers: {
            'Content-Type': 'application/json',
            'Content-Length': Buffer.byteLength(body),
            Authorization: `Bearer ${this.token}`,
          },
        },
        (res) => {
          const chunks = [];
          res.on('data', (chunk) => chunks.push(chunk));
          res.on('end', () => {
            if (res.statusCode !== 200) {
              this.failures += 1;
              resolve([]);
              return;
            }
            resolve(JSON.parse(Buffer.concat(chunks)).messages);
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  async push() {
    const op = this.writer.next();
    this.local.push(op);
    this.ledger.wrote(this.library, this.replicaId, keyOf(op));
    const timestamp = this.clock.now();
    await this.handle(await this.post([{ type: 'op', replicaId: this.replicaId, timestamp, operations: [op] }]));
  }

  syncMessage(since) {
    return {
      type: 'sync',
      replicaId: this.replicaId,
      timestamp: this.clock.now(),
      schemaVersion: 1,
      operations: since === null ? this.local : this.local.filter((op) => op.timestamp > since),
      baselines: [],
      since,
      resyncAll: !this.lastSynced,
    };
  }

  async poll() {
    const presence = { type: 'presence-update', replicaId: this.replicaId, presence: { page: 'list' } };
    await this.handle(await this.post([presence, this.syncMessage(this.lastSynced)]));
  }

  async handle(messages) {
    for (const message of messages) {
      if (message.type === 'sync-resp') {
        for (const op of message.operations) {
          this.clock.observe(op.timestamp);
          this.ledger.got(this.replicaId, keyOf(op));
        }
        for (const baseline of message.baselines) {
          this.ledger.gotBaseline(this.replicaId, this.library, baseline.oid, baseline.timestamp);
        }
        this.lastSynced = message.ackedTimestamp;
        if (message.ackThisNonce) {
          const ack = { type: 'ack', replicaId: this.replicaId, timestamp: this.clock.now(), nonce: message.ackThisNonce };
          await this.post([ack]);
        }
      } else if (message.type === 'op-re') {
        this.piggybacked += message.operations.length;
      } else if (message.type === 'server-ack') {
        this.lastSynced = message.timestamp;
      } else if (message.type === 'need-since') {
        await this.handle(await this.post([this.syncMessage(null)]));
      }
    }
  }
}

export async function http(options) {
  const { base, libraries, replicas: perLibrary, duration, warmup, run } = options;
  const ledger = new Ledger();
  const agent = new Agent({ keepAlive: true, maxSockets: libraries * perLibrary });
  const latencies = { push: [], poll: [] };
  let requests = 0;
  let measuring = false;
  let writing = true;

  const all = [];
  for (let l = 0; l < libraries; l++) {
    const library = `${run}-http-${l}`;
    for (let r = 0; r < perLibrary; r++) {
      const replicaId = `${library}-r${r}`;
      const clock = new HybridClock(nodeId(l * perLibrary + r));
      const token = await fetchToken(base, library, `user${r}`);
      ledger.join(library, replicaId);
      all.push(new PullReplica({ url: `${base}/sync`, agent, token, library, replicaId, clock, ledger }));
    }
  }
  // Count every POST, including acks and need-since answers, through one wrapper.
  for (const replica of all) {
    const post = replica.post.bind(replica);
    replica.post = (messages) => {
      if (measuring) requests += 1;
      return post(messages);
    };
  }
  await Promise.all(all.map((replica) => replica.poll()));

  const timed = async (kind, action) => {
    const started = performance.now();
    await action();
    if (measuring) latencies[kind].push(performance.now() - started);
  };
  const converged = () =>
    all.every((replica) => ledger.received.get(replica.replicaId).size === expectedFor(ledger, replica));
  const loops = all.map(async (replica) => {
    while (writing) {
      await timed('push', () => replica.push());
      await timed('poll', () => replica.poll());
    }
    while (!converged() && !timedOut) await replica.poll();
  });

  const cpuBefore = process.cpuUsage();
  await sleep(warmup * 1000);
  measuring = true;
  const started = performance.now();
  await sleep(duration * 1000);
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  const writesStopped = performance.now();
  writing = false;
  let timedOut = false;
  const timer = setTimeout(() => (timedOut = true), 30_000);
  await Promise.all(loops);
  clearTimeout(timer);
  const convergenceMs = performance.now() - writesStopped;
  const cpu = process.cpuUsage(cpuBefore);
  agent.destroy();

  return {
    workload: 'http',
    libraries,
    replicas: perLibrary,
    seconds: elapsed,
    requestsPerSecond: requests / elapsed,
    pushMs: summarize(latencies.push),
    pollMs: summarize(latencies.poll),
    convergenceMs: timedOut ? null : Math.round(convergenceMs),
    failedRequests: all.reduce((sum, replica) => sum + replica.failures, 0),
    piggybacked: all.reduce((sum, replica) => sum + replica.piggybacked, 0),
    generatorCpu: (cpu.user + cpu.system) / 1e6 / (elapsed + warmup),
    delivery: ledger.check(),
  };
}

function expectedFor(ledger, replica) {
  let count = 0;
  for (const { library, writer } of ledger.written.values()) {
    if (library === replica.library && writer !== replica.replicaId) count += 1;
  }
  return count;
}
