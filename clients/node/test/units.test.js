'use strict';
// Units without a database: durations, identities, rooms' groupings.
const test = require('node:test');
const assert = require('node:assert');
const { interval, identityOf } = require('../lib/worker');
const { Feed } = require('../lib/room');
const wire = require('../lib/wire');

test('durations: units add up; a bare number, a string or a negative is refused', () => {
  assert.strictEqual(interval({ minutes: 2, seconds: 3 }, 'expires'), '123 seconds');
  assert.strictEqual(interval({ ms: 1500 }, 'lease'), '1.5 seconds');
  assert.throws(() => interval(600, 'expires'), /not a bare number/);
  assert.throws(() => interval('10 minutes', 'expires'), TypeError);
  assert.throws(() => interval({ seconds: -1 }, 'expires'), TypeError);
  assert.throws(() => interval({ fortnights: 1 }, 'expires'), TypeError);
});

test('identities: a principal is a human; { principal, agent } an agent acting for it', () => {
  assert.deepStrictEqual(identityOf('user:1'), { principal: 'user:1', kind: 'human', agentId: '' });
  assert.deepStrictEqual(identityOf({ principal: 'user:1', agent: 'bot' }), { principal: 'user:1', kind: 'agent_for', agentId: 'bot' });
  assert.throws(() => identityOf(42), TypeError);
});

function roomWith(entries) {
  const feed = new Feed({});
  const room = feed.add('t', 'tep_broadcast');
  room.requestSnapshot();
  room.applySnapshot({ topic: 't', seq: 1, epoch: 'e', entries });
  return room;
}

const entry = (o) => ({ worker_id: 'w', agent_id: '', ekind: 'human', state: 'available', note: '', until_ts: 0, meta: {}, ...o });

test('listByPrincipal groups as presence_principals: busy beats available beats blocked, over humans first', () => {
  const room = roomWith([
    entry({ fd: 1, principal: 'ann', state: 'blocked', since: 10, meta: { n: 1 } }),
    entry({ fd: 2, principal: 'ann', state: 'available', since: 20, meta: { n: 2 } }),
    entry({ fd: 3, principal: 'ann', ekind: 'agent_for', agent_id: 'bot', state: 'busy', since: 30 }),
    entry({ fd: 4, principal: 'bob', ekind: 'agent_for', agent_id: 'x', state: 'blocked', since: 5 }),
    entry({ fd: 5, principal: 'bob', ekind: 'agent_for', agent_id: 'x', state: 'busy', since: 6, meta: { m: 1 } }),
  ]);
  const rows = room.listByPrincipal().map(({ entries, ...r }) => ({ ...r, fds: entries.map((e) => e.fd) }));
  assert.deepStrictEqual(rows, [
    { principal: 'bob', humans: 0, agents: 1, connections: 2, state: 'busy', since: 5, meta: { m: 1 }, fds: [4, 5] },
    { principal: 'ann', humans: 2, agents: 1, connections: 3, state: 'available', since: 10, meta: { n: 2 }, fds: [1, 2, 3] },
  ]);
  assert.deepStrictEqual(room.counts(), { entries: 5, humans: 2, agents: 3, principals: 2 });
});

test('wire: the length prefix counts code points; verify tells unsigned from forged', () => {
  const p = wire.encode('🎉', '{"kind":"join"}');
  assert.ok(p.startsWith('10:presence:🎉{'));
  assert.strictEqual(wire.topicOf(p), '🎉');
  const signed = wire.sign('{"a":1}', 'k');
  assert.strictEqual(wire.verify(signed, ['old', 'k']), 'ok');
  assert.strictEqual(wire.verify(signed, ['other']), 'forged');
  assert.strictEqual(wire.verify('{"a":1}', ['k']), 'unsigned');
});
