'use strict';
// Shard mode of the gateway (PRESENCE_SHARDS=1; docs/scaling.md). The
// database the gateway calls is a presence_proxy database: calls go through
// it unchanged, but each shard NOTIFYs the diffs of its own topics. So this
// keeps one LISTEN connection per shard (presence_shards() on the proxy),
// knows each topic's shard (presence_shard(topic)), and reports a shard's
// feed going down and coming back, so that only that shard's subscriptions
// wait and resync.

const pg = require('pg');
const { parseConninfo } = require('./conninfo');

class ShardFeeds {
  // o: { pool, config(role) (base client options), channel, topicDelivery,
  //      onNotification(msg), onDown(shard), onUp(shard), log, backoff(n),
  //      sleep(ms), stopping() }
  constructor(o) {
    this.o = o;
    this.feeds = new Map(); // connstr -> { client, live, attempt, keepalive }
    this.shardOfTopic = new Map(); // topic -> Promise<connstr>
    this.resolved = new Map(); // topic -> connstr, once known
  }

  // Connects to every shard; one that is down now is retried in the
  // background (its topics' snapshots wait for it).
  async start() {
    const r = await this.o.pool.query('SELECT connstr FROM presence_shards()');
    if (r.rows.length === 0) throw new Error('presence_shards() is empty: is this a presence_proxy database?');
    await Promise.all(
      r.rows.map(async ({ connstr }) => {
        const f = { client: null, live: false, attempt: 0, keepalive: null };
        this.feeds.set(connstr, f);
        try {
          await this.connect(connstr, f);
        } catch (e) {
          this.o.log(`shard ${connstr}: LISTEN failed (${e.message}); retrying`);
          this.lost(connstr, f, null);
        }
      }),
    );
  }

  async connect(connstr, f) {
    const c = new pg.Client({ ...this.o.config('listen'), ...parseConninfo(connstr) });
    c.on('error', (e) => this.o.log(`shard ${connstr}: listen connection error:`, e.message));
    c.on('notification', (m) => {
      if (f.client === c) this.o.onNotification(m);
    });
    await c.connect();
    try {
      if (!this.o.topicDelivery) await c.query(`LISTEN ${c.escapeIdentifier(this.o.channel)}`);
    } catch (e) {
      c.end().catch(() => {});
      throw e;
    }
    c.on('end', () => {
      if (f.client === c) this.lost(connstr, f, c);
    });
    f.client = c;
    f.live = true;
    f.attempt = 0;
    clearInterval(f.keepalive);
    f.keepalive = setInterval(() => c.query('SELECT 1').catch(() => {}), 10000);
  }

  lost(connstr, f, c) {
    if (this.o.stopping()) return;
    if (c) this.o.log(`shard ${connstr}: LISTEN connection lost; reconnecting with backoff`);
    f.client = null;
    f.live = false;
    clearInterval(f.keepalive);
    if (c) this.o.onDown(connstr);
    (async () => {
      while (!this.o.stopping()) {
        await this.o.sleep(this.o.backoff(f.attempt++));
        try {
          await this.connect(connstr, f);
          this.o.log(`shard ${connstr}: LISTEN connection back; resyncing its subscriptions`);
          this.o.onUp(connstr);
          return;
        } catch (e) {
          this.o.log(`shard ${connstr}: LISTEN reconnect failed:`, e.message);
        }
      }
    })();
  }

  // The shard's connection string, asked once per topic.
  shardOf(topic) {
    let p = this.shardOfTopic.get(topic);
    if (!p) {
      p = this.o.pool.query('SELECT presence_shard($1) AS s', [topic]).then((r) => {
        this.resolved.set(topic, r.rows[0].s);
        return r.rows[0].s;
      });
      p.catch(() => this.shardOfTopic.delete(topic));
      this.shardOfTopic.set(topic, p);
    }
    return p;
  }

  // The live LISTEN connection of the topic's shard, or an error.
  async clientFor(topic) {
    const s = await this.shardOf(topic);
    const f = this.feeds.get(s);
    if (!f) throw new Error(`presence_shard(${topic}) = ${s} is not one of presence_shards()`);
    if (!f.live) throw new Error(`the LISTEN connection to shard ${s} is down`);
    return f.client;
  }

  // The topic's shard if already known.
  topicShard(topic) {
    return this.resolved.get(topic);
  }

  // A topic no longer subscribed: its shard is asked again next time.
  forget(topic) {
    this.shardOfTopic.delete(topic);
    this.resolved.delete(topic);
  }

  allLive() {
    return [...this.feeds.values()].every((f) => f.live);
  }

  status() {
    return [...this.feeds].map(([connstr, f]) => ({ connstr, live: f.live }));
  }

  stop() {
    return Promise.allSettled(
      [...this.feeds.values()].map((f) => {
        clearInterval(f.keepalive);
        return f.client && f.client.end();
      }),
    );
  }
}

module.exports = { ShardFeeds };
