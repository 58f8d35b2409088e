#!/usr/bin/env node
'use strict';
// A WebSocket presence gateway for the `presence` PostgreSQL extension.
//
// One process = one app worker. Each browser WebSocket = one fd. The gateway
// tracks the socket in its topic when it opens, untracks it when it closes,
// turns status messages into presence_set_status, and relays the diffs the
// extension NOTIFYs to the sockets subscribed to a topic (snapshot first,
// then only diffs with a higher seq and the same epoch). See docs/protocol.md for
// the protocol.
//
// Configuration (environment):
//   PORT (8081), HOST (127.0.0.1), GATEWAY_NAME (gw-<port>)
//   DATABASE_URL, or libpq's PGHOST / PGPORT / PGUSER / PGDATABASE ...
//   PRESENCE_CHANNEL (tep_broadcast)
//   PRESENCE_DELIVERY: broadcast (default: every diff on PRESENCE_CHANNEL) or
//     topic (the server's presence.delivery is topic or both: LISTEN only
//     to the channels of the topics this gateway has subscribers for)
//   PRESENCE_SHARDS=1: the database is a presence_proxy one (docs/scaling.md):
//     a leased worker (PRESENCE_LEASE_S, 10) heartbeating through the proxy,
//     and one LISTEN connection per shard (the client's Subscriber)
//   PRESENCE_TOKEN_SECRET: accept only HMAC-signed tokens (unset = demo mode)
//   PRESENCE_SIGNING_KEY_FILE: a file holding the key the server reads from
//     its presence.signing_key_file (one trailing newline ignored); diffs
//     without its signature are dropped and logged as forged (unset = not
//     checked).  PRESENCE_SIGNING_KEY: the key itself, instead of a file
//   PRESENCE_SIGNING_KEY_PREVIOUS_FILE (or PRESENCE_SIGNING_KEY_PREVIOUS):
//     also accepted, while the server's key changes (backends take a reload
//     one by one)
//   PRESENCE_DEFAULT_TOPIC (room:lobby)

const http = require('http');
const fs = require('fs');
const path = require('path');
const { WebSocketServer, WebSocket } = require('ws');
const pg = require('pg');
const token = require('./lib/token');
const { Relay } = require('./lib/relay');
const { Subscriber, Worker } = require('../../clients/node');

const env = process.env;
const PORT = Number(env.PORT || 8081);
const HOST = env.HOST || '127.0.0.1';
const NAME = env.GATEWAY_NAME || `gw-${PORT}`;
const CHANNEL = env.PRESENCE_CHANNEL || 'tep_broadcast';
const TOPIC_DELIVERY = (env.PRESENCE_DELIVERY || 'broadcast') === 'topic';
const SHARDS = env.PRESENCE_SHARDS === '1';
const LEASE_S = Number(env.PRESENCE_LEASE_S || 10);
const SECRET = env.PRESENCE_TOKEN_SECRET || '';
// A key from NAME_FILE (as the server reads its file) or from NAME itself.
const keyFrom = (name) => (env[`${name}_FILE`]
  ? fs.readFileSync(env[`${name}_FILE`], 'utf8').replace(/\r?\n$/, '')
  : env[name]);
const SIGNING_KEYS = [keyFrom('PRESENCE_SIGNING_KEY'), keyFrom('PRESENCE_SIGNING_KEY_PREVIOUS')].filter(Boolean);
const DEFAULT_TOPIC = env.PRESENCE_DEFAULT_TOPIC || 'room:lobby';
const STATES = ['available', 'busy', 'blocked'];
const MAX_MESSAGE = 8192; // bytes of one client message
const MAX_SUBSCRIPTIONS = 32; // per socket
const MAX_QUEUED = 64; // pending database calls per socket
const BACKOFF_MIN = 100;
const BACKOFF_MAX = 5000;

function log(...args) {
  if (env.GATEWAY_QUIET) return;
  console.error(new Date().toISOString(), `[${NAME}]`, ...args);
}

function pgConfig(role) {
  const c = { application_name: `presence-gateway:${NAME}:${role}` };
  if (env.DATABASE_URL) c.connectionString = env.DATABASE_URL;
  return c;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const backoffDelay = (attempt) =>
  Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt) * (0.75 + Math.random() * 0.5);

const stats = {
  worker_restarts: 0,
  client_errors: 0,
};

// ---------------------------------------------------------------------------
// The page's header counts are read on connections of their own.

const pool = new pg.Pool({ ...pgConfig('reads'), max: 2 });
pool.on('error', (e) => log('idle pool connection lost:', e.message));

// ---------------------------------------------------------------------------
// Writing: the presence client's Worker (clients/node). Bound to its
// dedicated connection (if the process dies, its backend exits and the
// extension removes every entry it owned); through a proxy, leased and
// heartbeating (the proxy reaches the shards on pooled connections). When
// its connection is lost it registers a new id and tracks every socket
// again; the pages are told their new worker.

const worker = new Worker({
  ...(SHARDS ? { id: NAME, lease: { seconds: LEASE_S }, shards: true } : { name: NAME, newIdOnRestart: true }),
  connection: env.DATABASE_URL ? { connectionString: env.DATABASE_URL } : undefined,
  applicationName: `presence-gateway:${NAME}:worker`,
  poolApplicationName: `presence-gateway:${NAME}:pool`,
  poolSize: 8,
});
worker.on('warning', (m) => log(m));
worker.on('lost', ({ id, reason }) => {
  stats.worker_restarts++;
  log(`worker ${id}: ${reason}; its entries are gone, registering again`);
});
worker.on('retrack_failed', (topic, socket, e) => log(`could not track ${socket} in ${topic} again: ${e.message}`));
worker.on('restart', ({ id, tracked }) => {
  log(`worker restarted as ${id}; tracked ${tracked} socket(s) again`);
  for (const conn of conns) if (worker.fdOf(conn.sock) !== undefined) hello(conn);
});

// ---------------------------------------------------------------------------
// Reading: the presence client's Subscriber (clients/node) keeps one LISTEN
// connection (one per shard) and one exact room per topic; lib/relay.js
// relays each room to the sockets subscribed to it.

const subscriber = new Subscriber({
  applicationName: `presence-gateway:${NAME}:listen`,
  poolApplicationName: `presence-gateway:${NAME}:snapshots`,
  connection: env.DATABASE_URL ? { connectionString: env.DATABASE_URL } : undefined,
  delivery: TOPIC_DELIVERY ? 'topic' : 'broadcast',
  channel: CHANNEL,
  signingKeys: SIGNING_KEYS,
  shards: SHARDS,
});
subscriber.on('warning', (m) => log(m));
subscriber.on('disconnected', ({ shard }) => log(`${shard ? `shard ${shard}: ` : ''}LISTEN connection lost; reconnecting with backoff`));
subscriber.on('reconnected', ({ shard }) => log(`${shard ? `shard ${shard}: ` : ''}LISTEN connection back; resyncing its subscriptions`));

const relay = new Relay({ subscriber, send: (c, m) => send(c, m), sendError: (...a) => sendError(...a), log });

function subscribe(conn, topic) {
  if (!conn.subs.has(topic) && conn.subs.size >= MAX_SUBSCRIPTIONS) {
    throw new ClientError('too_many_subscriptions', `at most ${MAX_SUBSCRIPTIONS} subscriptions per socket`);
  }
  relay.subscribe(conn, topic);
}

function unsubscribe(conn, topic) {
  return relay.unsubscribe(conn, topic);
}

// /healthz's counters of the reading side, from the client's.
function feedStats() {
  const c = subscriber.counters();
  return {
    listen_reconnects: c.reconnects,
    gaps: c.gaps,
    resyncs: c.resyncs,
    diffs_relayed: relay.diffsRelayed,
    bad_payloads: c.malformed,
    forged: c.forged + c.unsigned,
    epoch_changes: c.epochChanges,
  };
}

// ---------------------------------------------------------------------------
// Sockets.

const conns = new Set();
let nextSocket = 1;

class ClientError extends Error {
  constructor(error, message) {
    super(message);
    this.error = error;
  }
}

function send(conn, obj) {
  if (conn.ws.readyState === WebSocket.OPEN) conn.ws.send(JSON.stringify(obj));
}

function sendError(conn, error, message, ref, code) {
  stats.client_errors++;
  const m = { type: 'error', error, message };
  if (ref !== undefined) m.ref = ref;
  if (code) m.code = code;
  send(conn, m);
}

// Database calls of one socket run one after another, in arrival order.
function enqueue(conn, fn) {
  if (conn.pending >= MAX_QUEUED) throw new ClientError('busy', 'too many requests in flight');
  conn.pending++;
  const p = conn.queue.then(fn);
  conn.queue = p.catch(() => {}).finally(() => {
    conn.pending--;
  });
  return p;
}

async function track(conn) {
  if (conn.closed) return;
  const identity = conn.kind === 'agent_for' ? { principal: conn.principal, agent: conn.agent_id } : conn.principal;
  await worker.track(conn.topic, conn.sock, identity, metaOf(conn));
  conn.fd = worker.fdOf(conn.sock);
  hello(conn);
}

function hello(conn) {
  send(conn, {
    type: 'hello',
    gateway: NAME,
    worker_id: worker.id,
    fd: conn.fd,
    topic: conn.topic,
    principal: conn.principal,
    kind: conn.kind,
    agent_id: conn.agent_id,
    meta: metaOf(conn),
    demo: !SECRET,
  });
}

// The entry's meta (presence 1.1): the token's display name, if any.
function metaOf(conn) {
  return conn.name ? { name: conn.name } : {};
}

// The page's header counts, from the extension: people (principals with a
// human connection), the agents acting for them, and connections.
async function counts(conn, topic, ref) {
  const r = await pool.query(
    `SELECT count(*) FILTER (WHERE humans > 0) AS people, coalesce(sum(agents), 0) AS agents,
            coalesce(sum(connections), 0) AS connections, presence_count_principals($1) AS principals
       FROM presence_principals($1)`,
    [topic],
  );
  const row = r.rows[0];
  send(conn, {
    type: 'counts',
    topic,
    people: Number(row.people),
    agents: Number(row.agents),
    connections: Number(row.connections),
    principals: Number(row.principals),
    ref,
  });
}

async function untrack(conn) {
  if (worker.stopping || worker.fdOf(conn.sock) === undefined) return;
  if (!SHARDS) {
    await worker.untrackSocket(conn.sock);
    return;
  }
  // Shard mode: the socket's one entry is on its topic's shard. While that
  // shard is down the call fails and is made again until it is back: else
  // the entry would outlive the socket there, kept alive by this worker's
  // heartbeats.
  for (let attempt = 0; !worker.stopping && worker.fdOf(conn.sock) !== undefined; attempt++) {
    try {
      await worker.untrack(conn.topic, conn.sock);
      return;
    } catch (e) {
      if (e.code && e.code.startsWith('22')) throw e;
      log(`untrack of fd ${conn.fd} in ${conn.topic} failed (${e.message}); retrying`);
      await sleep(backoffDelay(attempt));
    }
  }
}

function bytes(s) {
  return Buffer.byteLength(s, 'utf8');
}

function checkTopic(topic) {
  if (typeof topic !== 'string' || topic === '') throw new ClientError('bad_request', 'topic must be a non-empty string');
  if (bytes(topic) > 255) throw new ClientError('bad_request', 'topic is over 255 bytes');
}

function parseStatus(m) {
  if (!STATES.includes(m.state)) {
    throw new ClientError('bad_request', `state must be one of ${STATES.join(', ')}`);
  }
  const note = m.note === undefined || m.note === null ? '' : m.note;
  if (typeof note !== 'string') throw new ClientError('bad_request', 'note must be a string');
  let until = 0;
  if (m.expires_in !== undefined && m.expires_in !== null && m.expires_in !== 0) {
    if (!Number.isFinite(m.expires_in) || m.expires_in < 0 || m.expires_in > 10 * 365 * 86400) {
      throw new ClientError('bad_request', 'expires_in must be a number of seconds');
    }
    until = Math.ceil(Date.now() / 1000 + m.expires_in);
  } else if (m.until_ts !== undefined && m.until_ts !== null) {
    if (!Number.isSafeInteger(m.until_ts)) throw new ClientError('bad_request', 'until_ts must be an integer (epoch seconds)');
    until = m.until_ts; // negative values are the extension's to reject
  }
  return { state: m.state, note, until_ts: until };
}

function dbErrorReply(conn, e, ref) {
  if (e && e.code && /^(22|23|P0)/.test(e.code)) {
    sendError(conn, 'rejected', e.message, ref, e.code);
  } else {
    log(`database call for fd ${conn.fd} failed:`, e && e.message);
    sendError(conn, 'unavailable', 'the database call failed; try again', ref);
  }
}

function onMessage(conn, data, isBinary) {
  let m;
  let ref;
  try {
    if (isBinary) throw new ClientError('bad_request', 'binary messages are not supported');
    if (data.length > MAX_MESSAGE) throw new ClientError('bad_request', `message over ${MAX_MESSAGE} bytes`);
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch (e) {
      throw new ClientError('bad_json', 'message is not valid JSON');
    }
    if (!m || typeof m !== 'object' || Array.isArray(m)) throw new ClientError('bad_request', 'message must be a JSON object');
    ref = typeof m.ref === 'string' || Number.isFinite(m.ref) ? m.ref : undefined;
    switch (m.type) {
      case 'subscribe':
        checkTopic(m.topic);
        subscribe(conn, m.topic);
        return;
      case 'unsubscribe':
        checkTopic(m.topic);
        unsubscribe(conn, m.topic);
        send(conn, { type: 'unsubscribed', topic: m.topic, ref });
        return;
      case 'status': {
        const s = parseStatus(m);
        enqueue(conn, async () => {
          const expires = s.until_ts ? new Date(s.until_ts * 1000) : null;
          if (!(await worker.setStatus(conn.topic, conn.sock, s.state, s.note, expires))) {
            throw new ClientError('not_tracked', 'this socket has no presence entry');
          }
          send(conn, { type: 'ok', op: 'status', ref, ...s });
        }).catch((e) => (e instanceof ClientError ? sendError(conn, e.error, e.message, ref) : dbErrorReply(conn, e, ref)));
        return;
      }
      case 'clear_status':
        enqueue(conn, async () => {
          if (!(await worker.clearStatus(conn.topic, conn.sock))) {
            throw new ClientError('not_tracked', 'this socket has no presence entry');
          }
          send(conn, { type: 'ok', op: 'clear_status', ref });
        }).catch((e) => (e instanceof ClientError ? sendError(conn, e.error, e.message, ref) : dbErrorReply(conn, e, ref)));
        return;
      case 'counts':
        checkTopic(m.topic);
        enqueue(conn, () => counts(conn, m.topic, ref)).catch((e) => dbErrorReply(conn, e, ref));
        return;
      case 'ping':
        send(conn, { type: 'pong', ref });
        return;
      default:
        throw new ClientError('unknown_type', `unknown message type ${JSON.stringify(String(m.type)).slice(0, 80)}`);
    }
  } catch (e) {
    if (e instanceof ClientError) sendError(conn, e.error, e.message, ref);
    else {
      log('unexpected error handling a message:', e);
      sendError(conn, 'internal', 'internal error', ref);
    }
  }
}

function onConnection(ws, req) {
  const url = new URL(req.url, 'http://localhost');
  const topic = url.searchParams.get('topic') || DEFAULT_TOPIC;
  let who;
  try {
    checkTopic(topic);
    who = token.verify(url.searchParams.get('token') || '', SECRET);
  } catch (e) {
    ws.send(JSON.stringify({ type: 'error', error: 'unauthorized', message: e.message }));
    ws.close(4401, 'unauthorized');
    return;
  }
  const conn = {
    ws,
    sock: `ws-${nextSocket++}`,
    fd: null, // the Worker's, once tracked
    topic,
    principal: who.principal,
    kind: who.kind,
    agent_id: who.agent_id,
    name: who.name || '',
    worker: null,
    status: null,
    subs: new Set(),
    queue: Promise.resolve(),
    pending: 0,
    closed: false,
  };
  conns.add(conn);
  ws.on('message', (data, isBinary) => onMessage(conn, data, isBinary));
  ws.on('error', (e) => log(`socket fd ${conn.fd} error:`, e.message));
  ws.on('close', () => {
    conn.closed = true;
    conns.delete(conn);
    relay.dropSocket(conn);
    conn.pending = 0; // never refuse the untrack
    enqueue(conn, () => untrack(conn)).catch((e) => log(`untrack of fd ${conn.fd} failed:`, e.message));
  });
  enqueue(conn, () => track(conn)).catch((e) => {
    if (e && e.code && /^(22|23)/.test(e.code)) {
      sendError(conn, 'rejected', e.message, undefined, e.code);
      ws.close(4400, 'rejected');
    } else {
      log(`track of fd ${conn.fd} failed:`, e && e.message);
      sendError(conn, 'unavailable', 'could not join; try again');
      ws.close(1011, 'unavailable');
    }
  });
}

// ---------------------------------------------------------------------------
// HTTP: the page, its config, a health check, and the WebSocket upgrade.

const PUBLIC = path.join(__dirname, 'public');
const FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};

function json(res, code, obj) {
  res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(obj));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' });
  if (url.pathname === '/healthz') {
    return json(res, 200, {
      ok: Boolean(worker.client) && subscriber.live(),
      gateway: NAME,
      worker_id: worker.id,
      feed_live: subscriber.live(),
      ...(SHARDS ? { shards: subscriber.shardStatus() } : {}),
      sockets: conns.size,
      topics: relay.topics.size,
      delivery: TOPIC_DELIVERY ? 'topic' : 'broadcast',
      channels: relay.channels(),
      ...stats,
      ...feedStats(),
    });
  }
  if (url.pathname === '/config.json') {
    return json(res, 200, { gateway: NAME, demo: !SECRET, default_topic: DEFAULT_TOPIC });
  }
  const f = FILES[url.pathname];
  if (!f) return json(res, 404, { error: 'not found' });
  fs.readFile(path.join(PUBLIC, f[0]), (err, body) => {
    if (err) return json(res, 500, { error: 'cannot read file' });
    res.writeHead(200, {
      'content-type': f[1],
      'cache-control': 'no-cache',
      'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:",
      'x-content-type-options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
});

const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
wss.on('connection', onConnection);
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname !== '/ws' || !worker.client) {
    socket.end('HTTP/1.1 503 Service Unavailable\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

// ---------------------------------------------------------------------------
// Start and stop.

let shuttingDown = false;

async function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  log(`${signal}: leaving every topic and stopping`);
  setTimeout(() => process.exit(1), 5000).unref();
  server.close();
  try {
    const n = await worker.stop();
    log(`worker ${worker.id} stopped, ${n} entr${n === 1 ? 'y' : 'ies'} dropped`);
  } catch (e) {
    log('presence_worker_stop failed:', e.message);
  }
  for (const conn of conns) conn.ws.close(1001, 'gateway shutting down');
  await Promise.allSettled([subscriber.close(), pool.end()]);
  process.exit(0);
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
// An unexpected error leaves the state unknown: exit (the connection-bound
// worker's entries then leave) rather than serve a room that may be wrong.
process.on('unhandledRejection', (e) => {
  log('unhandled rejection; exiting:', e);
  process.exit(1);
});

(async () => {
  try {
    const id = await worker.start();
    await subscriber.start(); // the LISTEN connection(s), before any snapshot
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(PORT, HOST, resolve);
    });
    log(`worker ${id}; listening on http://${HOST}:${PORT}/ (${SECRET ? 'signed tokens' : 'demo tokens'}, ${TOPIC_DELIVERY ? 'topic' : 'broadcast'} delivery)`);
  } catch (e) {
    console.error(`[${NAME}] cannot start: ${e.message}`);
    process.exit(1);
  }
})();
