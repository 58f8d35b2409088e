'use strict';
// presence-client: the Node.js client of the presence PostgreSQL extension.
// docs/protocol.md describes what it implements.
const { Worker, interval } = require('./lib/worker');
const { Subscriber } = require('./lib/subscriber');
const { Feed, Room } = require('./lib/room');
const { PresenceError, signingKeysFromEnv } = require('./lib/util');
const wire = require('./lib/wire');

module.exports = { Worker, Subscriber, Room, Feed, PresenceError, signingKeysFromEnv, interval, wire };
