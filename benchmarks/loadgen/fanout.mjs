// Workload (a): L libraries x R websocket replicas, each writing in a closed loop: one op message
// in flight per replica, the next sent when the server-ack for the last one arrives (after an
// optional think time, drawn uniformly from 0.5-1.5 times --think-ms, as people type at no fixed
// beat). Measures acked ops/s, server-ack latency, and the time from sending an operation until
// every other replica of its library has received it. With --cpu-pids, also the CPU ticks those
// processes (the server's) used during the measured seconds.
import { DocumentWriter, keyOf } from './documents.mjs';
import { HybridClock, nodeId } from './hlc.mjs';
import { fetchToken, openAll, SocketReplica } from './replica.mjs';
import { Ledger, summarize } from './stats.mjs';
import { collectHeartbeats, cpuTicks, messageCounts, sleep, waitUntil } from './util.mjs';

export async function fanout(options) {
  const { base, libraries, replicas: perLibrary, duration, warmup, thinkMs, cpuPids, run } = options;
  const ledger = new Ledger();
  const inFlight = new Map(); // key -> {sentAt, remaining, measured}
  const ackLatencies = [];
  const peerLatencies = [];
  let measuring = false;
  let stopped = false;
  let acked = 0;

  const handlers = {
    baseline(replica, baseline) {
      ledger.gotBaseline(replica.replicaId, replica.library, baseline.oid, baseline.timestamp);
    },
    operation(replica, op) {
      const key = keyOf(op);
      if (!ledger.got(replica.replicaId, key)) return;
      const flight = inFlight.get(key);
      if (flight && --flight.remaining === 0) {
        if (flight.measured) peerLatencies.push(performance.now() - flight.sentAt);
        inFlight.delete(key);
      }
    },
    serverAck(replica, timestamp) {
      if (timestamp !== replica.awaiting) return;
      replica.awaiting = null;
      if (measuring) {
        acked += 1;
        ackLatencies.push(performance.now() - replica.sentAt);
      }
      if (thinkMs > 0) setTimeout(() => write(replica), thinkMs * (0.5 + Math.random()));
      else setImmediate(() => write(replica));
    },
  };

  function write(replica) {
    if (stopped) return;
    const [op] = replica.writer.batch(1);
    const key = keyOf(op);
    ledger.wrote(replica.library, replica.replicaId, key);
    replica.sentAt = performance.now();
    inFlight.set(key, { sentAt: replica.sentAt, remaining: perLibrary - 1, measured: measuring });
    replica.awaiting = replica.sendOperations([op]);
  }

  const all = [];
  for (let l = 0; l < libraries; l++) {
    const library = `${run}-fanout-${l}`;
    for (let r = 0; r < perLibrary; r++) {
      const replicaId = `${library}-r${r}`;
      const clock = new HybridClock(nodeId(l * perLibrary + r));
      const token = await fetchToken(base, library, `user${r}`);
      const replica = new SocketReplica({ base, token, library, replicaId, clock, handlers });
      replica.writer = new DocumentWriter(clock, replicaId);
      ledger.join(library, replicaId);
      all.push(replica);
    }
  }
  await openAll(all);
  for (const replica of all) replica.startHeartbeats(15_000);

  const cpuBefore = process.cpuUsage();
  // With a think time, writers start at random moments so that they do not write in lockstep.
  for (const replica of all) setTimeout(() => write(replica), Math.random() * thinkMs);
  await sleep(warmup * 1000);
  const ticksBefore = await cpuTicks(cpuPids);
  measuring = true;
  const started = performance.now();
  await sleep(duration * 1000);
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  const ticksAfter = await cpuTicks(cpuPids);
  stopped = true;
  const cpu = process.cpuUsage(cpuBefore);
  const drained = await waitUntil(() => inFlight.size === 0, 15_000);
  await sleep(200); // the last acks and global-acks
  for (const replica of all) replica.close();

  return {
    workload: 'fanout',
    libraries,
    replicas: perLibrary,
    thinkMs,
    seconds: elapsed,
    ackedOpsPerSecond: acked / elapsed,
    acked,
    serverCpuTicks: ticksAfter.map((ticks, i) => ticks - ticksBefore[i]),
    serverAckMs: summarize(ackLatencies),
    everyPeerMs: summarize(peerLatencies),
    heartbeatMs: summarize(collectHeartbeats(all)),
    drained,
    disconnected: all.filter((r) => r.closedUnexpectedly).length,
    generatorCpu: (cpu.user + cpu.system) / 1e6 / (elapsed + warmup),
    received: messageCounts(all),
    delivery: ledger.check(),
  };
}
