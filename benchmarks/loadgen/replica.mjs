// One realtime replica speaking to a sync server over a websocket the way store 3.x does (docs/protocol.md, "Websocket"):
// presence-update then sync on open, op-re buffered until the first sync-resp, the nonce acked at
// once, a timestamp ack for the last operation of every op-re and sync-resp, heartbeats.
import WebSocket from 'ws';

export async function fetchToken(base, library, user) {
  const response = await fetch(`${base}/auth/${encodeURIComponent(library)}?user=${encodeURIComponent(user)}`);
  if (!response.ok) throw new Error(`auth for ${library}/${user} failed: ${response.status}`);
  return (await response.json()).accessToken;
}

export class SocketReplica {
  /**
   * handlers: operation(replica, op, via) for each received operation; baseline(replica, baseline)
   * for each baseline of a sync-resp; serverAck(replica, timestamp);
   * all optional. `initial` are the operations its first sync carries (they are its local history).
   */
  constructor({ base, token, library, replicaId, clock, handlers = {}, initial = [] }) {
    this.url = base.replace(/^http/, 'ws') + '/sync';
    this.token = token;
    this.library = library;
    this.replicaId = replicaId;
    this.clock = clock;
    this.handlers = handlers;
    this.local = [...initial];
    this.synced = false;
    this.buffered = [];
    this.counts = {};
    this.bytesIn = 0;
    this.lastSyncBytes = 0;
    this.heartbeatsSent = 0;
    this.heartbeatLatencies = [];
    this.pendingHeartbeats = [];
    this.closedUnexpectedly = false;
  }

  /** Connect and sync; resolves when the first sync-resp has been handled. */
  open() {
    return new Promise((resolve, reject) => {
      this.onSynced = resolve;
      const ws = new WebSocket(this.url, ['Bearer', this.token], { perMessageDeflate: false });
      this.ws = ws;
      ws.on('open', () => {
        this.send({ type: 'presence-update', replicaId: this.replicaId, presence: { page: 'list' } });
        this.sendSync(null);
      });
      ws.on('message', (data) => this.receive(data));
      ws.on('error', (error) => (this.synced ? (this.closedUnexpectedly = true) : reject(error)));
      ws.on('close', () => {
        if (!this.closing) this.closedUnexpectedly = true;
        if (!this.synced) reject(new Error(`socket of ${this.replicaId} closed before sync`));
      });
    });
  }

  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  sendSync(since) {
    this.send({
      type: 'sync',
      replicaId: this.replicaId,
      timestamp: this.clock.now(),
      schemaVersion: 1,
      operations: this.local,
      baselines: [],
      since,
      resyncAll: since === null && !this.everSynced,
    });
  }

  /** Send one op message; its `timestamp` is what the server-ack will echo. */
  sendOperations(operations) {
    for (const op of operations) this.local.push(op);
    const timestamp = this.clock.now();
    this.send({ type: 'op', replicaId: this.replicaId, timestamp, operations });
    return timestamp;
  }

  heartbeat() {
    this.heartbeatsSent += 1;
    this.pendingHeartbeats.push(performance.now());
    this.send({ type: 'heartbeat', replicaId: this.replicaId, timestamp: this.clock.now() });
  }

  /** Heartbeats every `intervalMs` starting after `phaseMs`, as clients do every 15 s. */
  startHeartbeats(intervalMs, phaseMs = Math.random() * intervalMs) {
    this.heartbeatTimer = setTimeout(() => {
      this.heartbeat();
      this.heartbeatTimer = setInterval(() => this.heartbeat(), intervalMs);
    }, phaseMs);
  }

  close() {
    this.closing = true;
    clearTimeout(this.heartbeatTimer);
    clearInterval(this.heartbeatTimer);
    if (this.ws) this.ws.terminate();
  }

  receive(data) {
    this.bytesIn += data.length;
    const message = JSON.parse(data);
    this.counts[message.type] = (this.counts[message.type] || 0) + 1;
    switch (message.type) {
      case 'sync-resp':
        this.lastSyncBytes = data.length;
        this.onSyncResponse(message);
        break;
      case 'op-re':
        if (this.synced) this.apply(message.operations, 'op-re');
        else this.buffered.push(message);
        break;
      case 'server-ack':
        if (this.synced && this.handlers.serverAck) this.handlers.serverAck(this, message.timestamp);
        break;
      case 'heartbeat-response': {
        const sentAt = this.pendingHeartbeats.shift();
        if (sentAt !== undefined) this.heartbeatLatencies.push(performance.now() - sentAt);
        break;
      }
      case 'need-since':
        this.sendSync(null);
        break;
      default:
        break;
    }
  }

  onSyncResponse(message) {
    if (message.ackThisNonce) {
      this.send({ type: 'ack', replicaId: this.replicaId, timestamp: this.clock.now(), nonce: message.ackThisNonce });
    }
    this.everSynced = true;
    this.apply(message.operations, 'sync-resp');
    this.baselinesReceived = (this.baselinesReceived || 0) + message.baselines.length;
    if (this.handlers.baseline) for (const baseline of message.baselines) this.handlers.baseline(this, baseline);
    if (!this.synced) {
      this.synced = true;
      for (const relay of this.buffered.splice(0)) this.apply(relay.operations, 'op-re');
      this.onSynced();
    }
  }

  apply(operations, via) {
    if (operations.length === 0) return;
    for (const op of operations) {
      this.clock.observe(op.timestamp);
      if (this.handlers.operation) this.handlers.operation(this, op, via);
    }
    this.send({ type: 'ack', replicaId: this.replicaId, timestamp: operations[operations.length - 1].timestamp });
  }
}

/** Open replicas with at most `concurrency` handshakes in flight. */
export async function openAll(replicas, concurrency = 50) {
  let next = 0;
  const worker = async () => {
    while (next < replicas.length) await replicas[next++].open();
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, replicas.length) }, worker));
}
