'use strict';
// End to end, shard mode (docs/scaling.md): two gateways with
// PRESENCE_SHARDS=1 against a presence_proxy database over three shards
// (test/e2e/run.sh's shards passes set PG* to the proxy, and
// PRESENCE_DELIVERY to the shards' presence.delivery), two topics on
// different shards, pages in headless Chromium. Each page sees the members
// of both gateways in its topic; a shard's lost LISTEN connection resyncs
// only its topics; a gateway killed with -9 leaves both topics, on both
// shards, once its lease runs out.

const nodeTest = require('node:test');
const { before, after } = nodeTest;
const assert = require('node:assert/strict');
const path = require('path');
const fs = require('fs');
const os = require('os');
const { spawn } = require('child_process');
const { createRequire } = require('module');

const TEST_TIMEOUT_MS = Number(process.env.E2E_TEST_TIMEOUT_MS || 60000);
const test = (name, fn) => nodeTest.test(name, { timeout: TEST_TIMEOUT_MS }, fn);
const GW_DIR = path.resolve(__dirname, '../../examples/gateway');
const gwRequire = createRequire(path.join(GW_DIR, 'package.json'));
const { chromium } = gwRequire('playwright-core');
const pg = gwRequire('pg');

const PORT1 = Number(process.env.E2E_PORT1 || 18191);
const PORT2 = Number(process.env.E2E_PORT2 || 18192);
const LEASE_S = 2;
const ARTIFACTS = process.env.E2E_ARTIFACTS || fs.mkdtempSync(path.join(os.tmpdir(), 'presence-e2e-'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const note = (...a) => console.log('  #', ...a);

const gateways = {};
// run.sh's E2E_GATEWAY_CMD chooses the gateway, as in gateway.test.js.
const GATEWAY_CMD = process.env.E2E_GATEWAY_CMD
  ? process.env.E2E_GATEWAY_CMD.split(' ')
  : [process.execPath, path.join(GW_DIR, 'gateway.js')];
async function startGateway(key, port) {
  const name = `gw-shard-${key}`;
  const logFile = path.join(ARTIFACTS, `${name}.log`);
  const out = fs.openSync(logFile, 'w');
  const proc = spawn(GATEWAY_CMD[0], GATEWAY_CMD.slice(1), {
    env: { ...process.env, PORT: String(port), GATEWAY_NAME: name, HOST: '127.0.0.1',
           PRESENCE_SHARDS: '1', PRESENCE_LEASE_S: String(LEASE_S) },
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  const pidFile = path.join(ARTIFACTS, `${name}.pid`); // for run.sh's cleanup
  fs.writeFileSync(pidFile, String(proc.pid));
  const exited = new Promise((r) => proc.on('exit', () => { fs.rmSync(pidFile, { force: true }); r(); }));
  const gw = { name, port, proc, exited, url: `http://127.0.0.1:${port}` };
  gateways[key] = gw;
  const deadline = Date.now() + 15000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${name} exited at start:\n${fs.readFileSync(logFile, 'utf8')}`);
    try {
      const h = await (await fetch(`${gw.url}/healthz`)).json();
      if (h.ok) return Object.assign(gw, { health: h });
    } catch (e) {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`${name} did not come up:\n${fs.readFileSync(logFile, 'utf8')}`);
    await sleep(50);
  }
}

let db; // SQL on the proxy
const sql = async (text, params) => (await db.query(text, params)).rows;
let ctx, userDataDir;
const topicOn = {}; // topic -> shard connstr

async function openPage(gw, topic, user) {
  const page = await ctx.newPage();
  await page.goto(`${gw.url}/?topic=${encodeURIComponent(topic)}&user=${encodeURIComponent(user)}`);
  await page.waitForFunction(() => window.presence && window.presence.you && window.presence.seq !== null, null, {
    timeout: 10000,
  });
  return page;
}

async function waitPrincipals(page, want, timeout = 10000) {
  await page.waitForFunction(
    (w) => JSON.stringify([...document.querySelectorAll('#members .entry')].map((li) => li.dataset.principal).sort()) === w,
    JSON.stringify([...want].sort()),
    { timeout, polling: 20 },
  );
}

// The topic's rows on its shard itself (not through the proxy), or the
// result of another query there.
async function onShard(topic, query) {
  const kv = Object.fromEntries(topicOn[topic].split(' ').map((p) => p.split('=')));
  const c = new pg.Client({ host: kv.host, port: Number(kv.port), database: kv.dbname, user: kv.user });
  await c.connect();
  try {
    if (query) return (await c.query(query)).rows;
    return (await c.query('SELECT principal_id FROM tep_presence WHERE topic = $1 ORDER BY 1', [topic])).rows.map((r) => r.principal_id);
  } finally {
    await c.end();
  }
}

let TA, TB;
before(async () => {
  db = new pg.Client({ application_name: 'presence-e2e-shards' });
  await db.connect();
  // Two topics on different shards.
  const rows = await sql("SELECT 'room:' || i AS t, presence_shard('room:' || i) AS s FROM generate_series(1, 50) i");
  TA = rows[0].t;
  const other = rows.find((r) => r.s !== rows[0].s);
  TB = other.t;
  topicOn[TA] = rows[0].s;
  topicOn[TB] = other.s;
  note(`${TA} on ${topicOn[TA]}; ${TB} on ${topicOn[TB]}`);
  await startGateway('1', PORT1);
  await startGateway('2', PORT2);
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'presence-e2e-chromium-'));
  ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (ctx) await ctx.close().catch(() => {});
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  for (const gw of Object.values(gateways)) {
    if (gw.proc.exitCode === null && gw.proc.signalCode === null) {
      gw.proc.kill('SIGTERM');
      await Promise.race([gw.exited, sleep(3000)]);
      if (gw.proc.exitCode === null && gw.proc.signalCode === null) gw.proc.kill('SIGKILL');
    }
  }
  if (db) await db.end().catch(() => {});
});

const pages = {};

test('both gateways run in shard mode with a LISTEN connection on each of the 3 shards', async () => {
  for (const gw of Object.values(gateways)) {
    assert.equal(gw.health.shards.length, 3, JSON.stringify(gw.health));
    assert.ok(gw.health.shards.every((s) => s.live));
    assert.equal(gw.health.delivery, process.env.PRESENCE_DELIVERY || 'broadcast');
  }
  assert.notEqual(topicOn[TA], topicOn[TB]);
});

test('a page on each gateway in each topic: every page sees both gateways\' members', async () => {
  pages.a1 = await openPage(gateways['1'], TA, 'alice');
  pages.a2 = await openPage(gateways['2'], TA, 'bob');
  pages.b1 = await openPage(gateways['1'], TB, 'carol');
  pages.b2 = await openPage(gateways['2'], TB, 'dave');
  await waitPrincipals(pages.a1, ['user:alice', 'user:bob']);
  await waitPrincipals(pages.a2, ['user:alice', 'user:bob']);
  await waitPrincipals(pages.b1, ['user:carol', 'user:dave']);
  await waitPrincipals(pages.b2, ['user:carol', 'user:dave']);
});

test("each topic's entries are on its own shard", async () => {
  assert.deepEqual(await onShard(TA), ['user:alice', 'user:bob']);
  assert.deepEqual(await onShard(TB), ['user:carol', 'user:dave']);
});

test("a shard's LISTEN connection lost: only that shard's topics resync, and diffs flow again", async () => {
  const snaps = async (page) => page.evaluate(() => window.presence.stats.snapshots);
  const [a0, b0] = [await snaps(pages.a1), await snaps(pages.b1)];
  await onShard(TA, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'presence-gateway:gw-shard-1:listen'");
  await pages.a1.waitForFunction((n) => window.presence.stats.snapshots > n, a0, { timeout: 20000, polling: 20 });
  const h = await (await fetch(`${gateways['1'].url}/healthz`)).json();
  assert.equal(h.listen_reconnects, 1);
  assert.equal(await snaps(pages.b1), b0, `${TB}'s page was not resynced`);
  await sql("SELECT presence_track($1, 1, 'user:erin', worker_id => 'e2e-sql')", [TA]);
  await waitPrincipals(pages.a1, ['user:alice', 'user:bob', 'user:erin']);
  await sql("SELECT presence_worker_stop('e2e-sql')");
  await waitPrincipals(pages.a1, ['user:alice', 'user:bob']);
});

test(`kill -9 of gateway 2: its members leave both topics, on both shards, once its lease (${LEASE_S} s) runs out`, async () => {
  gateways['2'].proc.kill('SIGKILL');
  await gateways['2'].exited;
  const t0 = Date.now();
  await waitPrincipals(pages.a1, ['user:alice'], 20000);
  await waitPrincipals(pages.b1, ['user:carol'], 20000);
  note(`gone from both pages after ${Date.now() - t0} ms`);
  assert.deepEqual(await onShard(TA), ['user:alice']);
  assert.deepEqual(await onShard(TB), ['user:carol']);
});

test('SIGTERM of gateway 1 leaves every topic on every shard (presence_worker_stop through the proxy)', async () => {
  gateways['1'].proc.kill('SIGTERM');
  await gateways['1'].exited;
  assert.equal(gateways['1'].proc.exitCode, 0);
  assert.deepEqual(await principalsEverywhere(), []);
});

async function principalsEverywhere() {
  return [...(await onShard(TA)), ...(await onShard(TB))];
}
