// Realistic operations: each writer creates small todo documents and then edits them, as an app
// would. Every 8th operation initializes a new document; the rest set a field on the latest one.

export class DocumentWriter {
  constructor(clock, prefix) {
    this.clock = clock;
    this.prefix = prefix;
    this.count = 0;
    this.oid = null;
  }

  next() {
    const n = this.count++;
    if (n % 8 === 0) {
      const id = `${this.prefix}-${n}`;
      this.oid = `items/${id}`;
      return {
        oid: this.oid,
        timestamp: this.clock.now(),
        data: { op: 'initialize', value: { id, title: `Item ${n}`, done: false, priority: n % 5 } },
      };
    }
    const field = n % 3 === 0 ? { name: 'done', value: n % 2 === 0 } : { name: 'title', value: `Item ${n}, edited by ${this.prefix}` };
    return { oid: this.oid, timestamp: this.clock.now(), data: { op: 'set', ...field } };
  }

  batch(size) {
    return Array.from({ length: size }, () => this.next());
  }
}

export const keyOf = (op) => `${op.oid} ${op.timestamp}`;
