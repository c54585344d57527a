// Workload (d): `sockets` idle websockets in libraries of `groupSize`. The first replica of each
// library brings 5 operations in its first sync; the others join after it and must each receive
// them once. Server memory per connection is the growth of the server's resident set from before
// the sockets opened to after they have all synced, sent heartbeats and then been quiet for 3 s;
// heartbeat latency is measured with every socket heartbeating once per `heartbeatMs` (clients
// do every 15 s).
import { DocumentWriter, keyOf } from './documents.mjs';
import { HybridClock, nodeId } from './hlc.mjs';
import { fetchToken, openAll, SocketReplica } from './replica.mjs';
import { Ledger, summarize } from './stats.mjs';
import { collectHeartbeats, rssKib, sleep } from './util.mjs';

export async function idle(options) {
  const { base, sockets, groupSize, heartbeatMs, serverPid, run } = options;
  const ledger = new Ledger();
  const handlers = {
    baseline(replica, baseline) {
      ledger.gotBaseline(replica.replicaId, replica.library, baseline.oid, baseline.timestamp);
    },
    operation(replica, op) {
      ledger.got(replica.replicaId, keyOf(op));
    },
  };
  const groups = Math.ceil(sockets / groupSize);
  const firsts = [];
  const rest = [];
  for (let n = 0; n < sockets; n++) {
    const g = n % groups;
    const library = `${run}-idle-${g}`;
    const replicaId = `${library}-r${Math.floor(n / groups)}`;
    const clock = new HybridClock(nodeId(n));
    let initial = [];
    if (n < groups) {
      initial = new DocumentWriter(clock, replicaId).batch(5);
      for (const op of initial) ledger.wrote(library, replicaId, keyOf(op));
    }
    const token = await fetchToken(base, library, `user${n}`);
    ledger.join(library, replicaId);
    const replica = new SocketReplica({ base, token, library, replicaId, clock, handlers, initial });
    (n < groups ? firsts : rest).push(replica);
  }
  const all = [...firsts, ...rest];

  await sleep(1000);
  const rssBefore = serverPid ? await rssKib(serverPid) : null;
  const connectStarted = performance.now();
  await openAll(firsts);
  await openAll(rest);
  const connectSeconds = (performance.now() - connectStarted) / 1000;
  await sleep(1000);
  const rssConnected = serverPid ? await rssKib(serverPid) : null;

  for (const replica of all) replica.startHeartbeats(heartbeatMs);
  await sleep(heartbeatMs + 1000);
  for (const replica of all) {
    clearTimeout(replica.heartbeatTimer);
    clearInterval(replica.heartbeatTimer);
  }
  await sleep(3000); // idle: clients speak every 15 s, and are quiet most of the time
  const rssAfter = serverPid ? await rssKib(serverPid) : null;
  const disconnected = all.filter((r) => r.closedUnexpectedly).length;
  for (const replica of all) replica.close();

  const sent = all.reduce((sum, r) => sum + r.heartbeatsSent, 0);
  const answered = all.reduce((sum, r) => sum + r.heartbeatLatencies.length, 0);
  const perConnection = (rss) => (rss === null ? null : Math.round(((rss - rssBefore) / sockets) * 10) / 10);
  return {
    workload: 'idle',
    sockets,
    groupSize,
    connectSeconds,
    rssBeforeKib: rssBefore,
    rssAfterKib: rssAfter,
    kibPerConnectionSynced: perConnection(rssConnected),
    kibPerConnection: perConnection(rssAfter),
    heartbeatMs: summarize(collectHeartbeats(all)),
    heartbeatsLost: sent - answered,
    disconnected,
    delivery: ledger.check(),
  };
}
