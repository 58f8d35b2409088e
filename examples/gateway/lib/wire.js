'use strict';
const crypto = require('crypto');
// Tep's broadcast wire format, as the presence extension writes it on its
// NOTIFY channel:
//
//   <N>:<dtopic><json>
//
// N is the length of dtopic in CHARACTERS (Unicode code points, as Tep's
// reference decoder counts them), written in decimal; dtopic is
// "presence:<topic>" for presence diffs; the JSON follows with no separator.
// Other Tep broadcast topics may share the channel: callers skip them.

const PREFIX = 'presence:';

// decode(payload) -> { dtopic, json } or throws on a malformed payload.
function decode(payload) {
  if (typeof payload !== 'string') throw new Error('payload is not a string');
  const colon = payload.indexOf(':');
  if (colon <= 0 || colon > 10) throw new Error('no length prefix');
  const digits = payload.slice(0, colon);
  if (!/^[0-9]+$/.test(digits)) throw new Error('bad length prefix');
  const n = Number(digits);
  // Walk n code points (not UTF-16 units) past the colon.
  let i = colon + 1;
  for (let k = 0; k < n; k++) {
    if (i >= payload.length) throw new Error('payload shorter than its length prefix');
    const c = payload.codePointAt(i);
    i += c > 0xffff ? 2 : 1;
  }
  return { dtopic: payload.slice(colon + 1, i), json: payload.slice(i) };
}

// decodePresence(payload) -> { topic, diff, json } for a presence diff, or
// null for another broadcast topic; throws on a malformed payload.
function decodePresence(payload) {
  const { dtopic, json } = decode(payload);
  if (!dtopic.startsWith(PREFIX)) return null;
  const topic = dtopic.slice(PREFIX.length);
  const diff = JSON.parse(json);
  if (!diff || typeof diff !== 'object' || Array.isArray(diff)) throw new Error('diff is not an object');
  if (!['join', 'leave', 'status'].includes(diff.kind)) throw new Error('unknown diff kind');
  if (!Number.isSafeInteger(diff.seq)) throw new Error('diff has no integer seq');
  if (diff.topic !== undefined && diff.topic !== topic) throw new Error('diff topic does not match its dtopic');
  if (typeof diff.epoch !== 'string') throw new Error('diff has no epoch');
  return { topic, diff, json };
}

// A signed diff's JSON ends with its HMAC-SHA256, in hex, as a last member;
// the HMAC is of the JSON without that member.
const SIG_MEMBER = /,"sig":"([0-9a-f]{64})"\}$/;

// signedBy(json, key): whether the diff's JSON carries a valid signature
// under key (the key in presence.signing_key_file on the server).
function signedBy(json, key) {
  const m = SIG_MEMBER.exec(json);
  if (!m) return false;
  const mac = crypto.createHmac('sha256', key).update(`${json.slice(0, m.index)}}`, 'utf8').digest();
  return crypto.timingSafeEqual(mac, Buffer.from(m[1], 'hex'));
}

// sign(json, key): json with its signature added, as the server signs.
function sign(json, key) {
  const mac = crypto.createHmac('sha256', key).update(json, 'utf8').digest('hex');
  return `${json.slice(0, -1)},"sig":"${mac}"}`;
}

// encode(dtopic, obj): the inverse, used by tests to forge payloads.
function encode(dtopic, obj) {
  return `${[...dtopic].length}:${dtopic}${typeof obj === 'string' ? obj : JSON.stringify(obj)}`;
}

module.exports = { decode, decodePresence, encode, signedBy, sign, PREFIX };
