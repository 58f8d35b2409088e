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
//     and one LISTEN connection per shard (lib/shards.js)
//   PRESENCE_TOKEN_SECRET: accept only HMAC-signed tokens (unset = demo mode)
//   PRESENCE_SIGNING_KEY: the server's presence.signing_key; diffs without
//     its signature are dropped and logged as forged (unset = not checked)
//   PRESENCE_SIGNING_KEY_PREVIOUS: also accepted, while the server's key
//     changes (backends take a reload one by one)
//   PRESENCE_DEFAULT_TOPIC (room:lobby)

const crypto = require('crypto');
const http = require('http');
const fs = require('fs');
const path = require('path');
const { WebSocketServer, WebSocket } = require('ws');
const pg = require('pg');
const wire = require('./lib/wire');
const token = require('./lib/token');
const { ShardFeeds } = require('./lib/shards');

const env = process.env;
const PORT = Number(env.PORT || 8081);
const HOST = env.HOST || '127.0.0.1';
const NAME = env.GATEWAY_NAME || `gw-${PORT}`;
const CHANNEL = env.PRESENCE_CHANNEL || 'tep_broadcast';
const TOPIC_DELIVERY = (env.PRESENCE_DELIVERY || 'broadcast') === 'topic';
const SHARDS = env.PRESENCE_SHARDS === '1';
const LEASE_S = Number(env.PRESENCE_LEASE_S || 10);
const SECRET = env.PRESENCE_TOKEN_SECRET || '';
const SIGNING_KEYS = [env.PRESENCE_SIGNING_KEY, env.PRESENCE_SIGNING_KEY_PREVIOUS].filter(Boolean);
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
  listen_reconnects: 0,
  gaps: 0,
  resyncs: 0,
  diffs_relayed: 0,
  bad_payloads: 0,
  forged: 0,
  epoch_changes: 0,
  client_errors: 0,
};

// ---------------------------------------------------------------------------
// Pooled connections: every call passes the worker id explicitly, because
// only the dedicated worker connection has presence.worker_id set.

const pool = new pg.Pool({ ...pgConfig('pool'), max: 8 });
pool.on('error', (e) => log('idle pool connection lost:', e.message));

// ---------------------------------------------------------------------------
// The dedicated worker connection. presence_worker_start(id) on it makes
// this process a worker bound to that connection: if the process dies, its
// backend exits and the extension's background worker removes every entry
// it owned.

const worker = {
  client: null,
  id: null,
  ready: null, // promise of the id while (re)starting
  resolveReady: null,
  stopping: false,
  keepalive: null,
};

function resetReady() {
  worker.ready = new Promise((r) => {
    worker.resolveReady = r;
  });
}
resetReady();

async function startWorkerOnce() {
  const c = new pg.Client(pgConfig('worker'));
  c.on('error', (e) => log('worker connection error:', e.message));
  await c.connect();
  // An id of its own, bound to this connection by presence_worker_start:
  // the pool's calls name it, and a connection-bound pg-<pid>-<start> id
  // may be used only from its own connection.  A new one per start, so a
  // restarted worker never meets the lost one's entries.
  const wanted = `${NAME}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  let id;
  try {
    // Through a proxy, a leased worker: the proxy reaches the shards on
    // pooled connections, so a connection-bound one cannot work.
    id = SHARDS
      ? (await c.query('SELECT presence_worker_start($1, make_interval(secs => $2)) AS id', [NAME, LEASE_S])).rows[0].id
      : (await c.query('SELECT presence_worker_start($1) AS id', [wanted])).rows[0].id;
  } catch (e) {
    c.end().catch(() => {});
    throw e;
  }
  c.on('end', () => {
    if (worker.client === c) workerLost();
  });
  worker.client = c;
  worker.id = id;
  clearInterval(worker.keepalive);
  worker.keepalive = SHARDS
    ? setInterval(() => heartbeat(c, id), (LEASE_S * 1000) / 3)
    : setInterval(() => {
        c.query('SELECT 1').catch(() => {});
      }, 10000);
  worker.resolveReady(id);
  return id;
}

// A heartbeat that finds the lease lapsed on some shard (false, or the
// worker unknown: 22023) restarts the worker, as a lost connection does.
function heartbeat(c, id) {
  c.query('SELECT presence_heartbeat($1) AS ok', [id]).then(
    (r) => {
      if (!r.rows[0].ok) {
        log(`worker ${id}: lease lapsed on a shard; restarting`);
        c.end().catch(() => {});
      }
    },
    (e) => {
      log(`worker ${id}: heartbeat failed: ${e.message}`);
      if (e.code === '22023') c.end().catch(() => {});
    },
  );
}

function workerLost() {
  if (worker.stopping) return;
  log(`worker connection lost (worker ${worker.id}); its entries are gone, restarting`);
  worker.client = null;
  worker.id = null;
  clearInterval(worker.keepalive);
  resetReady();
  stats.worker_restarts++;
  (async () => {
    for (let attempt = 0; !worker.stopping; attempt++) {
      await sleep(backoffDelay(attempt));
      try {
        const id = await startWorkerOnce();
        log(`worker restarted as ${id}; tracking ${conns.size} socket(s) again`);
        for (const conn of conns) enqueue(conn, () => track(conn, true));
        return;
      } catch (e) {
        log('worker restart failed:', e.message);
      }
    }
  })();
}

// ---------------------------------------------------------------------------
// The LISTEN connection and the per-socket subscriptions.
//
// A subscription is { conn, topic, seq, epoch, buffer, gen }. seq is the
// last seq the socket has (null while a snapshot is in flight; diffs
// arriving then are buffered), epoch its snapshot's. Diffs with seq <= the
// socket's seq are already in its snapshot; seq + 1 is relayed; anything
// higher is a gap, and another epoch a new history: both trigger a resync
// from a fresh snapshot.

const feed = { client: null, live: false, attempt: 0, keepalive: null };
const topics = new Map(); // topic -> Set<subscription>

// Topic delivery: the channel of each topic with subscribers, LISTENed on
// the one LISTEN connection before the topic's first snapshot and
// UNLISTENed when its last subscriber leaves.
const channels = new Map(); // topic -> { channel, listened: Promise|null }
const channelTopics = new Map(); // channel -> topic

async function channelOf(topic) {
  let ch = channels.get(topic);
  if (!ch) {
    const r = await pool.query('SELECT presence_channel($1) AS c', [topic]);
    ch = channels.get(topic); // another subscriber may have won the race
    if (!ch) {
      ch = { channel: r.rows[0].c, listened: null };
      channels.set(topic, ch);
      channelTopics.set(ch.channel, topic);
    }
  }
  return ch;
}

// Resolves once the feed LISTENs to the topic's channel (at once in
// broadcast delivery, where the one channel is LISTENed at connect).
async function listening(topic) {
  if (SHARDS) await shards.clientFor(topic); // throws while its shard is down
  if (!TOPIC_DELIVERY) return;
  const ch = await channelOf(topic);
  const c = SHARDS ? await shards.clientFor(topic) : feed.client;
  if (!c) throw new Error('no LISTEN connection');
  if (!ch.listened || ch.client !== c) {
    ch.client = c;
    ch.listened = c.query(`LISTEN ${c.escapeIdentifier(ch.channel)}`);
    ch.listened.catch(() => { ch.listened = null; });
  }
  await ch.listened;
}

function unlisten(topic) {
  const ch = channels.get(topic);
  if (!ch) return;
  channels.delete(topic);
  channelTopics.delete(ch.channel);
  const c = SHARDS ? ch.client : feed.client;
  if (c && ch.client === c) c.query(`UNLISTEN ${c.escapeIdentifier(ch.channel)}`).catch(() => {});
}

async function listenOnce() {
  const c = new pg.Client(pgConfig('listen'));
  c.on('error', (e) => log('listen connection error:', e.message));
  c.on('notification', (m) => {
    if (feed.client === c) onNotification(m);
  });
  await c.connect();
  try {
    if (!TOPIC_DELIVERY) await c.query(`LISTEN ${c.escapeIdentifier(CHANNEL)}`);
  } catch (e) {
    c.end().catch(() => {});
    throw e;
  }
  c.on('end', () => {
    if (feed.client === c) feedLost();
  });
  feed.client = c;
  feed.live = true;
  feed.attempt = 0;
  clearInterval(feed.keepalive);
  feed.keepalive = setInterval(() => {
    c.query('SELECT 1').catch(() => {});
  }, 10000);
}

function feedLost() {
  if (worker.stopping) return;
  log('LISTEN connection lost; reconnecting with backoff');
  feed.client = null;
  feed.live = false;
  clearInterval(feed.keepalive);
  for (const subs of topics.values()) for (const sub of subs) pause(sub);
  (async () => {
    while (!worker.stopping) {
      await sleep(backoffDelay(feed.attempt++));
      try {
        await listenOnce();
        stats.listen_reconnects++;
        log('LISTEN connection back; resyncing every subscription');
        for (const subs of topics.values()) for (const sub of subs) resync(sub, 'reconnect');
        return;
      } catch (e) {
        log('LISTEN reconnect failed:', e.message);
      }
    }
  })();
}

function pause(sub) {
  sub.gen++; // drop any snapshot in flight: it is resynced after LISTEN
  sub.seq = null;
  sub.buffer = [];
  send(sub.conn, { type: 'feed', topic: sub.topic, live: false });
}

// Shard mode: one shard's LISTEN connection went down or came back; only
// the subscriptions of its topics wait and resync.
function subsOnShard(connstr) {
  const out = [];
  for (const [topic, subs] of topics) if (shards.topicShard(topic) === connstr) out.push(...subs);
  return out;
}

const shards = SHARDS
  ? new ShardFeeds({
      pool,
      config: pgConfig,
      channel: CHANNEL,
      topicDelivery: TOPIC_DELIVERY,
      onNotification: (m) => onNotification(m),
      onDown: (s) => subsOnShard(s).forEach(pause),
      onUp: (s) => {
        stats.listen_reconnects++;
        for (const sub of subsOnShard(s)) resync(sub, 'reconnect');
      },
      log,
      backoff: backoffDelay,
      sleep,
      stopping: () => worker.stopping,
    })
  : null;

function onNotification(msg) {
  if (TOPIC_DELIVERY ? !channelTopics.has(msg.channel) : msg.channel !== CHANNEL) return;
  let d;
  try {
    d = wire.decodePresence(msg.payload);
  } catch (e) {
    stats.bad_payloads++;
    log('ignoring malformed payload:', e.message);
    return;
  }
  if (!d) return; // another Tep broadcast topic
  if (SIGNING_KEYS.length && !SIGNING_KEYS.some((k) => wire.signedBy(d.json, k))) {
    stats.forged++;
    log(`dropping a diff on ${d.topic} without a valid signature (forged?):`, msg.payload.slice(0, 200));
    return;
  }
  const subs = topics.get(d.topic);
  if (!subs) return;
  for (const sub of subs) deliver(sub, d.diff);
}

function deliver(sub, diff) {
  if (sub.seq === null) {
    sub.buffer.push(diff);
    return;
  }
  if (diff.epoch !== sub.epoch) {
    // the server's history restarted (crash, promotion, restore, extension
    // created again): seqs of the old epoch say nothing about the new one
    stats.epoch_changes++;
    log(`epoch of ${sub.topic} changed from ${sub.epoch} to ${diff.epoch}; resyncing`);
    resync(sub, 'epoch');
    return;
  }
  if (diff.seq <= sub.seq) return; // already in the snapshot
  if (diff.seq !== sub.seq + 1) {
    stats.gaps++;
    log(`seq gap on ${sub.topic} for fd ${sub.conn.fd}: had ${sub.seq}, got ${diff.seq}; resyncing`);
    resync(sub, 'gap');
    return;
  }
  sub.seq = diff.seq;
  stats.diffs_relayed++;
  send(sub.conn, { type: 'diff', topic: sub.topic, seq: diff.seq, diff });
}

async function resync(sub, reason) {
  const gen = ++sub.gen;
  sub.seq = null;
  sub.buffer = [];
  if (!SHARDS && !feed.live) return; // resynced when LISTEN is back
  if (reason !== 'subscribe') stats.resyncs++;
  for (let attempt = 0; ; attempt++) {
    try {
      await listening(sub.topic); // LISTEN before the snapshot
      if (sub.gen !== gen || sub.closed) return;
      const r = await pool.query('SELECT presence_snapshot($1) AS s', [sub.topic]);
      if (sub.gen !== gen || sub.closed) return; // superseded
      const snap = r.rows[0].s;
      sub.seq = Number(snap.seq);
      sub.epoch = snap.epoch;
      send(sub.conn, {
        type: 'snapshot',
        topic: sub.topic,
        seq: sub.seq,
        entries: snap.entries || [],
        reason,
      });
      const buffered = sub.buffer.sort((a, b) => a.seq - b.seq);
      sub.buffer = [];
      for (const d of buffered) {
        if (sub.gen !== gen) return;
        deliver(sub, d);
      }
      return;
    } catch (e) {
      if (sub.gen !== gen || sub.closed) return;
      if (e.code && e.code.startsWith('22')) {
        // a bad topic: tell the client and drop the subscription
        sendError(sub.conn, 'bad_topic', e.message, undefined, e.code);
        unsubscribe(sub.conn, sub.topic);
        return;
      }
      log(`snapshot of ${sub.topic} failed (${e.message}); retrying`);
      await sleep(backoffDelay(attempt));
      if (sub.gen !== gen || sub.closed) return;
    }
  }
}

function subscribe(conn, topic) {
  let sub = conn.subs.get(topic);
  if (!sub) {
    if (conn.subs.size >= MAX_SUBSCRIPTIONS) {
      throw new ClientError('too_many_subscriptions', `at most ${MAX_SUBSCRIPTIONS} subscriptions per socket`);
    }
    sub = { conn, topic, seq: null, epoch: null, buffer: [], gen: 0, closed: false };
    conn.subs.set(topic, sub);
    if (!topics.has(topic)) topics.set(topic, new Set());
    topics.get(topic).add(sub);
  }
  resync(sub, 'subscribe');
}

function unsubscribe(conn, topic) {
  const sub = conn.subs.get(topic);
  if (!sub) return false;
  sub.closed = true;
  sub.gen++;
  conn.subs.delete(topic);
  const set = topics.get(topic);
  set.delete(sub);
  if (set.size === 0) {
    topics.delete(topic);
    unlisten(topic);
    if (SHARDS) shards.forget(topic);
  }
  return true;
}

// ---------------------------------------------------------------------------
// Sockets.

const conns = new Set();
let nextFd = 1;

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

async function track(conn, again = false) {
  if (conn.closed) return;
  const wid = await worker.ready;
  await pool.query('SELECT presence_track($1, $2, $3, $4, $5, $6, $7)', [
    conn.topic,
    conn.fd,
    conn.principal,
    conn.kind,
    conn.agent_id,
    wid,
    JSON.stringify(metaOf(conn)),
  ]);
  if (wid !== worker.id) {
    // The worker connection died while this call ran. Had the extension
    // already pruned the dead worker, presence_track registered its id anew
    // as a heartbeat worker: stop it, so no entry lingers for worker_ttl.
    // The restart re-tracks this socket under the new id.
    await pool.query('SELECT presence_worker_stop($1)', [wid]).catch(() => {});
    return;
  }
  conn.worker = wid;
  if (again && conn.status && (conn.status.until_ts === 0 || conn.status.until_ts > Date.now() / 1000)) {
    const s = conn.status;
    await pool.query('SELECT presence_set_status($1, $2, $3, $4, $5, $6)', [
      conn.topic, conn.fd, s.state, s.note, s.until_ts, wid,
    ]);
  }
  send(conn, {
    type: 'hello',
    gateway: NAME,
    worker_id: wid,
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
  // Only while the worker that tracked the socket is still ours: a lost
  // worker's entries are already gone.
  if (!conn.worker || conn.worker !== worker.id || worker.stopping) return;
  if (SHARDS) return untrackOnShard(conn);
  await pool.query('SELECT presence_untrack_by_fd($1, $2)', [conn.fd, conn.worker]);
}

// Shard mode: the socket's one entry is on its topic's shard. While that
// shard is down the call fails and is retried until it is back: else the
// entry would outlive the socket there, kept alive by this worker's
// heartbeats. A restarted worker has dropped it already.
async function untrackOnShard(conn) {
  for (let attempt = 0; conn.worker === worker.id && !worker.stopping; attempt++) {
    try {
      await pool.query('SELECT presence_untrack($1, $2, $3)', [conn.topic, conn.fd, conn.worker]);
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
          const wid = await worker.ready;
          const r = await pool.query('SELECT presence_set_status($1, $2, $3, $4, $5, $6) AS ok', [
            conn.topic, conn.fd, s.state, s.note, s.until_ts, wid,
          ]);
          if (!r.rows[0].ok) throw new ClientError('not_tracked', 'this socket has no presence entry');
          conn.status = s;
          send(conn, { type: 'ok', op: 'status', ref, ...s });
        }).catch((e) => (e instanceof ClientError ? sendError(conn, e.error, e.message, ref) : dbErrorReply(conn, e, ref)));
        return;
      }
      case 'clear_status':
        enqueue(conn, async () => {
          const wid = await worker.ready;
          const r = await pool.query('SELECT presence_clear_status($1, $2, $3) AS ok', [conn.topic, conn.fd, wid]);
          if (!r.rows[0].ok) throw new ClientError('not_tracked', 'this socket has no presence entry');
          conn.status = null;
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
    fd: nextFd++,
    topic,
    principal: who.principal,
    kind: who.kind,
    agent_id: who.agent_id,
    name: who.name || '',
    worker: null,
    status: null,
    subs: new Map(),
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
    for (const t of [...conn.subs.keys()]) unsubscribe(conn, t);
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
      ok: Boolean(worker.id) && (SHARDS ? shards.allLive() : feed.live),
      gateway: NAME,
      worker_id: worker.id,
      feed_live: SHARDS ? shards.allLive() : feed.live,
      ...(SHARDS ? { shards: shards.status() } : {}),
      sockets: conns.size,
      topics: topics.size,
      delivery: TOPIC_DELIVERY ? 'topic' : 'broadcast',
      channels: [...channels.values()].map((c) => c.channel).sort(),
      ...stats,
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
  if (url.pathname !== '/ws' || !worker.id) {
    socket.end('HTTP/1.1 503 Service Unavailable\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

// ---------------------------------------------------------------------------
// Start and stop.

async function shutdown(signal) {
  if (worker.stopping) return;
  worker.stopping = true;
  log(`${signal}: leaving every topic and stopping`);
  setTimeout(() => process.exit(1), 5000).unref();
  server.close();
  try {
    if (worker.client && worker.id) {
      const n = (await worker.client.query('SELECT presence_worker_stop($1) AS n', [worker.id])).rows[0].n;
      log(`worker ${worker.id} stopped, ${n} entr${n === 1 ? 'y' : 'ies'} dropped`);
    }
  } catch (e) {
    log('presence_worker_stop failed:', e.message);
  }
  for (const conn of conns) conn.ws.close(1001, 'gateway shutting down');
  clearInterval(worker.keepalive);
  clearInterval(feed.keepalive);
  await Promise.allSettled([
    worker.client && worker.client.end(),
    feed.client && feed.client.end(),
    SHARDS && shards.stop(),
    pool.end(),
  ]);
  process.exit(0);
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('uncaughtException', (e) => log('uncaught exception (kept running):', e));
process.on('unhandledRejection', (e) => log('unhandled rejection (kept running):', e));

(async () => {
  try {
    const id = await startWorkerOnce();
    await (SHARDS ? shards.start() : listenOnce()); // LISTEN before any snapshot is taken
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
