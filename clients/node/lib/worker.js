'use strict';
// The writing side: one app worker (a gateway process) registered on a
// dedicated connection, connection-bound (its entries leave when the
// process dies) or leased (heartbeats). The app names its sockets with
// strings; the worker gives each an fd. When the dedicated connection is
// lost, it registers the same id again and tracks its live sockets again.

const { EventEmitter } = require('events');
const crypto = require('crypto');
const os = require('os');
const pg = require('pg');
const { backoff, sleep, PresenceError } = require('./util');

const STATES = new Set(['available', 'busy', 'blocked']);
const UNITS = { ms: 0.001, seconds: 1, minutes: 60, hours: 3600, days: 86400 };
const KEEPALIVE_MS = 10000;
// Arguments typed: the server's functions have overloads. The worker id
// comes last, as call() appends it.
const TRACK_ARGS = '$1::text, $2::int, $3::text, $4::text, $5::text, meta => $6::jsonb, worker_id => $7::text';

// A duration as a PostgreSQL interval: { seconds: 30 }, { minutes: 5, seconds: 3 },
// { ms: 1500 }. A bare number is refused: seconds or milliseconds?
function interval(d, what) {
  if (d === null || typeof d !== 'object' || d instanceof Date || Array.isArray(d)) {
    throw new TypeError(`${what} must be a duration such as { seconds: 30 }${what === 'expires' ? ' or a Date' : ''}, not ${typeof d === 'number' ? 'a bare number' : JSON.stringify(d)}`);
  }
  let s = 0;
  for (const [k, v] of Object.entries(d)) {
    if (!(k in UNITS) || !Number.isFinite(v) || v < 0) throw new TypeError(`${what}: bad duration member ${k}`);
    s += v * UNITS[k];
  }
  return `${s} seconds`;
}

// identity: 'user:42' (a human), or { principal: 'user:42', agent: 'summarizer-bot' }
// (an agent acting for user:42).
function identityOf(identity) {
  if (typeof identity === 'string') return { principal: identity, kind: 'human', agentId: '' };
  if (!identity || typeof identity.principal !== 'string') throw new TypeError('identity must be a principal id or { principal, agent }');
  return identity.agent
    ? { principal: identity.principal, kind: 'agent_for', agentId: String(identity.agent) }
    : { principal: identity.principal, kind: 'human', agentId: '' };
}

function defaultId(name) {
  return `${name}-${os.hostname()}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
}

class Worker extends EventEmitter {
  // options:
  //   name: the id's first part (default 'presence'); id: the whole id
  //     (default <name>-<host>-<pid>-<random>)
  //   lease: a duration ({ seconds: 10 }): a leased worker heartbeating every
  //     third of it (required with shards); default: bound to its connection
  //   connection: node-postgres client options (default: libpq's environment)
  //   applicationName (default presence-worker), poolApplicationName (of the
  //   connections the calls go through, if another), poolSize (default 4)
  //   shards: the database is a presence_proxy one (docs/scaling.md)
  constructor(options = {}) {
    super();
    this.name = options.name || 'presence';
    this.id = options.id || defaultId(this.name);
    // After a loss, register a new generated id instead of the same one
    // (an app that tells its clients which worker they are on may prefer it).
    this.newIdOnRestart = Boolean(options.newIdOnRestart) && !options.id;
    if (options.shards && !options.lease) throw new TypeError('shards need a leased worker: pass lease');
    this.lease = options.lease ? interval(options.lease, 'lease') : null;
    this.leaseMs = this.lease ? parseFloat(this.lease) * 1000 : 0;
    this.config = { ...(options.connection || {}), application_name: options.applicationName || 'presence-worker' };
    this.pool = new pg.Pool({ ...this.config, application_name: options.poolApplicationName || this.config.application_name, max: options.poolSize || 4 });
    this.pool.on('error', (e) => this.emit('warning', `idle connection: ${e.message}`));
    this.client = null;
    this.sockets = new Map(); // socket -> { fd, topics: Map<topic, { identity, meta, status }> }
    this.nextFd = 1;
    this.generation = 0; // registrations so far: a call that spans one is retried
    this.ready = null;
    this.stopping = false;
    this.timer = null;
    this.server = null; // what the server's functions accept
  }

  // Registers the worker; resolves to its id.
  async start() {
    if (!this.ready) {
      this.ready = this.register(false);
      this.ready.catch(() => {
        this.ready = null;
      });
    }
    return this.ready;
  }

  async register(again) {
    const c = new pg.Client({ ...this.config, keepAlive: true });
    c.on('error', (e) => this.emit('warning', `worker connection: ${e.message}`));
    await c.connect();
    try {
      if (!this.server) this.server = await this.features(c);
      const args = [this.id];
      let call = 'presence_worker_start($1';
      if (this.lease) call += `, lease => $${args.push(this.lease)}::interval`;
      // Our own id whose connection we lost: take it over even if the old
      // backend has not exited yet.
      if (again && this.server.takeover) call += ', takeover => true';
      await c.query(`SELECT ${call})`, args);
    } catch (e) {
      c.end().catch(() => {});
      throw PresenceError.from(e);
    }
    c.on('end', () => {
      if (this.client === c) this.lost('connection lost');
    });
    this.client = c;
    this.generation++;
    clearInterval(this.timer);
    this.timer = this.lease
      ? setInterval(() => this.heartbeat(c), this.leaseMs / 3)
      : setInterval(() => c.query('SELECT 1').catch(() => {}), KEEPALIVE_MS);
    this.timer.unref();
    return this.id;
  }

  async features(c) {
    const r = await c.query(`
      SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'presence_worker_start'
                        AND 'takeover' = ANY (proargnames)) AS takeover,
             to_regprocedure('presence_set_status(text,integer,text,text,timestamptz,text)') IS NOT NULL AS at,
             to_regprocedure('presence_set_status(text,integer,text,text,interval,text)') IS NOT NULL AS after`);
    return r.rows[0];
  }

  heartbeat(c) {
    c.query('SELECT presence_heartbeat($1) AS ok', [this.id]).then(
      (r) => {
        if (!r.rows[0].ok) c.end().catch(() => {}); // the lease lapsed: register again
      },
      (e) => {
        if (e.code === '22023') c.end().catch(() => {}); // pruned: register again
      },
    );
  }

  // Gives up the dedicated connection and registers again.
  restart(why) {
    const c = this.client;
    this.client = null;
    if (c) c.end().catch(() => {});
    this.lost(why);
  }

  // The dedicated connection is gone (or the lease lapsed): the server
  // drops this worker's entries; register again, then track every live
  // socket again.
  lost(why) {
    if (this.stopping) return;
    this.client = null;
    clearInterval(this.timer);
    this.emit('lost', { id: this.id, reason: why });
    this.ready = (async () => {
      for (let attempt = 0; ; attempt++) {
        await sleep(backoff(attempt));
        if (this.stopping) throw new PresenceError('worker stopped');
        if (this.newIdOnRestart) this.id = defaultId(this.name);
        try {
          await this.register(!this.newIdOnRestart);
          break;
        } catch (e) {
          this.emit('warning', `register again failed: ${e.message}`);
        }
      }
      const failed = [];
      let tracked = 0;
      for (const [socket, s] of this.sockets) {
        for (const [topic, t] of s.topics) {
          try {
            await this.retrack(socket, s.fd, topic, t);
            tracked++;
          } catch (e) {
            const error = PresenceError.from(e);
            failed.push({ socket, topic, error });
            this.emit('retrack_failed', topic, socket, error);
          }
        }
      }
      this.emit('restart', { id: this.id, tracked, failed });
      return this.id;
    })();
    this.ready.catch(() => {});
  }

  async retrack(socket, fd, topic, t) {
    await this.pool.query(`SELECT presence_track(${TRACK_ARGS})`, [
      topic, fd, t.identity.principal, t.identity.kind, t.identity.agentId, JSON.stringify(t.meta), this.id,
    ]);
    if (t.status && (t.status.until === null || t.status.until > Date.now())) {
      const expires = t.status.until === null ? null : new Date(t.status.until);
      const [sql, args] = this.statusQuery(topic, fd, t.status.state, t.status.note, expires);
      await this.pool.query(sql, [...args, this.id]);
    }
  }

  // A call as this worker (the one place calls are sent: where routing a
  // call straight to its topic's shard would go). The worker id is appended to params when the
  // call is sent. One that fails across a new registration (the connection
  // was lost meanwhile) is made again, once, as the new one; one that
  // succeeded under an id given up meanwhile (newIdOnRestart) has that id
  // stopped, as the re-tracking already covered what it did.
  async call(sql, params) {
    if (this.stopping) throw new PresenceError('worker stopped');
    await this.start();
    for (let attempt = 0; ; attempt++) {
      const generation = this.generation;
      const id = this.id;
      try {
        const rows = (await this.pool.query(sql, [...params, id])).rows;
        if (id !== this.id) this.pool.query('SELECT presence_worker_stop($1)', [id]).catch(() => {});
        return rows;
      } catch (e) {
        if (attempt > 0) throw PresenceError.from(e);
        // 55000: the server says this id's connection ended (a loss this
        // process has not noticed yet): register again now.
        if (e.code === '55000' && generation === this.generation && this.client) this.restart('its connection ended (55000)');
        else if (generation === this.generation && this.client) throw PresenceError.from(e);
        await this.ready;
      }
    }
  }

  fdOf(socket) {
    const s = this.sockets.get(socket);
    return s ? s.fd : undefined;
  }

  // Tracks the socket in the topic; true if the entry is new.
  async track(topic, socket, identity, meta = {}) {
    const who = identityOf(identity);
    let s = this.sockets.get(socket);
    if (!s) {
      s = { fd: this.nextFd++, topics: new Map() };
      this.sockets.set(socket, s);
    }
    // Known before the call, so that a registration meanwhile tracks it again.
    const had = s.topics.get(topic);
    s.topics.set(topic, { identity: who, meta, status: had ? had.status : null });
    try {
      const rows = await this.call(`SELECT presence_track(${TRACK_ARGS}) AS new`, [
        topic, s.fd, who.principal, who.kind, who.agentId, JSON.stringify(meta),
      ]);
      return rows[0].new;
    } catch (e) {
      if (had) s.topics.set(topic, had);
      else s.topics.delete(topic);
      throw e;
    }
  }

  // expires: undefined/null (never), a Date, or a duration ({ minutes: 10 }).
  async setStatus(topic, socket, state, note = '', expires = null) {
    if (!STATES.has(state)) throw new TypeError(`state must be one of ${[...STATES].join(', ')}`);
    if (expires !== null && expires !== undefined && !(expires instanceof Date)) interval(expires, 'expires');
    const { s, t } = this.entry(topic, socket);
    const ok = await this.statusCall(topic, s.fd, state, note, expires);
    if (ok && t) {
      const until = expires === null || expires === undefined ? null : expires instanceof Date ? expires.getTime() : Date.now() + parseFloat(interval(expires, 'expires')) * 1000;
      t.status = { state, note, until };
    }
    return ok;
  }

  async statusCall(topic, fd, state, note, expires) {
    await this.start();
    const rows = await this.call(...this.statusQuery(topic, fd, state, note, expires));
    return rows[0].ok;
  }

  // presence_set_status with the expiry as the server takes it: a Date as
  // timestamptz, a duration as interval (as epoch seconds where the server
  // has only that form).
  statusQuery(topic, fd, state, note, expires) {
    let until;
    const args = [topic, fd, state, note];
    if (expires === null || expires === undefined) {
      until = '0::bigint';
    } else if (expires instanceof Date) {
      args.push(expires.toISOString());
      until = this.server.at ? '$5::timestamptz' : 'ceil(extract(epoch FROM $5::timestamptz))::bigint';
    } else {
      args.push(interval(expires, 'expires'));
      until = this.server.after ? '$5::interval' : 'ceil(extract(epoch FROM statement_timestamp() + $5::interval))::bigint';
    }
    return [`SELECT presence_set_status($1::text, $2::int, $3::text, $4::text, ${until}, $${args.length + 1}::text) AS ok`, args];
  }

  async clearStatus(topic, socket) {
    const { s, t } = this.entry(topic, socket);
    const rows = await this.call('SELECT presence_clear_status($1::text, $2::int, $3::text) AS ok', [topic, s.fd]);
    if (t) t.status = null;
    return rows[0].ok;
  }

  async setMeta(topic, socket, meta) {
    const { s, t } = this.entry(topic, socket);
    const rows = await this.call('SELECT presence_set_meta($1::text, $2::int, $3::jsonb, $4::text) AS ok', [topic, s.fd, JSON.stringify(meta)]);
    if (rows[0].ok && t) t.meta = meta;
    return rows[0].ok;
  }

  // Forgotten once the server has done it (a failed call can be made
  // again); a socket left in no topic is forgotten too.
  async untrack(topic, socket) {
    const { s } = this.entry(topic, socket);
    const rows = await this.call('SELECT presence_untrack($1::text, $2::int, $3::text) AS ok', [topic, s.fd]);
    s.topics.delete(topic);
    if (!s.topics.size && this.sockets.get(socket) === s) this.sockets.delete(socket);
    return rows[0].ok;
  }

  // The socket closed: every entry of it leaves (the number that did). It
  // is forgotten first: if the call fails with the connection, the
  // registration that follows does not track it again.
  async untrackSocket(socket) {
    const s = this.sockets.get(socket);
    if (!s) return 0;
    this.sockets.delete(socket);
    const rows = await this.call('SELECT presence_untrack_by_fd($1::int, $2::text) AS n', [s.fd]);
    return Number(rows[0].n);
  }

  entry(topic, socket) {
    const s = this.sockets.get(socket);
    if (!s) throw new PresenceError(`socket ${JSON.stringify(socket)} is not tracked`);
    return { s, t: s.topics.get(topic) };
  }

  // Every entry leaves (the number that did); the connections close.
  async stop() {
    if (this.stopping) return 0;
    this.stopping = true;
    clearInterval(this.timer);
    const c = this.client;
    this.client = null;
    try {
      return c ? Number((await c.query('SELECT presence_worker_stop($1) AS n', [this.id])).rows[0].n) : 0;
    } finally {
      if (c) await c.end().catch(() => {});
      await this.pool.end().catch(() => {});
    }
  }
}

module.exports = { Worker, interval, identityOf };
