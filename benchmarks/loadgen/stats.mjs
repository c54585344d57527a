// Latency summaries and the exactly-once ledger every workload reports.

export function summarize(samplesMs) {
  if (samplesMs.length === 0) return { count: 0 };
  const sorted = Float64Array.from(samplesMs).sort();
  const at = (q) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]; // nearest rank
  const round = (x) => Math.round(x * 1000) / 1000;
  return {
    count: sorted.length,
    p50: round(at(0.5)),
    p95: round(at(0.95)),
    p99: round(at(0.99)),
    max: round(sorted[sorted.length - 1]),
  };
}

/**
 * Who must receive which operation, and what each replica actually received.
 * Every operation is expected by every other replica of its library; a replica's own operations
 * coming back (pull clients get them in their next sync) are counted apart, not as duplicates.
 */
export class Ledger {
  constructor() {
    this.written = new Map(); // key -> {library, writer}
    this.byObject = new Map(); // `${library} ${oid}` -> [{timestamp, key}]
    this.received = new Map(); // replicaId -> Map(key -> count)
    this.members = new Map(); // library -> Set(replicaId)
    this.ownEchoes = 0;
  }

  join(library, replicaId) {
    if (!this.members.has(library)) this.members.set(library, new Set());
    this.members.get(library).add(replicaId);
    this.received.set(replicaId, new Map());
  }

  wrote(library, writer, key) {
    this.written.set(key, { library, writer });
    const [oid, timestamp] = key.split(' ');
    const object = `${library} ${oid}`;
    if (!this.byObject.has(object)) this.byObject.set(object, []);
    this.byObject.get(object).push({ timestamp, key });
  }

  /**
   * A baseline in a sync-resp: the server folded the object's operations up to its timestamp
   * (compaction), so each of them not yet received counts as received once.
   */
  gotBaseline(replicaId, library, oid, timestamp) {
    const seen = this.received.get(replicaId);
    for (const op of this.byObject.get(`${library} ${oid}`) || []) {
      if (op.timestamp > timestamp || seen.has(op.key)) continue;
      if (this.written.get(op.key).writer !== replicaId) seen.set(op.key, 1);
    }
  }

  /** Record one delivery; returns true the first time this replica sees this operation. */
  got(replicaId, key) {
    const origin = this.written.get(key);
    if (origin && origin.writer === replicaId) {
      this.ownEchoes += 1;
      return false;
    }
    const seen = this.received.get(replicaId);
    const count = (seen.get(key) || 0) + 1;
    seen.set(key, count);
    return count === 1;
  }

  check() {
    let expected = 0;
    let lost = 0;
    let duplicated = 0;
    let unknown = 0;
    for (const [key, { library, writer }] of this.written) {
      for (const replicaId of this.members.get(library)) {
        if (replicaId === writer) continue;
        expected += 1;
        const count = this.received.get(replicaId).get(key) || 0;
        if (count === 0) lost += 1;
        else duplicated += count - 1;
      }
    }
    for (const seen of this.received.values()) {
      for (const key of seen.keys()) if (!this.written.has(key)) unknown += 1;
    }
    return { operations: this.written.size, expected, lost, duplicated, unknown, ownEchoes: this.ownEchoes };
  }
}
