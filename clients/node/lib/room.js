'use strict';
// The subscriber's protocol, without I/O (docs/protocol.md, "Subscribing";
// test/conformance/README.md states it rule by rule). A Feed routes
// notifications to Rooms and checks signatures; a Room keeps one topic's
// entries, seq and epoch, buffers diffs while a snapshot is outstanding, and
// asks for a snapshot (through the Feed's onSnapshotNeeded) on a gap,
// another epoch, or a reconnect. clients/node's Subscriber does the I/O.

const { EventEmitter } = require('events');
const wire = require('./wire');

// The nine keys of an entry as the diffs name them, plus since.
const ENTRY_KEYS = ['worker_id', 'fd', 'principal', 'ekind', 'agent_id', 'state', 'note', 'until_ts', 'meta'];
const STATE_RANK = { busy: 3, available: 2, blocked: 1 };

const keyOf = (e) => `${e.worker_id}\u0000${e.fd}`;

// Code point order, as PostgreSQL's "C" collation and Python compare.
function compareStrings(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i].codePointAt(0) - y[i].codePointAt(0);
  }
  return x.length - y.length;
}

function byKey(a, b) {
  return compareStrings(a.worker_id, b.worker_id) || a.fd - b.fd;
}

function bySince(a, b) {
  return a.since - b.since || byKey(a, b);
}

function entryOf(o) {
  const e = {};
  for (const k of ENTRY_KEYS) e[k] = o[k];
  e.meta = o.meta && typeof o.meta === 'object' ? o.meta : {};
  e.since = o.since;
  return e;
}

// JSON equality of two values (object key order ignored).
function sameJson(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && sameJson(a[k], b[k]));
}

function sameEntry(a, b) {
  return ENTRY_KEYS.every((k) => sameJson(a[k], b[k]));
}

class Room extends EventEmitter {
  constructor(feed, topic, channel) {
    super();
    this.feed = feed;
    this.topic = topic;
    this.channel = channel;
    this.entries = new Map();
    this.seq = null;
    this.epoch = null;
    this.snapshotPending = false;
    this.buffer = [];
    this.replaying = false;
    this.requests = 0; // snapshot requests made: an answer to an older one is ignored
    this.closed = false;
  }

  // Asks for a snapshot; diffs are buffered until it comes.
  requestSnapshot(reason) {
    this.snapshotPending = true;
    this.requests++;
    this.feed.onSnapshotNeeded(this, reason);
  }

  // The LISTEN connection was lost and is back: what was buffered is
  // unreliable; a fresh snapshot tells what changed meanwhile.
  reconnected() {
    this.buffer = [];
    this.requestSnapshot('reconnect');
  }

  receive(diff) {
    if (this.snapshotPending) {
      this.buffer.push(diff);
      return;
    }
    if (diff.epoch === this.epoch && diff.seq <= this.seq) {
      this.feed.stats.stale++;
      return;
    }
    if (diff.epoch !== this.epoch || diff.seq !== this.seq + 1) {
      // Not buffered: the snapshot asked for now is taken after this diff
      // arrived, so it has the diff if the diff is real (and a bogus one
      // cannot make the room resync again and again).
      if (diff.epoch !== this.epoch) this.feed.stats.epochChanges++;
      else this.feed.stats.gaps++;
      this.requestSnapshot(diff.epoch !== this.epoch ? 'epoch' : 'gap');
      return;
    }
    this.apply(diff);
  }

  apply(diff) {
    this.seq = diff.seq;
    // The diff itself, for relays; not while a snapshot's buffer is replayed
    // (the 'sync' that follows carries the result).
    if (!this.replaying) this.emit('diff', diff);
    const entry = entryOf(diff);
    const key = keyOf(entry);
    const old = this.entries.get(key);
    if (diff.kind === 'leave') {
      if (!old) return;
      this.entries.delete(key);
      this.emit('leave', old);
    } else if (old) {
      this.entries.set(key, entry);
      this.emit('update', entry, old);
    } else {
      this.entries.set(key, entry);
      this.emit('join', entry);
    }
  }

  // The answer to the outstanding snapshot request: replace, emit what
  // changed, then replay the buffer.
  applySnapshot(snap) {
    const next = new Map();
    for (const e of snap.entries) next.set(keyOf(e), entryOf(e));
    const keys = [...new Set([...this.entries.keys(), ...next.keys()])]
      .map((k) => next.get(k) || this.entries.get(k))
      .sort(byKey)
      .map(keyOf);
    const old = this.entries;
    this.entries = next;
    this.seq = snap.seq;
    this.epoch = snap.epoch;
    this.snapshotPending = false;
    for (const k of keys) {
      const a = old.get(k);
      const b = next.get(k);
      if (a && !b) this.emit('leave', a);
      else if (!a && b) this.emit('join', b);
      else if (!sameEntry(a, b)) this.emit('update', b, a);
    }
    const buffered = this.buffer;
    this.buffer = [];
    this.replaying = true;
    try {
      // A gap or another epoch in the buffer asks for another snapshot,
      // which has the rest of the buffer (it all arrived before).
      for (const d of buffered) {
        if (this.snapshotPending) break;
        this.receive(d);
      }
    } finally {
      this.replaying = false;
    }
    this.emit('sync', this.list());
  }

  // Entries oldest first, as presence_list_global orders them.
  list() {
    return [...this.entries.values()].sort(bySince);
  }

  // One item per principal, as presence_principals groups them: humans
  // (human connections), agents (distinct agent ids acting for it),
  // connections, state (busy beats available beats blocked, over its human
  // connections, else its agents'), since (oldest), meta (newest human
  // entry's, else newest agent entry's), and its entries.
  listByPrincipal() {
    const groups = new Map();
    for (const e of this.list()) {
      if (!groups.has(e.principal)) groups.set(e.principal, []);
      groups.get(e.principal).push(e);
    }
    return [...groups].map(([principal, entries]) => {
      const humans = entries.filter((e) => e.ekind === 'human');
      const ruling = humans.length ? humans : entries;
      const state = ruling.reduce((s, e) => (STATE_RANK[e.state] > STATE_RANK[s] ? e.state : s), ruling[0].state);
      return {
        principal,
        humans: humans.length,
        agents: new Set(entries.filter((e) => e.ekind === 'agent_for').map((e) => e.agent_id)).size,
        connections: entries.length,
        state,
        since: entries[0].since,
        meta: ruling[ruling.length - 1].meta,
        entries,
      };
    });
  }

  // Counts by kind: entries, humans and agents (entries of each kind), and
  // principals.
  counts() {
    const all = [...this.entries.values()];
    const humans = all.filter((e) => e.ekind === 'human').length;
    return { entries: all.length, humans, agents: all.length - humans, principals: new Set(all.map((e) => e.principal)).size };
  }
}

// Routes notifications to rooms by channel and topic; checks signatures.
class Feed {
  // o: { delivery: 'broadcast'|'topic', channel (broadcast channel),
  //      keys: [current, previous] (empty: not checked), onSnapshotNeeded(room, reason) }
  constructor(o) {
    this.delivery = o.delivery || 'broadcast';
    this.channel = o.channel || 'tep_broadcast';
    this.keys = (o.keys || []).filter(Boolean);
    this.onSnapshotNeeded = o.onSnapshotNeeded || (() => {});
    this.onDropped = o.onDropped || (() => {}); // (reason, topic, payload): forged, unsigned, malformed
    this.rooms = new Map(); // topic -> Room
    this.stats = { forged: 0, unsigned: 0, stale: 0, malformed: 0, gaps: 0, epochChanges: 0 };
  }

  // The room of a topic, whose diffs come on channel: the broadcast
  // channel, or presence_channel(topic) in topic delivery (null: not yet known).
  add(topic, channel) {
    const room = new Room(this, topic, channel);
    this.rooms.set(topic, room);
    return room;
  }

  remove(topic) {
    const room = this.rooms.get(topic);
    if (room) room.closed = true;
    this.rooms.delete(topic);
  }

  notification(channel, payload) {
    let parts;
    try {
      parts = wire.split(payload);
    } catch (e) {
      this.stats.malformed++;
      this.onDropped('malformed', null, payload);
      return;
    }
    const { dtopic, json } = parts;
    const room = dtopic.startsWith(wire.PREFIX) ? this.rooms.get(dtopic.slice(wire.PREFIX.length)) : undefined;
    if (!room || channel !== room.channel) return;
    if (this.keys.length) {
      const v = wire.verify(json, this.keys);
      if (v !== 'ok') {
        this.stats[v]++;
        this.onDropped(v, room.topic, payload);
        return;
      }
    }
    let d;
    try {
      d = wire.decode(payload);
    } catch (e) {
      this.stats.malformed++;
      this.onDropped('malformed', room.topic, payload);
      return;
    }
    room.receive(d.diff);
  }

  reconnected() {
    for (const room of this.rooms.values()) room.reconnected();
  }
}

module.exports = { Feed, Room, ENTRY_KEYS, byKey, compareStrings, sameJson };
