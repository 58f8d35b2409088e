#!/usr/bin/env node
'use strict';
// An agent acting for a human, end to end through a gateway:
//
//   joins the topic as kind 'agent_for' the human (principal = the human,
//   agent_id = the agent's name), goes busy with a note, goes blocked with
//   a 3 s expiry, waits until the extension's background worker resets the
//   expired status to available (it watches its own diffs), then leaves.
//
//   node agent.js [--url ws://127.0.0.1:8081] [--topic room:lobby]
//                 [--for user:alice] [--agent summarizer-bot]
//                 [--step-ms 1500] [--block-s 3] [--linger-ms 1000]
//
// With PRESENCE_TOKEN_SECRET set it signs its token (like your app's backend
// would); otherwise it uses a demo token.

const WebSocket = require('ws');
const token = require('./lib/token');

function args(argv) {
  const o = {
    url: 'ws://127.0.0.1:8081',
    topic: 'room:lobby',
    for: 'user:alice',
    agent: 'summarizer-bot',
    'step-ms': 1500,
    'block-s': 3,
    'linger-ms': 1000,
    'timeout-ms': 20000,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o) || i + 1 >= argv.length) {
      console.error(`unknown or incomplete option ${argv[i]}`);
      process.exit(2);
    }
    o[k] = typeof o[k] === 'number' ? Number(argv[++i]) : argv[++i];
  }
  return o;
}

const opt = args(process.argv.slice(2));
const t0 = Date.now();
const say = (...a) => console.log(`[agent ${opt.agent} +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const tok = token.sign({ sub: opt.for, kind: 'agent_for', agent: opt.agent }, process.env.PRESENCE_TOKEN_SECRET || '');
  const base = opt.url.replace(/^http/, 'ws').replace(/\/+(ws)?$/, '');
  const ws = new WebSocket(`${base}/ws?topic=${encodeURIComponent(opt.topic)}&token=${encodeURIComponent(tok)}`);

  // Every message goes to the inbox until a waiter takes it: the hello can
  // arrive in the same read as the upgrade response, before any waiter.
  const inbox = [];
  const waiters = [];
  let me = null;
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString());
    if (m.type === 'hello') me = m;
    if (m.type === 'error') say('gateway error:', m.error, m.message);
    const w = waiters.findIndex((x) => x.pred(m));
    if (w >= 0) waiters.splice(w, 1)[0].resolve(m);
    else inbox.push(m);
  });
  let isClosed = false;
  const closed = new Promise((r) =>
    ws.on('close', (code, reason) => {
      isClosed = true;
      for (const w of waiters.splice(0)) w.reject(new Error(`connection closed (${code} ${reason})`));
      r();
    }),
  );
  const waitFor = (pred, what) => {
    const i = inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
    if (isClosed) return Promise.reject(new Error(`connection closed while waiting for ${what}`));
    return new Promise((resolve, reject) => {
      waiters.push({ pred, resolve, reject });
      setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), opt['timeout-ms']).unref();
    });
  };
  const mine = (d) => me && d.worker_id === me.worker_id && d.fd === me.fd;
  let ref = 0;
  const request = (msg) => {
    const r = ++ref;
    ws.send(JSON.stringify({ ...msg, ref: r }));
    return waitFor((m) => m.ref === r && (m.type === 'ok' || m.type === 'error'), `reply to ${msg.type}`).then((m) => {
      if (m.type === 'error') throw new Error(`${m.error}: ${m.message}`);
      return m;
    });
  };

  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  await waitFor((m) => m.type === 'hello', 'hello');
  say(`joined ${opt.topic} as agent_for ${opt.for} (worker ${me.worker_id}, fd ${me.fd})`);

  // Watch our own diffs so we know when the sweep resets the blocked status.
  ws.send(JSON.stringify({ type: 'subscribe', topic: opt.topic }));
  await waitFor((m) => m.type === 'snapshot', 'snapshot');

  await sleep(opt['step-ms']);
  await request({ type: 'status', state: 'busy', note: 'summarizing thread #1234' });
  say('busy: summarizing thread #1234');

  await sleep(opt['step-ms']);
  const reset = waitFor(
    (m) => m.type === 'diff' && m.diff.kind === 'status' && mine(m.diff) && m.diff.state === 'available',
    'the expiry to reset the status',
  );
  const blocked = await request({
    type: 'status',
    state: 'blocked',
    note: 'waiting on the API rate limit',
    until_ts: Math.floor(Date.now() / 1000) + opt['block-s'],
  });
  say(`blocked until ${blocked.until_ts} (${opt['block-s']} s): waiting on the API rate limit`);

  const back = await reset;
  say(`available again: the extension reset the expired status (seq ${back.seq}, ${((Date.now() / 1000) - blocked.until_ts).toFixed(2)} s after until_ts)`);

  await sleep(opt['linger-ms']);
  ws.close(1000, 'done');
  await closed;
  say('left');
}

main().then(
  () => process.exit(0),
  (e) => {
    say('failed:', e.message);
    process.exit(1);
  },
);
