'use strict';
// The gateway's subscriptions. Each topic with subscribed sockets is one
// room of the presence client's Subscriber (clients/node), shared by every
// socket of this gateway: the client does the protocol (LISTEN, snapshot,
// buffering, gaps, epochs, reconnects, signatures); this relays it. A
// socket gets the room as a `snapshot` message when it subscribes (at once
// if the room is live), each diff the room applies as a `diff` message, a
// `feed` message when the room's LISTEN connection is lost, and a new
// `snapshot` after every resync.
//
// No I/O of its own: give it the Subscriber and a send(conn, message).

class Relay {
  // o: { subscriber, send(conn, msg), log(...), sendError(conn, error, message, ref, code) }
  constructor(o) {
    this.sub = o.subscriber;
    this.send = o.send;
    this.log = o.log;
    this.sendError = o.sendError;
    this.topics = new Map(); // topic -> { room, conns: Map<conn, { synced }> }
    this.diffsRelayed = 0;
    this.sub.on('disconnected', ({ shard }) => this.feedDown(shard));
    this.sub.on('dropped', ({ reason, topic, payload }) => {
      if (reason === 'malformed') this.log('ignoring a malformed payload:', payload.slice(0, 200));
      else this.log(`dropping a diff on ${topic} without a valid signature (forged?):`, payload.slice(0, 200));
    });
  }

  subscribe(conn, topic) {
    let t = this.topics.get(topic);
    if (!t) {
      t = { room: this.sub.room(topic), conns: new Map() };
      this.topics.set(topic, t);
      this.follow(topic, t);
    }
    t.conns.set(conn, { synced: false, had: false });
    conn.subs.add(topic);
    if (this.live(t.room)) this.snapshotTo(conn, t, 'subscribe');
  }

  live(room) {
    return !room.snapshotPending && room.seq !== null;
  }

  follow(topic, t) {
    const { room } = t;
    room.on('diff', (diff) => {
      for (const [conn, s] of t.conns) {
        if (!s.synced) continue;
        this.diffsRelayed++;
        this.send(conn, { type: 'diff', topic, seq: diff.seq, diff });
      }
    });
    room.on('sync', () => {
      for (const [conn, s] of t.conns) this.snapshotTo(conn, t, s.had ? 'resync' : 'subscribe');
    });
    room.on('failed', (e) => {
      for (const conn of [...t.conns.keys()]) {
        this.sendError(conn, 'bad_topic', e.message, undefined, e.code);
        this.unsubscribe(conn, topic);
      }
    });
  }

  snapshotTo(conn, t, reason) {
    const { room } = t;
    const s = t.conns.get(conn);
    s.synced = true;
    s.had = true;
    const entries = room.list().map((e) => ({ topic: room.topic, ...e }));
    this.send(conn, { type: 'snapshot', topic: room.topic, seq: room.seq, entries, reason });
  }

  // A LISTEN connection (of one shard in shard mode) is down: its rooms'
  // sockets wait for the resync.
  feedDown(shard) {
    for (const [topic, t] of this.topics) {
      if (shard && t.room.listener && t.room.listener.connstr !== shard) continue;
      for (const [conn, s] of t.conns) {
        s.synced = false;
        this.send(conn, { type: 'feed', topic, live: false });
      }
    }
  }

  unsubscribe(conn, topic) {
    const t = this.topics.get(topic);
    conn.subs.delete(topic);
    if (!t || !t.conns.delete(conn)) return false;
    if (t.conns.size === 0) {
      this.topics.delete(topic);
      this.sub.unsubscribe(topic).catch((e) => this.log(`unsubscribe of ${topic} failed:`, e.message));
    }
    return true;
  }

  dropSocket(conn) {
    for (const topic of [...conn.subs]) this.unsubscribe(conn, topic);
  }

  // The channels LISTENed for topics (topic delivery), for /healthz.
  channels() {
    if (this.sub.delivery !== 'topic') return [];
    return [...this.sub.listeners.values()].flatMap((l) => [...l.channels]).sort();
  }
}

module.exports = { Relay };
