// Hosts the official @verdant-web/server 2.1.2 for interop tests and benchmarks, with the same
// routes as tests/interop/server_app.py:
//   POST /sync                     -> server.handleRequest (HTTP pull/push)
//   websocket upgrade on any path  -> the server's own upgrade handler
//   GET  /auth/<library>?user=<id> -> {"accessToken": ...} for that user (realtime replica type)
//   POST /test-admin/evict/<lib>   -> server.evictLibrary
//   GET  /test-admin/info/<lib>    -> server.getLibraryInfo
// Configuration: VERDANT_DATABASE_FILE (default ./reference.sqlite3), VERDANT_TOKEN_SECRET
// (default "interop-secret-of-32-bytes-or-more"), PORT (default 0 = chosen by the OS), HOST (default 127.0.0.1).
// Prints one line `listening on http://HOST:PORT` when ready.
import { createServer } from 'node:http';
import { Server, TokenProvider, ReplicaType } from '@verdant-web/server';

const databaseFile = process.env.VERDANT_DATABASE_FILE || './reference.sqlite3';
const secret = process.env.VERDANT_TOKEN_SECRET || 'interop-secret-of-32-bytes-or-more';
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 0);
const verbose = process.env.VERDANT_REFERENCE_LOG === '1';

const httpServer = createServer();
const verdant = new Server({
  httpServer,
  databaseFile,
  tokenSecret: secret,
  profiles: {
    async get(userId) {
      return { id: userId, name: userId.charAt(0).toUpperCase() + userId.slice(1) };
    },
  },
  log: verbose ? (...args) => console.error('[verdant]', ...args) : undefined,
});
// Without an 'error' listener the server throws from inside its error path.
verdant.on('error', (error) => console.error('[verdant error]', error));
const tokens = new TokenProvider({ secret });

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

httpServer.on('request', async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host || 'localhost'}`);
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    if (url.pathname === '/sync' && req.method === 'POST') {
      await verdant.handleRequest(req, res);
    } else if (parts[0] === 'auth' && parts.length === 2 && req.method === 'GET') {
      const user = url.searchParams.get('user');
      if (!user) return sendJson(res, 400, { error: 'user is required' });
      const accessToken = tokens.getToken({
        libraryId: parts[1],
        userId: user,
        syncEndpoint: `http://${req.headers.host}/sync`,
        type: ReplicaType.Realtime,
      });
      sendJson(res, 200, { accessToken });
    } else if (parts[0] === 'test-admin' && parts[1] === 'evict' && parts.length === 3 && req.method === 'POST') {
      verdant.evictLibrary(parts[2]);
      sendJson(res, 200, { evicted: parts[2] });
    } else if (parts[0] === 'test-admin' && parts[1] === 'info' && parts.length === 3 && req.method === 'GET') {
      sendJson(res, 200, await verdant.getLibraryInfo(parts[2]));
    } else if (url.pathname === '/health') {
      sendJson(res, 200, { ok: true });
    } else {
      sendJson(res, 404, { error: 'not found' });
    }
  } catch (error) {
    console.error('[host]', req.method, req.url, error);
    if (!res.headersSent) sendJson(res, 500, { error: String(error) });
  }
});

httpServer.listen(port, host, () => {
  const address = httpServer.address();
  console.log(`listening on http://${host}:${address.port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    httpServer.close();
    process.exit(0);
  });
}
