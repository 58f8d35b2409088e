#!/usr/bin/env node
'use strict';
// Writes test/conformance/*.json from a live server: every payload is a
// NOTIFY payload the server sent, every snapshot a presence_snapshot answer,
// every expected `entries` presence_list_global at that point. Events,
// counters and what a case leaves out or alters are written here, by hand,
// from the rules in README.md.
//
// Needs a server with presence installed and preloaded, as a superuser
// (libpq environment), and clients/node's npm packages:
//   /work/tools/sandbox ... or any shell:
//   . test/lib/cluster.sh && cluster_start /tmp/conf 55439 "shared_preload_libraries = 'presence'"
//   psql -c 'CREATE EXTENSION presence' && node test/conformance/generate.js
// It writes the signing key into a file in the data directory and points
// presence.signing_key_file at it with ALTER SYSTEM (and resets it), and drops
// and creates the extension once (for a new epoch): use a scratch cluster.

const fs = require('fs');
const { execFileSync } = require('child_process');
const path = require('path');
const { Client } = require('../../clients/node/node_modules/pg');
const wire = require('../../clients/node/lib/wire');

const OUT = __dirname;
const KEY = 'conformance-current-key';
const PREVIOUS = 'conformance-previous-key';
const BROADCAST = 'tep_broadcast';

let w; // writer
let l; // listener
const inbox = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function sql(text, params) {
  return (await w.query(text, params)).rows;
}

// The next n notifications, in arrival order.
async function take(n) {
  for (let i = 0; inbox.length < n; i++) {
    if (i > 200) throw new Error(`expected ${n} notifications, have ${inbox.length}`);
    await sleep(25);
  }
  return inbox.splice(0, n);
}

async function one() {
  return (await take(1))[0];
}

async function snapshot(topic) {
  return (await sql('SELECT presence_snapshot($1) AS s', [topic]))[0].s;
}

async function entries(topic) {
  const r = await sql(
    `SELECT coalesce(json_agg(json_build_object('worker_id', worker_id, 'fd', fd, 'principal', principal_id,
              'ekind', kind, 'agent_id', agent_id, 'state', status_state, 'note', status_note,
              'until_ts', status_until, 'meta', meta) ORDER BY worker_id COLLATE "C", fd), '[]') AS e
       FROM presence_list_global($1)`,
    [topic],
  );
  return r[0].e;
}

// The key in a file of the data directory, mode 0600 and (as root) owned
// by the server's user, as presence.signing_key_file requires: this runs on
// the server's machine. '' signs no more.
async function setKey(key) {
  if (key === '') {
    await sql('ALTER SYSTEM RESET presence.signing_key_file');
  } else {
    const dir = (await sql('SHOW data_directory'))[0].data_directory;
    const file = `${dir}/presence-conformance.key`;
    fs.rmSync(file, { force: true });
    fs.writeFileSync(file, `${key}\n`, { mode: 0o600 });
    if (process.getuid() === 0) execFileSync('chown', ['postgres:', file]);
    await sql(`ALTER SYSTEM SET presence.signing_key_file = '${file}'`);
  }
  await sql('SELECT pg_reload_conf()');
  await sleep(300);
  await w.query('SELECT 1'); // the writer takes the reload at its next command
}

const drops = () => ({ forged: 0, unsigned: 0, stale: 0, malformed: 0 });
const ev = (event, worker_id, fd) => (event === 'sync' ? { event } : { event, worker_id, fd });

function newCase(name, description, topic, opts = {}) {
  return {
    name,
    description,
    topic,
    delivery: opts.delivery || 'broadcast',
    channel: opts.channel || BROADCAST,
    keys: opts.keys || null,
    steps: [],
  };
}

function notify(n) {
  return { op: 'notify', channel: n.channel, payload: n.payload };
}

function write(c) {
  fs.writeFileSync(path.join(OUT, `${c.name}.json`), `${JSON.stringify(c, null, 2)}\n`);
  console.log(`wrote ${c.name}.json (${c.steps.length} steps)`);
}

const track = (topic, worker, fd, principal, extra = '') =>
  sql(`SELECT presence_track($1, $2, $3, worker_id => $4${extra})`, [topic, fd, principal, worker]);

// ---------------------------------------------------------------------------

async function basic() {
  const t = 'room:basic';
  const c = newCase('basic', 'a snapshot, then a join, status and meta changes (updates, never leave + join), a clear and a leave', t);
  await track(t, 'gw-a', 1, 'user:42', `, meta => '{"name": "Ann"}'`);
  await one();
  const d = drops();
  c.steps.push({ op: 'subscribe', expect: { entries: [], seq: null, epoch: null, snapshot_pending: true, events: [], dropped: d } });
  const s = await snapshot(t);
  c.steps.push({
    op: 'snapshot',
    response: s,
    expect: { entries: await entries(t), seq: 1, epoch: s.epoch, snapshot_pending: false, events: [ev('join', 'gw-a', 1), ev('sync')], dropped: d },
  });
  const actions = [
    [() => track(t, 'gw-b', 2, 'user:42', `, kind => 'agent_for', agent_id => 'summarizer-bot'`), ev('join', 'gw-b', 2)],
    [() => sql(`SELECT presence_set_status($1, 2, 'busy', 'summarizing', 4102444800, 'gw-b')`, [t]), ev('update', 'gw-b', 2)],
    [() => sql(`SELECT presence_set_meta($1, 1, '{"name": "Ann", "page": "/docs"}', 'gw-a')`, [t]), ev('update', 'gw-a', 1)],
    [() => sql(`SELECT presence_clear_status($1, 2, 'gw-b')`, [t]), ev('update', 'gw-b', 2)],
    [() => sql(`SELECT presence_untrack($1, 1, 'gw-a')`, [t]), ev('leave', 'gw-a', 1)],
  ];
  let seq = 1;
  for (const [act, e] of actions) {
    await act();
    c.steps.push({ ...notify(await one()), expect: { entries: await entries(t), seq: ++seq, epoch: s.epoch, snapshot_pending: false, events: [e], dropped: d } });
  }
  write(c);
}

async function snapshotBuffer() {
  const t = 'room:buffer';
  const c = newCase(
    'snapshot_buffer',
    'diffs that arrive while the snapshot is outstanding are buffered: the one the snapshot already has (seq 2) is dropped as stale, the newer ones (3, 4) applied after it',
    t,
  );
  await track(t, 'gw-a', 1, 'user:1');
  await one();
  const d = drops();
  c.steps.push({ op: 'subscribe', expect: { snapshot_pending: true, entries: [], seq: null } });
  await track(t, 'gw-a', 2, 'user:2');
  const n2 = await one();
  const s = await snapshot(t);
  await track(t, 'gw-b', 3, 'user:3');
  const n3 = await one();
  await sql(`SELECT presence_set_status($1, 1, 'blocked', 'rate limited', 0, 'gw-a')`, [t]);
  const n4 = await one();
  for (const n of [n2, n3, n4]) c.steps.push({ ...notify(n), expect: { entries: [], seq: null, snapshot_pending: true, events: [], dropped: d } });
  c.steps.push({
    op: 'snapshot',
    response: s,
    expect: {
      entries: await entries(t),
      seq: 4,
      epoch: s.epoch,
      snapshot_pending: false,
      events: [ev('join', 'gw-a', 1), ev('join', 'gw-a', 2), ev('join', 'gw-b', 3), ev('update', 'gw-a', 1), ev('sync')],
      dropped: { ...d, stale: 1 },
    },
  });
  write(c);
}

async function duplicates() {
  const t = 'room:dup';
  const c = newCase('duplicates_and_stale', 'a live room given the same diff twice and older diffs again: each is dropped as stale', t);
  await track(t, 'gw-a', 1, 'user:1');
  const n1 = await one();
  await track(t, 'gw-a', 2, 'user:2');
  const n2 = await one();
  const s = await snapshot(t);
  const e2 = await entries(t);
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: s, expect: { entries: e2, seq: 2, snapshot_pending: false, events: [ev('join', 'gw-a', 1), ev('join', 'gw-a', 2), ev('sync')] } });
  await sql(`SELECT presence_untrack($1, 1, 'gw-a')`, [t]);
  const n3 = await one();
  const e3 = await entries(t);
  await sql(`SELECT presence_set_status($1, 2, 'busy', '', 0, 'gw-a')`, [t]);
  const n4 = await one();
  const e4 = await entries(t);
  const d = drops();
  c.steps.push({ ...notify(n3), expect: { entries: e3, seq: 3, events: [ev('leave', 'gw-a', 1)], dropped: { ...d } } });
  d.stale++;
  c.steps.push({ ...notify(n3), expect: { entries: e3, seq: 3, events: [], dropped: { ...d } } });
  d.stale++;
  c.steps.push({ ...notify(n1), expect: { entries: e3, seq: 3, events: [], dropped: { ...d } } });
  d.stale++;
  c.steps.push({ ...notify(n2), expect: { entries: e3, seq: 3, events: [], dropped: { ...d } } });
  c.steps.push({ ...notify(n4), expect: { entries: e4, seq: 4, snapshot_pending: false, events: [ev('update', 'gw-a', 2)], dropped: { ...d } } });
  d.stale++;
  c.steps.push({ ...notify(n4), expect: { entries: e4, seq: 4, snapshot_pending: false, events: [], dropped: { ...d } } });
  write(c);
}

async function gap() {
  const t = 'room:gap';
  const c = newCase(
    'gap',
    'the diff with seq 3 is left out: seq 4 is a gap, so the client asks for a snapshot (dropping 4, which the snapshot has) and buffers 5; the snapshot (seq 4) brings 3 and 4, then 5 is applied',
    t,
  );
  await track(t, 'gw-a', 1, 'user:1');
  await one();
  const s1 = await snapshot(t);
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: s1, expect: { seq: 1, snapshot_pending: false, events: [ev('join', 'gw-a', 1), ev('sync')] } });
  await track(t, 'gw-a', 2, 'user:2');
  const n2 = await one();
  const e2 = await entries(t);
  c.steps.push({ ...notify(n2), expect: { entries: e2, seq: 2, events: [ev('join', 'gw-a', 2)] } });
  await sql(`SELECT presence_untrack($1, 1, 'gw-a')`, [t]);
  await one(); // seq 3: left out
  await sql(`SELECT presence_set_status($1, 2, 'busy', 'on a call', 0, 'gw-a')`, [t]);
  const n4 = await one();
  const s4 = await snapshot(t);
  await track(t, 'gw-b', 5, 'user:5');
  const n5 = await one();
  const e5 = await entries(t);
  c.steps.push({ ...notify(n4), expect: { entries: e2, seq: 2, snapshot_pending: true, events: [] } });
  c.steps.push({ ...notify(n5), expect: { entries: e2, seq: 2, snapshot_pending: true, events: [] } });
  c.steps.push({
    op: 'snapshot',
    response: s4,
    expect: {
      entries: e5,
      seq: 5,
      snapshot_pending: false,
      events: [ev('leave', 'gw-a', 1), ev('update', 'gw-a', 2), ev('join', 'gw-b', 5), ev('sync')],
      dropped: drops(),
    },
  });
  write(c);
}

async function bogusGap() {
  const t = 'room:bogus-gap';
  const c = newCase(
    'bogus_gap',
    'no keys: a forged diff with seq 5 of a room at seq 1 is a gap: one snapshot is asked, the forged diff dropped; the snapshot (seq 1) leaves the room live, asking for no other; a real diff (seq 2) applies',
    t,
  );
  await track(t, 'gw-a', 1, 'user:1');
  const n1 = await one();
  const s = await snapshot(t);
  const e1 = await entries(t);
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: s, expect: { entries: e1, seq: 1, snapshot_pending: false, events: [ev('join', 'gw-a', 1), ev('sync')] } });
  const forged = { ...JSON.parse(wire.split(n1.payload).json), worker_id: 'evil', fd: 666, principal: 'intruder', seq: 5 };
  c.steps.push({ op: 'notify', channel: BROADCAST, payload: wire.encode(t, JSON.stringify(forged)), expect: { entries: e1, seq: 1, snapshot_pending: true, events: [] } });
  c.steps.push({ op: 'snapshot', response: await snapshot(t), expect: { entries: e1, seq: 1, snapshot_pending: false, events: [ev('sync')], dropped: drops() } });
  await track(t, 'gw-a', 2, 'user:2');
  c.steps.push({ ...notify(await one()), expect: { entries: await entries(t), seq: 2, snapshot_pending: false, events: [ev('join', 'gw-a', 2)] } });
  write(c);
}

async function leaveUnknown() {
  const t = 'room:leave-unknown';
  const c = newCase(
    'leave_unknown',
    'a leave of an entry the room never had (a row Tep wrote directly, which sends no diff, then presence_untrack): the seq advances, nothing else',
    t,
  );
  await track(t, 'gw-a', 1, 'user:1');
  await one();
  const s = await snapshot(t);
  const e = await entries(t);
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: s, expect: { entries: e, seq: 1, events: [ev('join', 'gw-a', 1), ev('sync')] } });
  await sql(
    `INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
     VALUES ('gw-a', $1, 9, 'user:9', extract(epoch FROM now())::bigint)`,
    [t],
  );
  await sql(`SELECT presence_untrack($1, 9, 'gw-a')`, [t]);
  c.steps.push({ ...notify(await one()), expect: { entries: e, seq: 2, snapshot_pending: false, events: [], dropped: drops() } });
  write(c);
}

async function otherTopics() {
  const t = 'room:mine';
  const c = newCase(
    'other_topics',
    "on the broadcast channel: diffs of other topics (one whose name starts with this one's), another Tep broadcast topic and a notification on another channel are ignored; malformed payloads are counted",
    t,
  );
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: await snapshot(t), expect: { entries: [], seq: 0, events: [ev('sync')] } });
  await track('room:mine2', 'gw-a', 1, 'user:1');
  await track('room:other', 'gw-a', 1, 'user:1');
  await sql(`SELECT pg_notify('${BROADCAST}', '9:chat:room{"text":"hi","seq":1}')`);
  await sql(`SELECT pg_notify('elsewhere', $1)`, [wire.encode(t, '{"kind":"join"}')]);
  for (const n of await take(4)) c.steps.push({ ...notify(n), expect: { entries: [], seq: 0, events: [], dropped: drops() } });
  await track(t, 'gw-a', 1, 'user:1');
  const n1 = await one();
  const d = drops();
  d.malformed++;
  c.steps.push({ op: 'notify', channel: BROADCAST, payload: wire.encode(t, '{"kind":"join",'), expect: { seq: 0, events: [], dropped: { ...d } } });
  d.malformed++;
  c.steps.push({ op: 'notify', channel: BROADCAST, payload: n1.payload.replace('"kind":"join"', '"kind":"arrive"'), expect: { seq: 0, events: [], dropped: { ...d } } });
  d.malformed++;
  c.steps.push({ op: 'notify', channel: BROADCAST, payload: `99:presence:${t}{}`, expect: { seq: 0, events: [], dropped: { ...d } } });
  c.steps.push({ ...notify(n1), expect: { entries: await entries(t), seq: 1, events: [ev('join', 'gw-a', 1)], dropped: { ...d } } });
  write(c);
}

async function nonAscii() {
  const t = 'salle:café-☕-🎉';
  const c = newCase(
    'non_ascii_topic',
    "a topic with accents, a BMP symbol and an emoji (two UTF-16 units, four UTF-8 bytes): the length prefix counts characters (code points); a diff of a topic that differs only after this one's length is another topic",
    t,
  );
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: await snapshot(t), expect: { entries: [], seq: 0, events: [ev('sync')] } });
  await track(`${t}🎉`, 'gw-ü', 3, 'ünï:code');
  c.steps.push({ ...notify(await one()), expect: { entries: [], seq: 0, events: [], dropped: drops() } });
  await track(t, 'gw-ü', 3, 'ünï:code', `, meta => '{"name": "Zoë 🦊"}'`);
  c.steps.push({ ...notify(await one()), expect: { entries: await entries(t), seq: 1, events: [ev('join', 'gw-ü', 3)], dropped: drops() } });
  await sql(`SELECT presence_set_status($1, 3, 'busy', '"quoted" \\ back\\slash 🚀 tab\t', 0, 'gw-ü')`, [t]);
  c.steps.push({ ...notify(await one()), expect: { entries: await entries(t), seq: 2, events: [ev('update', 'gw-ü', 3)], dropped: drops() } });
  write(c);
}

async function hashedChannel() {
  const t = `room:${'ä-long-topic-name-'.repeat(4)}end`;
  const channel = (await sql('SELECT presence_channel($1) AS c', [t]))[0].c;
  const c = newCase(
    'hashed_channel',
    "topic delivery of a topic too long for 'presence:<topic>' as a channel name: the diffs come on the hashed channel presence_channel(topic) gives; a diff on another channel is ignored",
    t,
    { delivery: 'topic', channel },
  );
  await l.query(`LISTEN ${l.escapeIdentifier(channel)}`);
  await sql("SET presence.delivery = 'topic'");
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: await snapshot(t), expect: { entries: [], seq: 0, events: [ev('sync')] } });
  await track(t, 'gw-a', 1, 'user:1');
  const n1 = await one();
  if (n1.channel !== channel) throw new Error(`diff came on ${n1.channel}`);
  c.steps.push({ op: 'notify', channel: BROADCAST, payload: n1.payload, expect: { entries: [], seq: 0, events: [] } });
  c.steps.push({ ...notify(n1), expect: { entries: await entries(t), seq: 1, events: [ev('join', 'gw-a', 1)] } });
  await sql('RESET presence.delivery');
  await l.query(`UNLISTEN ${l.escapeIdentifier(channel)}`);
  write(c);
}

async function reconnect() {
  const t = 'room:reconnect';
  const c = newCase(
    'reconnect',
    'the LISTEN connection is lost while seqs 2 and 3 are sent (never delivered); after reconnect the client asks for a snapshot, buffers 4, and the snapshot (seq 3) emits what changed',
    t,
  );
  await track(t, 'gw-a', 1, 'user:1');
  await one();
  const s1 = await snapshot(t);
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: s1, expect: { seq: 1, events: [ev('join', 'gw-a', 1), ev('sync')] } });
  const e1 = await entries(t);
  await track(t, 'gw-a', 2, 'user:2');
  await sql(`SELECT presence_untrack($1, 1, 'gw-a')`, [t]);
  await take(2);
  c.steps.push({ op: 'reconnect', expect: { entries: e1, seq: 1, snapshot_pending: true, events: [] } });
  const s3 = await snapshot(t);
  await sql(`SELECT presence_set_meta($1, 2, '{"away": true}', 'gw-a')`, [t]);
  const n4 = await one();
  c.steps.push({ ...notify(n4), expect: { entries: e1, seq: 1, snapshot_pending: true, events: [] } });
  c.steps.push({
    op: 'snapshot',
    response: s3,
    expect: {
      entries: await entries(t),
      seq: 4,
      snapshot_pending: false,
      events: [ev('leave', 'gw-a', 1), ev('join', 'gw-a', 2), ev('update', 'gw-a', 2), ev('sync')],
      dropped: drops(),
    },
  });
  write(c);
}

async function signed() {
  const t = 'room:signed';
  const c = newCase(
    'signed',
    'keys set: a diff signed with the previous key and one with the current key are applied; the real seq 3 with its sig removed (unsigned), with its principal changed (forged) and re-signed with an unknown key (forged) are dropped, then the real seq 3 applies; a forged diff with the next seq from a role without the key is dropped',
    t,
    { keys: { current: KEY, previous: PREVIOUS } },
  );
  await setKey(PREVIOUS);
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: await snapshot(t), expect: { seq: 0, events: [ev('sync')] } });
  await track(t, 'gw-a', 1, 'user:1');
  const n1 = await one();
  const e1 = await entries(t);
  await setKey(KEY);
  c.steps.push({ ...notify(n1), expect: { entries: e1, seq: 1, events: [ev('join', 'gw-a', 1)] } });
  await track(t, 'gw-a', 2, 'user:2');
  c.steps.push({ ...notify(await one()), expect: { entries: await entries(t), seq: 2, events: [ev('join', 'gw-a', 2)] } });
  const e2 = await entries(t);
  await sql(`SELECT presence_untrack($1, 1, 'gw-a')`, [t]);
  const n3 = await one();
  const e3 = await entries(t);
  const { json } = wire.split(n3.payload);
  const bare = json.replace(/,"sig":"[0-9a-f]{64}"\}$/, '}');
  const d = drops();
  d.unsigned++;
  c.steps.push({ op: 'notify', channel: BROADCAST, payload: wire.encode(t, bare), expect: { entries: e2, seq: 2, events: [], dropped: { ...d } } });
  d.forged++;
  c.steps.push({ op: 'notify', channel: BROADCAST, payload: n3.payload.replace('"principal":"user:1"', '"principal":"user:6"'), expect: { entries: e2, seq: 2, events: [], dropped: { ...d } } });
  d.forged++;
  c.steps.push({ op: 'notify', channel: BROADCAST, payload: wire.encode(t, wire.sign(bare, 'not-the-key')), expect: { entries: e2, seq: 2, events: [], dropped: { ...d } } });
  c.steps.push({ ...notify(n3), expect: { entries: e3, seq: 3, events: [ev('leave', 'gw-a', 1)], dropped: { ...d } } });
  // A CONNECT-only role's forgery: the next seq, "user:2 left", no valid sig.
  const forged = JSON.parse(bare);
  Object.assign(forged, { kind: 'leave', fd: 2, principal: 'user:2', seq: 4 });
  await sql('CREATE ROLE conformance_intruder LOGIN');
  const intruder = new Client({ user: 'conformance_intruder' });
  await intruder.connect();
  await intruder.query('SELECT pg_notify($1, $2)', [BROADCAST, wire.encode(t, JSON.stringify(forged))]);
  await intruder.end();
  await sql('DROP ROLE conformance_intruder');
  d.unsigned++;
  c.steps.push({ ...notify(await one()), expect: { entries: e3, seq: 3, events: [], dropped: { ...d } } });
  await setKey('');
  write(c);
}

async function epochChange() {
  const t = 'room:epoch';
  const c = newCase(
    'epoch_change',
    'DROP and CREATE EXTENSION start a new epoch (seqs start over): a diff of another epoch makes the client ask for a snapshot (and drop the diff, which the snapshot has); the new snapshot replaces the room',
    t,
  );
  await track(t, 'gw-a', 1, 'user:1');
  await track(t, 'gw-a', 2, 'user:2');
  await take(2);
  const s = await snapshot(t);
  c.steps.push({ op: 'subscribe' });
  c.steps.push({ op: 'snapshot', response: s, expect: { entries: await entries(t), seq: 2, epoch: s.epoch, events: [ev('join', 'gw-a', 1), ev('join', 'gw-a', 2), ev('sync')] } });
  const e2 = await entries(t);
  await sql('DROP EXTENSION presence');
  await sql('CREATE EXTENSION presence');
  await track(t, 'gw-b', 3, 'user:3');
  const n = await one();
  const s2 = await snapshot(t);
  if (s2.epoch === s.epoch) throw new Error('the epoch did not change');
  c.steps.push({ ...notify(n), expect: { entries: e2, seq: 2, epoch: s.epoch, snapshot_pending: true, events: [] } });
  c.steps.push({
    op: 'snapshot',
    response: s2,
    expect: {
      entries: await entries(t),
      seq: 1,
      epoch: s2.epoch,
      snapshot_pending: false,
      events: [ev('leave', 'gw-a', 1), ev('leave', 'gw-a', 2), ev('join', 'gw-b', 3), ev('sync')],
      dropped: drops(),
    },
  });
  write(c);
}

(async () => {
  w = new Client({ application_name: 'conformance-writer' });
  l = new Client({ application_name: 'conformance-listener' });
  await w.connect();
  await l.connect();
  l.on('notification', (m) => inbox.push({ channel: m.channel, payload: m.payload }));
  await l.query(`LISTEN ${BROADCAST}`);
  await l.query("LISTEN elsewhere");
  // `node generate.js NAME...` writes only those cases.
  const cases = { basic, snapshotBuffer, duplicates, gap, bogusGap, leaveUnknown, otherTopics, nonAscii, hashedChannel, reconnect, signed, epochChange };
  const only = process.argv.slice(2);
  for (const [name, make] of Object.entries(cases)) if (!only.length || only.includes(name)) await make();
  if (inbox.length) throw new Error(`${inbox.length} notifications left over`);
  await w.end();
  await l.end();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
