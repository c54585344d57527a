// Hybrid logical clock in the 3.x client format (docs/protocol.md, "Timestamps"): 4 chars schema version, 9 chars wall
// milliseconds, 4 chars counter, 7 chars node id, all base 36. Servers compare these as strings, so
// a benchmark that sent anything else would not exercise the ordering and ack paths real clients do.

const pad = (value, width) => value.toString(36).padStart(width, '0');

export class HybridClock {
  constructor(node, schemaVersion = 1) {
    this.node = pad(node, 7).slice(-7);
    this.prefix = pad(schemaVersion, 4);
    this.wall = 0;
    this.counter = 0;
  }

  now() {
    const wall = Date.now();
    if (wall > this.wall) {
      this.wall = wall;
      this.counter = 0;
    } else {
      this.counter += 1;
    }
    return this.prefix + pad(this.wall, 9) + pad(this.counter, 4) + this.node;
  }

  /** Advance past a received timestamp, as clients do, so later local ones sort after it. */
  observe(timestamp) {
    const wall = parseInt(timestamp.slice(4, 13), 36);
    const counter = parseInt(timestamp.slice(13, 17), 36);
    if (wall > this.wall) {
      this.wall = wall;
      this.counter = counter;
    } else if (wall === this.wall && counter > this.counter) {
      this.counter = counter;
    }
  }
}

/** A node id from a small integer: unique per replica within one run. */
export const nodeId = (n) => (n + 36 ** 6).toString(36).slice(-7);
