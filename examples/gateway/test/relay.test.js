'use strict';
// lib/relay.js without a database: the client's rooms fed by hand.
const test = require('node:test');
const assert = require('node:assert/strict');
const { EventEmitter } = require('events');
const { Relay } = require('../lib/relay');
const { Feed, wire } = require('../../../clients/node');

function setup() {
  const feed = new Feed({ onSnapshotNeeded: () => {} });
  const sub = Object.assign(new EventEmitter(), {
    delivery: 'broadcast',
    listeners: new Map(),
    unsubscribed: [],
    room(topic) {
      return feed.rooms.get(topic) || feed.add(topic, 'tep_broadcast');
    },
    async unsubscribe(topic) {
      this.unsubscribed.push(topic);
      feed.remove(topic);
    },
  });
  const sent = [];
  const relay = new Relay({ subscriber: sub, send: (conn, m) => sent.push([conn.name, m]), sendError: () => {}, log: () => {} });
  return { feed, sub, sent, relay };
}

const conn = (name) => ({ name, subs: new Set() });
const entry = { worker_id: 'w', fd: 1, principal: 'p', ekind: 'human', agent_id: '', state: 'available', note: '', until_ts: 0, meta: {}, since: 1 };
const diff = (seq, kind = 'status') => wire.encode('t', { kind, topic: 't', ...entry, state: 'busy', seq, epoch: 'e' });

test('a socket gets the room as a snapshot once live, then its diffs; a later socket at once; a resync again', () => {
  const { feed, sub, sent, relay } = setup();
  const a = conn('a');
  relay.subscribe(a, 't');
  assert.deepEqual(sent, [], 'nothing before the room is live');
  const room = feed.rooms.get('t');
  room.requestSnapshot('subscribe');
  room.applySnapshot({ topic: 't', seq: 4, epoch: 'e', entries: [entry] });
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0][1], { type: 'snapshot', topic: 't', seq: 4, entries: [{ topic: 't', ...entry }], reason: 'subscribe' });
  feed.notification('tep_broadcast', diff(5));
  assert.deepEqual(sent[1][1].type, 'diff');
  assert.equal(sent[1][1].seq, 5);
  const b = conn('b');
  relay.subscribe(b, 't');
  assert.deepEqual(sent[2], ['b', { type: 'snapshot', topic: 't', seq: 5, entries: [{ topic: 't', ...entry, state: 'busy' }], reason: 'subscribe' }]);
  sub.emit('disconnected', { shard: null });
  assert.deepEqual(sent.slice(3).map(([n, m]) => [n, m.type, m.live]), [['a', 'feed', false], ['b', 'feed', false]]);
  room.reconnected();
  feed.notification('tep_broadcast', diff(7));
  assert.equal(sent.length, 5, 'no diff while the resync is pending');
  room.applySnapshot({ topic: 't', seq: 6, epoch: 'e', entries: [entry] });
  assert.deepEqual(sent.slice(5).map(([n, m]) => [n, m.type, m.seq, m.reason]), [['a', 'snapshot', 7, 'resync'], ['b', 'snapshot', 7, 'resync']],
    'one snapshot each after the buffered diff, which is not relayed on its own');
  relay.unsubscribe(a, 't');
  assert.deepEqual(sub.unsubscribed, []);
  relay.dropSocket(b);
  assert.deepEqual(sub.unsubscribed, ['t'], 'the last socket gone: the room is dropped');
  assert.equal(relay.topics.size, 0);
});
