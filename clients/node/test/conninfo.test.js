'use strict';
// lib/conninfo.js: what presence_shard's libpq strings become as
// node-postgres options.
const test = require('node:test');
const assert = require('node:assert/strict');
const { parseConninfo } = require('../lib/conninfo');

test('parseConninfo: keys node-postgres knows, port a number', () => {
  assert.deepEqual(parseConninfo('host=/tmp/s/sock port=55471 dbname=presence user=postgres'), {
    host: '/tmp/s/sock',
    port: 55471,
    database: 'presence',
    user: 'postgres',
  });
});

test('parseConninfo: quoted values, escapes, spaces around =, unknown keys left out', () => {
  assert.deepEqual(parseConninfo(" host = 'db 1' password='it\\'s \\\\ x' application_name=x"), {
    host: 'db 1',
    password: "it's \\ x",
  });
});

test('parseConninfo: sslmode', () => {
  assert.deepEqual(parseConninfo('host=h sslmode=require'), { host: 'h', ssl: { rejectUnauthorized: false } });
  assert.deepEqual(parseConninfo('host=h sslmode=verify-full'), { host: 'h', ssl: true });
  assert.deepEqual(parseConninfo('host=h sslmode=disable'), { host: 'h' });
});

test('parseConninfo: hostaddr is the host', () => {
  assert.deepEqual(parseConninfo('hostaddr=10.0.0.7 port=5432'), { host: '10.0.0.7', port: 5432 });
});
