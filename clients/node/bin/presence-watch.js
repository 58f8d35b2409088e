#!/usr/bin/env node
'use strict';
// presence-watch [--exit-after SECONDS] TOPIC...
//
// Follows the topics' rooms and prints, on stdout, one JSON line per
// applied change: {"topic","epoch","seq","event","count"}; when it exits
// (after --exit-after, SIGINT or SIGTERM), one line per topic:
// {"final":true,"topic","epoch","seq","entries":[...]} with the entries
// sorted by (worker_id, fd). Connection from libpq's environment (PGHOST,
// PGPORT, PGUSER, PGDATABASE, PGPASSWORD); signing keys from
// PRESENCE_SIGNING_KEY (and PRESENCE_SIGNING_KEY_PREVIOUS); delivery from
// the server's presence.delivery unless PRESENCE_DELIVERY (broadcast or
// topic) says. Warnings, and the counters at exit, go to stderr.

const { Subscriber } = require('..');
const { ENTRY_KEYS, byKey } = require('../lib/room');

function usage(msg) {
  if (msg) process.stderr.write(`presence-watch: ${msg}\n`);
  process.stderr.write('usage: presence-watch [--exit-after SECONDS] TOPIC...\n');
  process.exit(2);
}

function parseArgs(argv) {
  const topics = [];
  let exitAfter = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--exit-after') {
      exitAfter = Number(argv[++i]);
      if (!Number.isFinite(exitAfter) || exitAfter < 0) usage('--exit-after needs a number of seconds');
    } else if (argv[i] === '--help' || argv[i] === '-h') usage();
    else if (argv[i] === '--') topics.push(...argv.slice(i + 1)), (i = argv.length);
    else if (argv[i].startsWith('--')) usage(`unknown option ${argv[i]}`);
    else topics.push(argv[i]);
  }
  if (!topics.length) usage('no topic');
  return { topics, exitAfter };
}

const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

async function main() {
  const { topics, exitAfter } = parseArgs(process.argv.slice(2));
  const sub = new Subscriber({ applicationName: 'presence-watch', delivery: process.env.PRESENCE_DELIVERY || undefined });
  sub.on('warning', (m) => process.stderr.write(`presence-watch: ${m}\n`));
  let finishing = false;
  const rooms = [];
  const finish = async () => {
    if (finishing) return;
    finishing = true;
    for (const room of rooms) {
      const entries = [...room.entries.values()].sort(byKey).map((e) => Object.fromEntries(ENTRY_KEYS.map((k) => [k, e[k]])));
      out({ final: true, topic: room.topic, epoch: room.epoch, seq: room.seq, entries });
    }
    process.stderr.write(`presence-watch: ${JSON.stringify(sub.counters())}\n`);
    await sub.close();
  };
  process.on('SIGINT', () => finish().then(() => process.exit(0)));
  process.on('SIGTERM', () => finish().then(() => process.exit(0)));
  if (exitAfter !== null) setTimeout(() => finish().then(() => process.exit(0)), exitAfter * 1000);
  for (const topic of new Set(topics)) {
    const room = sub.room(topic);
    for (const event of ['join', 'leave', 'update', 'sync']) {
      room.on(event, () => out({ topic, epoch: room.epoch, seq: room.seq, event, count: room.entries.size }));
    }
    rooms.push(room);
  }
  await Promise.all(rooms.map((r) => r.ready));
}

main().catch((e) => {
  process.stderr.write(`presence-watch: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
  process.exit(1);
});
