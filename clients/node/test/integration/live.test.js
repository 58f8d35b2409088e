'use strict';
// The Node.js client against a real server (test/clients/node.sh starts it:
// presence preloaded, swept every 200 ms, presence.delivery = both, every
// diff signed with PRESENCE_SIGNING_KEY; PRESENCE_IT_CLUSTER its directory
// for test/lib/cluster.sh). Runs as a superuser through libpq's environment.
//
// 1. Writers (Workers of this library) churn six topics, two of them
//    non-ASCII and one long (a hashed channel), while two presence-watch
//    processes follow them (one in broadcast, one in topic delivery); their
//    LISTEN backends are terminated twice, the server is restarted (a new
//    epoch), and a CONNECT-only role sends a forged diff with the next seq.
//    Every room's final view must equal presence_list_global, at the
//    snapshot's seq and epoch, without the forgery.
// 2. A Worker killed with -9: its entries leave.
// 3. A Worker's dedicated connection terminated: it registers again and
//    its sockets are present again, statuses and meta included.

const test = require('node:test');
const assert = require('node:assert');
const path = require('path');
const { spawn, execFileSync } = require('child_process');
const pg = require('pg');
const { Worker, Subscriber, wire } = require('../..');

const ROOT = path.join(__dirname, '..', '..', '..', '..');
const WATCH = path.join(__dirname, '..', '..', 'bin', 'presence-watch.js');
const KEY = process.env.PRESENCE_SIGNING_KEY;
const TOPICS = [
  'room:lobby',
  'room:ops',
  'salle:café-☕',
  'комната:🎉',
  `room:${'long-topic-name-'.repeat(4)}end`,
  'room:q"uote\\d',
];
const STATES = ['available', 'busy', 'blocked'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function sql(text, params) {
  const c = new pg.Client({ application_name: 'presence-it' });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}

// Waits for cond() to hold (polling), up to ms; fails with what() if not.
async function until(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) assert.fail(`timed out waiting: ${what()}`);
    await sleep(100);
  }
}

const project = (rows) =>
  rows.map((r) => ({
    worker_id: r.worker_id,
    fd: r.fd,
    principal: r.principal_id,
    ekind: r.kind,
    agent_id: r.agent_id,
    state: r.status_state,
    note: r.status_note,
    until_ts: Number(r.status_until),
    meta: r.meta,
  }));

async function serverView(topic) {
  const snap = (await sql('SELECT presence_snapshot($1) AS s', [topic]))[0].s;
  const rows = await sql('SELECT * FROM presence_list_global($1) ORDER BY worker_id COLLATE "C", fd', [topic]);
  return { entries: project(rows), seq: snap.seq, epoch: snap.epoch };
}

// A presence-watch process; lines parsed as they come.
function watch(topics, env = {}) {
  const p = spawn(process.execPath, [WATCH, ...topics], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const w = { p, lines: [], stderr: '', exited: new Promise((r) => p.on('exit', r)) };
  let buf = '';
  p.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      w.lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  p.stderr.on('data', (d) => (w.stderr += d));
  w.last = (topic) => [...w.lines].reverse().find((l) => l.topic === topic && !l.final);
  return w;
}

async function terminate(appName) {
  return sql('SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = $1', [appName]);
}

function restartServer() {
  execFileSync('bash', ['-c', '. test/lib/cluster.sh 2>/dev/null && cluster_restart "$PRESENCE_IT_CLUSTER"'], { cwd: ROOT, stdio: 'inherit' });
}

// A writer: random tracks, statuses, meta changes and untracks.
function churn(worker, name, stop) {
  let n = 0;
  const sockets = Array.from({ length: 8 }, (_, i) => `${name}-sock-${i}`);
  return (async () => {
    while (!stop.done) {
      const topic = TOPICS[Math.floor(Math.random() * TOPICS.length)];
      const socket = sockets[Math.floor(Math.random() * sockets.length)];
      const r = Math.random();
      try {
        if (r < 0.4) await worker.track(topic, socket, r < 0.3 ? `user:${socket}` : { principal: `user:${socket}`, agent: 'bot' }, { n: n++ });
        else if (r < 0.6) await worker.setStatus(topic, socket, STATES[n++ % 3], `note ${n} é`, r < 0.5 ? { minutes: 5 } : null);
        else if (r < 0.75) await worker.setMeta(topic, socket, { page: n++ });
        else if (r < 0.9) await worker.untrack(topic, socket);
        else await worker.untrackSocket(socket);
      } catch (e) {
        // Untracked sockets and the server restart fail some calls.
      }
      await sleep(5);
    }
  })();
}

test('six churning topics, LISTEN backends terminated twice, a restart, a forgery: rooms equal the server', { timeout: 120000 }, async () => {
  assert.ok(KEY, 'PRESENCE_SIGNING_KEY is set (the server signs with it)');
  const watchers = [watch(TOPICS, { PRESENCE_DELIVERY: 'broadcast' }), watch(TOPICS, { PRESENCE_DELIVERY: 'topic' })];
  const synced = (w) => TOPICS.every((t) => w.lines.some((l) => l.topic === t && l.event === 'sync'));
  await until(() => watchers.every(synced), 20000, () => watchers.map((w) => w.stderr).join());

  const workers = [1, 2, 3].map((i) => new Worker({ name: `churn${i}`, applicationName: `presence-it-churn${i}` }));
  await Promise.all(workers.map((w) => w.start()));
  const stop = { done: false };
  const writers = workers.map((w, i) => churn(w, `w${i}`, stop));

  await sleep(1500);
  for (let i = 0; i < 2; i++) {
    const [{ n }] = await terminate('presence-watch');
    assert.ok(Number(n) >= 2, 'the watchers had backends to terminate');
    await sleep(1500);
  }
  const epochBefore = (await sql('SELECT presence_epoch() AS e'))[0].e;
  restartServer();
  await sleep(2500);
  stop.done = true;
  await Promise.all(writers);
  // Every worker registered again after the restart and tracks its sockets again.
  await Promise.all(workers.map((w) => w.ready));
  const epoch = (await sql('SELECT presence_epoch() AS e'))[0].e;
  assert.notStrictEqual(epoch, epochBefore, 'the restart started a new epoch');

  // A CONNECT-only role forges a join with the next seq, on both channels.
  const topic = TOPICS[2];
  const snap = (await sql('SELECT presence_snapshot($1) AS s', [topic]))[0].s;
  const forged = { kind: 'join', topic, principal: 'intruder', ekind: 'human', agent_id: '', fd: 666, since: 0, state: 'available', note: '', until_ts: 0, seq: snap.seq + 1, worker_id: 'evil', meta: {}, epoch: snap.epoch };
  await sql('DROP ROLE IF EXISTS presence_it_intruder');
  await sql('CREATE ROLE presence_it_intruder LOGIN');
  const intruder = new pg.Client({ user: 'presence_it_intruder' });
  await intruder.connect();
  const channel = (await sql('SELECT presence_channel($1) AS c', [topic]))[0].c;
  const payload = wire.encode(topic, wire.sign(JSON.stringify(forged), 'a guess'));
  await intruder.query("SELECT pg_notify('tep_broadcast', $1), pg_notify($2, $1)", [payload, channel]);
  await intruder.end();

  // Quiet now: wait until each watcher's last line per topic is at the server's seq and epoch.
  const views = {};
  for (const t of TOPICS) views[t] = await serverView(t);
  const caughtUp = (w) => TOPICS.every((t) => {
    const l = w.last(t);
    return l && l.seq === views[t].seq && l.epoch === views[t].epoch;
  });
  await until(() => watchers.every(caughtUp), 30000, () => JSON.stringify(TOPICS.map((t) => [t, views[t].seq, watchers.map((w) => w.last(t))])));
  for (const w of watchers) w.p.kill('SIGTERM');
  await Promise.all(watchers.map((w) => w.exited));

  for (const [i, w] of watchers.entries()) {
    const finals = w.lines.filter((l) => l.final);
    assert.strictEqual(finals.length, TOPICS.length, `watcher ${i}: one final line per topic`);
    for (const f of finals) {
      const v = views[f.topic];
      assert.ok(v, `watcher ${i}: final line of a topic it follows (${f.topic})`);
      assert.strictEqual(f.epoch, epoch, `watcher ${i}, ${f.topic}: the new epoch`);
      assert.strictEqual(f.seq, v.seq, `watcher ${i}, ${f.topic}: the snapshot's seq`);
      assert.deepStrictEqual(f.entries, v.entries, `watcher ${i}, ${f.topic}: presence_list_global`);
      assert.ok(!f.entries.some((e) => e.worker_id === 'evil'), 'the forgery is not in the room');
    }
    const counters = JSON.parse(w.stderr.trim().split('\n').filter((l) => l.startsWith('presence-watch: {')).pop().slice('presence-watch: '.length));
    assert.ok(counters.forged >= 1, `watcher ${i} dropped the forgery (${JSON.stringify(counters)})`);
    assert.ok(counters.reconnects >= 3, `watcher ${i} reconnected at least three times`);
    assert.ok(counters.epochChanges + counters.reconnects >= 3, 'resynced');
  }
  assert.ok(TOPICS.some((t) => views[t].entries.length > 0), 'the churn left entries to compare');
  await Promise.all(workers.map((w) => w.stop()));
  await sql('DROP ROLE presence_it_intruder');
});

test('a Worker killed with -9: its entries leave', { timeout: 60000 }, async () => {
  const topic = 'room:kill';
  const sub = new Subscriber({ applicationName: 'presence-it-sub' });
  const room = await sub.subscribe(topic);
  const child = spawn(process.execPath, ['-e', `
    const { Worker } = require(${JSON.stringify(path.join(__dirname, '..', '..'))});
    (async () => {
      const w = new Worker({ name: 'doomed' });
      await w.start();
      for (const s of ['a', 'b', 'c']) await w.track(${JSON.stringify(topic)}, s, 'user:' + s);
      console.log(w.id);
    })();`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const id = await new Promise((r) => child.stdout.once('data', (d) => r(String(d).trim())));
  await until(() => room.list().filter((e) => e.worker_id === id).length === 3, 10000, () => JSON.stringify(room.list()));
  const left = [];
  room.on('leave', (e) => left.push(e.fd));
  child.kill('SIGKILL');
  await until(() => room.list().length === 0, 15000, () => JSON.stringify(room.list()));
  assert.deepStrictEqual(left.sort(), [1, 2, 3]);
  assert.deepStrictEqual(await sql('SELECT * FROM presence_list_global($1)', [topic]), []);
  await sub.close();
});

test("a Worker's dedicated connection terminated: it registers again and its sockets are back", { timeout: 60000 }, async () => {
  const topic = 'room:reconnect';
  const sub = new Subscriber({ applicationName: 'presence-it-sub' });
  const room = await sub.subscribe(topic);
  const w = new Worker({ name: 'phoenix', applicationName: 'presence-it-phoenix' });
  await w.start();
  await w.track(topic, 'tab-1', 'user:1', { name: 'Ann' });
  await w.track(topic, 'agent-1', { principal: 'user:1', agent: 'bot' });
  await w.setStatus(topic, 'agent-1', 'busy', 'summarizing', { minutes: 10 });
  const before = project(await sql('SELECT * FROM presence_list_global($1) ORDER BY fd', [topic]));
  assert.strictEqual(before.length, 2);
  const registered = new Promise((r) => w.once('restart', r));
  const lost = new Promise((r) => w.once('lost', r));
  const [{ ok }] = await sql('SELECT pg_terminate_backend($1) AS ok', [w.client.processID]);
  assert.strictEqual(ok, true);
  await lost;
  const r = await registered;
  assert.deepStrictEqual(r, { id: w.id, tracked: 2, failed: [] });
  const after = project(await sql('SELECT * FROM presence_list_global($1) ORDER BY fd', [topic]));
  assert.deepStrictEqual(after.map(({ until_ts, ...e }) => e), before.map(({ until_ts, ...e }) => e));
  assert.ok(Math.abs(after[1].until_ts - before[1].until_ts) <= 2, 'the status keeps its expiry');
  await until(() => room.list().length === 2 && room.list().every((e) => e.worker_id === w.id), 10000, () => JSON.stringify(room.list()));
  await w.stop();
  await until(() => room.list().length === 0, 10000, () => JSON.stringify(room.list()));
  await sub.close();
});
