'use strict';
// Runs every test/conformance/*.json case (format and rules:
// test/conformance/README.md) against the subscriber's protocol.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { Feed, ENTRY_KEYS, byKey } = require('../lib/room');

const DIR = path.join(__dirname, '..', '..', '..', 'test', 'conformance');
const cases = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

function project(entries) {
  return [...entries].sort(byKey).map((e) => Object.fromEntries(ENTRY_KEYS.map((k) => [k, e[k]])));
}

test('there are conformance cases', () => assert.ok(cases.length >= 10));

for (const file of cases) {
  const c = JSON.parse(fs.readFileSync(path.join(DIR, file), 'utf8'));
  test(`conformance: ${c.name}`, () => {
    let pending = 0;
    const feed = new Feed({
      delivery: c.delivery,
      channel: c.delivery === 'broadcast' ? c.channel : undefined,
      keys: c.keys ? [c.keys.current, c.keys.previous] : [],
      onSnapshotNeeded: () => pending++,
    });
    let room = null;
    let events = [];
    c.steps.forEach((step, i) => {
      events = [];
      const where = `${c.name} step ${i} (${step.op})`;
      switch (step.op) {
        case 'subscribe':
          room = feed.add(c.topic, c.channel);
          for (const ev of ['join', 'leave', 'update']) room.on(ev, (e) => events.push({ event: ev, worker_id: e.worker_id, fd: e.fd }));
          room.on('sync', () => events.push({ event: 'sync' }));
          room.requestSnapshot('subscribe');
          break;
        case 'notify':
          feed.notification(step.channel, step.payload);
          break;
        case 'snapshot':
          assert.ok(room.snapshotPending, `${where}: a snapshot with none outstanding`);
          room.applySnapshot(step.response);
          break;
        case 'reconnect':
          feed.reconnected();
          break;
        default:
          assert.fail(`${where}: unknown op`);
      }
      const x = step.expect;
      if (!x) return;
      if ('entries' in x) assert.deepStrictEqual(project(room ? room.list() : []), x.entries, `${where}: entries`);
      if ('seq' in x) assert.strictEqual(room.seq, x.seq, `${where}: seq`);
      if ('epoch' in x) assert.strictEqual(room.epoch, x.epoch, `${where}: epoch`);
      if ('snapshot_pending' in x) assert.strictEqual(room.snapshotPending, x.snapshot_pending, `${where}: snapshot_pending`);
      if ('events' in x) assert.deepStrictEqual(events, x.events, `${where}: events`);
      if ('dropped' in x) {
        const { forged, unsigned, stale, malformed } = feed.stats;
        assert.deepStrictEqual({ forged, unsigned, stale, malformed }, x.dropped, `${where}: dropped`);
      }
    });
    assert.ok(pending > 0);
  });
}
