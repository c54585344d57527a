// Workload (c): a new replica joining a library that holds `operations` operations. A seeding
// replica writes them over its websocket in op messages of `batch` operations (closed loop on the
// server-ack); a replica that synced once before and went offline keeps that history from being
// compacted; then `joins` new replicas
// join one after another. Each join is timed from opening the socket until
// its sync-resp has been received and parsed, and its size is the sync-resp frame's.
import { DocumentWriter, keyOf } from './documents.mjs';
import { HybridClock, nodeId } from './hlc.mjs';
import { fetchToken, SocketReplica } from './replica.mjs';
import { Ledger, summarize } from './stats.mjs';

export async function initial(options) {
  const { base, operations, batch, joins, run } = options;
  const library = `${run}-initial`;
  const ledger = new Ledger();
  const handlers = {
    baseline(replica, baseline) {
      ledger.gotBaseline(replica.replicaId, replica.library, baseline.oid, baseline.timestamp);
    },
    operation(replica, op) {
      ledger.got(replica.replicaId, keyOf(op));
    },
    serverAck(replica, timestamp) {
      if (timestamp === replica.awaiting) replica.acked();
    },
  };

  // Not in the ledger: it receives nothing, it only holds history back while it is away.
  const offline = new SocketReplica({
    base,
    token: await fetchToken(base, library, 'offline'),
    library,
    replicaId: `${library}-offline`,
    clock: new HybridClock(nodeId(1000)),
  });
  await offline.open();
  offline.close();

  const seederClock = new HybridClock(nodeId(0));
  const seeder = new SocketReplica({
    base,
    token: await fetchToken(base, library, 'seeder'),
    library,
    replicaId: `${library}-seeder`,
    clock: seederClock,
    handlers,
  });
  ledger.join(library, seeder.replicaId);
  await seeder.open();
  const writer = new DocumentWriter(seederClock, seeder.replicaId);
  const seedStarted = performance.now();
  for (let written = 0; written < operations; written += batch) {
    const ops = writer.batch(Math.min(batch, operations - written));
    for (const op of ops) ledger.wrote(library, seeder.replicaId, keyOf(op));
    await new Promise((resolve) => {
      seeder.acked = resolve;
      seeder.awaiting = seeder.sendOperations(ops);
    });
  }
  const seedSeconds = (performance.now() - seedStarted) / 1000;

  const times = [];
  const sizes = [];
  const joiners = [];
  for (let j = 0; j < joins; j++) {
    const replica = new SocketReplica({
      base,
      token: await fetchToken(base, library, `joiner${j}`),
      library,
      replicaId: `${library}-joiner${j}`,
      clock: new HybridClock(nodeId(j + 1)),
      handlers,
    });
    ledger.join(library, replica.replicaId);
    const started = performance.now();
    await replica.open();
    times.push(performance.now() - started);
    sizes.push(replica.lastSyncBytes);
    joiners.push(replica);
  }
  for (const replica of [seeder, ...joiners]) replica.close();

  const delivery = ledger.check();
  // Joiners after the first are also expected to have received the earlier joiners' (no) writes;
  // baselines would mean the server compacted the history, which this workload must not measure.
  return {
    workload: 'initial',
    operations,
    seedOpsPerSecond: operations / seedSeconds,
    joinMs: summarize(times),
    syncBytes: Math.round(sizes.reduce((a, b) => a + b, 0) / sizes.length),
    baselinesReceived: joiners.reduce((sum, r) => sum + (r.baselinesReceived || 0), 0),
    delivery,
  };
}
