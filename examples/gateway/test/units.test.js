'use strict';
// Unit tests of the gateway's token and wire-format helpers: no database,
// no browser, no npm package.  `npm test` here (node --test test/).

const nodeTest = require('node:test');

// Bounded like gateway.test.js's tests (Node 18 has no --test-timeout).
const TEST_TIMEOUT_MS = Number(process.env.E2E_TEST_TIMEOUT_MS || 60000);
const test = (name, fn) => nodeTest.test(name, { timeout: TEST_TIMEOUT_MS }, fn);
const assert = require('node:assert/strict');
const path = require('path');

const GW_DIR = path.resolve(__dirname, '..');
const token = require(path.join(GW_DIR, 'lib/token.js'));
const wire = require(path.join(GW_DIR, 'lib/wire.js'));

test('tokens: signed tokens verify, tampered or unsigned ones do not', () => {
  const secret = 's3cret';
  const t = token.sign({ sub: 'user:alice' }, secret);
  assert.deepEqual(token.verify(t, secret), { principal: 'user:alice', kind: 'human', agent_id: '' });
  const a = token.sign({ sub: 'user:alice', kind: 'agent_for', agent: 'bot' }, secret);
  assert.deepEqual(token.verify(a, secret), { principal: 'user:alice', kind: 'agent_for', agent_id: 'bot' });
  const forged = `${Buffer.from(JSON.stringify({ sub: 'user:root' })).toString('base64url')}.${t.split('.')[1]}`;
  assert.throws(() => token.verify(forged, secret), /signature/);
  assert.throws(() => token.verify(token.sign({ sub: 'user:alice' }, ''), secret), /not signed/);
  assert.throws(() => token.verify(token.sign({ sub: 'user:alice' }, 'other'), secret), /signature/);
  assert.throws(() => token.verify(token.sign({ sub: 'user:a', exp: 10 }, secret), secret, 11), /expired/);
});

test('tokens: demo mode accepts unsigned tokens but still checks their shape', () => {
  assert.equal(token.verify(token.sign({ sub: 'user:bob' }, ''), '').principal, 'user:bob');
  for (const bad of ['', 'a.b.c', '!!!', token.sign({ sub: '' }, ''), token.sign({ sub: 'u', kind: 'robot' }, ''),
    token.sign({ sub: 'u', kind: 'agent_for' }, ''), token.sign({ sub: 'u', agent: 'x' }, ''), token.sign([1], '')]) {
    assert.throws(() => token.verify(bad, ''), token.TokenError, `accepted ${bad}`);
  }
});

test('wire: decode counts characters, not bytes or UTF-16 units', () => {
  const diff = { kind: 'join', topic: 'r:☕𝄞', principal: 'p', ekind: 'human', agent_id: '', fd: 1, since: 1,
    state: 'available', note: '{"x":1}', until_ts: 0, seq: 7, worker_id: 'w', epoch: '0123456789abcdef' };
  const payload = wire.encode('presence:r:☕𝄞', diff);
  assert.ok(payload.startsWith('13:presence:r:☕𝄞{'), payload);
  assert.deepEqual(wire.decodePresence(payload), { topic: 'r:☕𝄞', diff, json: JSON.stringify(diff) });
  const spec = '19:presence:room:lobby{"kind":"join","topic":"room:lobby","principal":"user:42","ekind":"human","agent_id":"","fd":5,"since":1716392400,"state":"available","note":"","until_ts":0,"seq":1,"worker_id":"gw-1","epoch":"72f97ee5803b6d4f"}';
  const d = wire.decodePresence(spec);
  assert.equal(d.topic, 'room:lobby');
  assert.equal(d.diff.seq, 1);
  // topics with digits and colons right after the prefix
  assert.equal(wire.decodePresence(wire.encode('presence:12:{x}', { ...diff, topic: '12:{x}' })).topic, '12:{x}');
});

test('wire: other topics are skipped and malformed payloads throw', () => {
  assert.equal(wire.decodePresence('4:chat{"a":1}'), null);
  for (const bad of ['', 'x', ':presence:a{}', '99:presence:a{}', '10:presence:a{"kind":"join"}',
    '10:presence:a{"kind":"nope","seq":1}', '10:presence:anot json', '10:presence:a[1]',
    '10:presence:a{"kind":"join","seq":1,"topic":"b"}', '-1:presence:a{}',
    '10:presence:a{"kind":"join","seq":1,"topic":"a"}']) {
    assert.throws(() => wire.decodePresence(bad), Error, `accepted ${bad}`);
  }
});

test('wire: a signature verifies under its key only, and covers every byte', () => {
  const json = '{"kind":"leave","topic":"r:☕","principal":"user:alice","seq":3,"worker_id":"w","epoch":"0123456789abcdef"}';
  const signed = wire.sign(json, 'k3y');
  assert.match(signed, /,"sig":"[0-9a-f]{64}"\}$/);
  assert.ok(wire.signedBy(signed, 'k3y'));
  assert.ok(!wire.signedBy(signed, 'k3y!'), 'another key');
  assert.ok(!wire.signedBy(json, 'k3y'), 'no signature');
  assert.ok(!wire.signedBy(signed.replace('"seq":3', '"seq":4'), 'k3y'), 'a changed seq');
  assert.ok(!wire.signedBy(signed.replace('☕', 'c'), 'k3y'), 'a changed character');
  // the server's own: HMAC-SHA256('k3y', json) computed by OpenSSL's reference
  const mac = require('crypto').createHmac('sha256', 'k3y').update(Buffer.from(json, 'utf8')).digest('hex');
  assert.equal(signed, `${json.slice(0, -1)},"sig":"${mac}"}`);
});
