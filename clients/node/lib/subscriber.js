'use strict';
// The reading side: one LISTEN connection per process (one per shard in
// shard mode), rooms that follow the protocol of lib/room.js, snapshots
// batched into one query per resync, reconnects with backoff.

const { EventEmitter } = require('events');
const pg = require('pg');
const { Feed } = require('./room');
const { parseConninfo } = require('./conninfo');
const { backoff, sleep, signingKeysFromEnv, PresenceError } = require('./util');

const KEEPALIVE_MS = 10000;

// One LISTEN connection and the channels it must LISTEN on.
class Listener {
  constructor(sub, config, connstr) {
    this.sub = sub;
    this.connstr = connstr; // '' without shards
    const label = connstr ? ` (shard ${connstr})` : '';
    this.config = config;
    this.label = label;
    this.channels = new Set();
    this.client = null;
    this.live = false;
    this.connecting = null;
    this.keepalive = null;
  }

  async connect() {
    const c = new pg.Client({ ...this.config, keepAlive: true });
    c.on('error', (e) => this.sub.warn(`LISTEN connection${this.label}: ${e.message}`));
    c.on('notification', (m) => {
      if (this.client === c) this.sub.feed.notification(m.channel, m.payload);
    });
    await c.connect();
    try {
      for (const ch of this.channels) await c.query(`LISTEN ${c.escapeIdentifier(ch)}`);
    } catch (e) {
      c.end().catch(() => {});
      throw e;
    }
    c.on('end', () => {
      if (this.client === c) this.lost();
    });
    this.client = c;
    this.live = true;
    this.keepalive = setInterval(() => c.query('SELECT 1').catch(() => {}), KEEPALIVE_MS);
    this.keepalive.unref();
  }

  async listen(channel) {
    if (this.channels.has(channel)) return;
    this.channels.add(channel);
    if (this.live) await this.client.query(`LISTEN ${this.client.escapeIdentifier(channel)}`);
  }

  unlisten(channel) {
    if (!this.channels.delete(channel)) return;
    if (this.live) this.client.query(`UNLISTEN ${this.client.escapeIdentifier(channel)}`).catch(() => {});
  }

  // Lost: reconnect with backoff, then every room on it resyncs.
  lost() {
    this.client = null;
    this.live = false;
    clearInterval(this.keepalive);
    if (this.sub.closing) return;
    this.sub.emit('disconnected', { shard: this.connstr || null });
    this.connecting = (async () => {
      for (let attempt = 0; !this.sub.closing; attempt++) {
        await sleep(backoff(attempt));
        if (this.sub.closing) return;
        try {
          await this.connect();
          this.sub.stats.reconnects++;
          this.sub.emit('reconnected', { shard: this.connstr || null });
          for (const room of this.sub.feed.rooms.values()) if (room.listener === this) room.reconnected();
          return;
        } catch (e) {
          this.sub.warn(`LISTEN reconnect${this.label} failed: ${e.message}`);
        }
      }
    })();
  }

  async close() {
    clearInterval(this.keepalive);
    const c = this.client;
    this.client = null;
    this.live = false;
    if (c) await c.end().catch(() => {});
  }
}

class Subscriber extends EventEmitter {
  // options:
  //   connection: node-postgres client options (default: libpq's PG* environment)
  //   applicationName: of its connections (default presence-subscriber);
  //   poolApplicationName: of those that take snapshots, if another
  //   delivery: 'broadcast' | 'topic' (default: the server's presence.delivery; 'both' reads as topic)
  //   channel: the broadcast channel (default: the server's presence.channel)
  //   signingKeys: [current, previous] (default: PRESENCE_SIGNING_KEY, PRESENCE_SIGNING_KEY_PREVIOUS)
  //   shards: true when the database is a presence_proxy one (docs/scaling.md):
  //     one LISTEN connection per shard, snapshots through the proxy
  constructor(options = {}) {
    super();
    this.options = options;
    this.config = { ...(options.connection || {}), application_name: options.applicationName || 'presence-subscriber' };
    this.keys = options.signingKeys !== undefined ? options.signingKeys.filter(Boolean) : signingKeysFromEnv();
    this.feed = new Feed({
      keys: this.keys,
      onSnapshotNeeded: (room, reason) => this.snapshotNeeded(room, reason),
      onDropped: (reason, topic, payload) => this.emit('dropped', { reason, topic, payload }),
    });
    this.listeners = new Map(); // connstr ('' without shards) -> Listener
    this.pool = new pg.Pool({ ...this.config, application_name: options.poolApplicationName || this.config.application_name, max: 2 });
    this.pool.on('error', (e) => this.warn(`idle connection: ${e.message}`));
    this.waiting = new Set(); // rooms whose snapshot is to be asked
    this.flushing = null;
    this.hasSnapshotMany = false;
    this.closing = false;
    this.started = null;
    this.stats = { reconnects: 0, resyncs: 0, snapshots: 0 };
  }

  warn(message) {
    this.emit('warning', message);
  }

  start() {
    if (!this.started) this.started = this.startOnce();
    return this.started;
  }

  async startOnce() {
    if (!this.options.delivery && !this.options.shards) {
      await this.pool.query('SELECT presence_epoch()'); // loads the library, so that its GUCs read
    }
    const r = await this.pool.query(
      `SELECT current_setting('presence.delivery', true) AS delivery,
              current_setting('presence.channel', true) AS channel,
              to_regprocedure('presence_snapshot_many(text[])') IS NOT NULL AS many`,
    );
    const s = r.rows[0];
    const delivery = this.options.delivery || (s.delivery === 'broadcast' || !s.delivery ? 'broadcast' : 'topic');
    const channel = this.options.channel || s.channel || 'tep_broadcast';
    this.hasSnapshotMany = s.many;
    this.feed.delivery = delivery;
    this.feed.channel = channel;
    const shards = this.options.shards
      ? (await this.pool.query('SELECT connstr FROM presence_shards() ORDER BY shard')).rows.map((x) => x.connstr)
      : [''];
    for (const connstr of shards) {
      const l = new Listener(this, { ...this.config, ...parseConninfo(connstr) }, connstr);
      if (delivery === 'broadcast') l.channels.add(channel);
      this.listeners.set(connstr, l);
    }
    // Without shards the LISTEN connection must come up now; a shard that
    // is down is retried in the background (its rooms wait for it).
    await Promise.all(
      [...this.listeners].map(([connstr, l]) =>
        l.connect().catch((e) => {
          if (!connstr) throw e;
          this.warn(`LISTEN${l.label} failed (${e.message}); retrying`);
          l.lost();
        }),
      ),
    );
  }

  get delivery() {
    return this.feed.delivery;
  }

  // Whether every LISTEN connection is up.
  live() {
    return [...this.listeners.values()].every((l) => l.live);
  }

  // Shard mode: each shard's LISTEN connection and whether it is up.
  shardStatus() {
    return [...this.listeners.values()].map((l) => ({ connstr: l.connstr, live: l.live }));
  }

  // The room of a topic, at once (to attach handlers before the first
  // sync); room.ready resolves at its first 'sync'.
  room(topic) {
    if (typeof topic !== 'string' || topic === '') throw new TypeError('topic must be a non-empty string');
    let room = this.feed.rooms.get(topic);
    if (room) return room;
    room = this.feed.add(topic, null);
    room.subscriber = this;
    room.ready = new Promise((resolve, reject) => {
      room.once('sync', () => resolve(room));
      room.once('failed', reject);
    });
    room.ready.catch(() => {});
    this.join(room).catch((e) => {
      if (room.closed) return;
      room.emit('failed', PresenceError.from(e));
      this.unsubscribe(topic);
    });
    return room;
  }

  // The room of a topic, once live.
  async subscribe(topic) {
    return this.room(topic).ready;
  }

  async join(room) {
    await this.start();
    room.listener = await this.listenerFor(room.topic);
    if (this.feed.delivery === 'topic') {
      room.channel = (await this.pool.query('SELECT presence_channel($1) AS c', [room.topic])).rows[0].c;
      // LISTEN first, so that no diff committed after the snapshot is missed.
      await room.listener.listen(room.channel);
    } else room.channel = this.feed.channel;
    if (!room.closed) room.requestSnapshot('subscribe');
  }

  async unsubscribe(topic) {
    const room = this.feed.rooms.get(topic);
    if (!room) return false;
    this.feed.remove(topic);
    this.waiting.delete(room);
    if (room.listener && this.feed.delivery === 'topic' && ![...this.feed.rooms.values()].some((r) => r.channel === room.channel)) {
      room.listener.unlisten(room.channel);
    }
    room.removeAllListeners();
    return true;
  }

  // Shard mode: the topic's shard (presence_shard on the proxy).
  async listenerFor(topic) {
    if (!this.options.shards) return this.listeners.get('');
    const s = (await this.pool.query('SELECT presence_shard($1) AS s', [topic])).rows[0].s;
    const l = this.listeners.get(s);
    if (!l) throw new PresenceError(`presence_shard(${topic}) is not one of presence_shards()`);
    return l;
  }

  // Rooms ask; one query a turn answers every room that asked.
  snapshotNeeded(room, reason) {
    if (reason !== 'subscribe') this.stats.resyncs++;
    this.waiting.add(room);
    this.schedule();
  }

  schedule() {
    if (this.flushing || this.closing) return;
    this.flushing = this.flush().finally(() => {
      this.flushing = null;
      if (this.waiting.size) this.schedule();
    });
  }

  async flush() {
    for (let attempt = 0; this.waiting.size && !this.closing; ) {
      await new Promise((r) => setImmediate(r));
      // Only rooms whose LISTEN connection is up: the others ask again when it is back.
      const rooms = [...this.waiting].filter((r) => r.listener.live && !r.closed);
      this.waiting.clear();
      if (!rooms.length) return;
      try {
        await this.answer(rooms);
        attempt = 0;
      } catch (e) {
        if (e.code && e.code.startsWith('22')) {
          // A bad topic: that room fails; the others are asked one by one.
          for (const room of rooms) await this.answer([room]).catch((e1) => this.failed(room, e1));
          continue;
        }
        this.warn(`snapshot failed (${e.message}); retrying`);
        for (const room of rooms) if (!room.closed) this.waiting.add(room);
        await sleep(backoff(attempt++));
      }
    }
  }

  async answer(rooms) {
    const asked = new Map(rooms.map((r) => [r.topic, { room: r, request: r.requests }]));
    for (const snap of await this.snapshots([...asked.keys()])) {
      const a = asked.get(snap.topic);
      // A room that asked again meanwhile (a reconnect) waits for that answer.
      if (!a || a.room.closed || a.room.requests !== a.request) continue;
      this.stats.snapshots++;
      a.room.applySnapshot(snap);
    }
  }

  failed(room, e) {
    if (!(e.code && e.code.startsWith('22'))) {
      this.waiting.add(room);
      return;
    }
    room.emit('failed', PresenceError.from(e));
    this.unsubscribe(room.topic);
  }

  // One round trip for any number of topics.
  async snapshots(topics) {
    const q = this.hasSnapshotMany
      ? 'SELECT s FROM presence_snapshot_many($1::text[]) AS s'
      : 'SELECT presence_snapshot(t) AS s FROM unnest($1::text[]) AS t';
    return (await this.pool.query(q, [topics])).rows.map((r) => r.s);
  }

  // Counters: dropped diffs (forged, unsigned, stale, malformed), gaps,
  // epoch changes, reconnects, resyncs, snapshots.
  counters() {
    return { ...this.feed.stats, ...this.stats };
  }

  async close() {
    if (this.closing) return;
    this.closing = true;
    for (const topic of [...this.feed.rooms.keys()]) await this.unsubscribe(topic);
    await Promise.allSettled([...this.listeners.values()].map((l) => l.close()));
    await this.pool.end().catch(() => {});
  }
}

module.exports = { Subscriber };
