'use strict';
// The wire format of presence diffs (docs/protocol.md, "Wire format"):
//
//   <N>:<dtopic><json>
//
// N is the length of dtopic in characters (Unicode code points), in
// decimal; dtopic is "presence:<topic>" for presence diffs (other Tep
// broadcast topics may share the channel); the JSON follows with no
// separator. A signed diff's JSON ends with ,"sig":"<64 hex>" (HMAC-SHA256
// of the JSON without that member).

const crypto = require('crypto');

const PREFIX = 'presence:';
const KINDS = new Set(['join', 'leave', 'status']);
const SIG_MEMBER = /,"sig":"([0-9a-f]{64})"\}$/;

class MalformedPayload extends Error {}

// split(payload) -> { dtopic, json }; throws MalformedPayload.
function split(payload) {
  if (typeof payload !== 'string') throw new MalformedPayload('payload is not a string');
  const colon = payload.indexOf(':');
  if (colon <= 0 || colon > 10 || !/^[0-9]+$/.test(payload.slice(0, colon))) {
    throw new MalformedPayload('no length prefix');
  }
  const n = Number(payload.slice(0, colon));
  let i = colon + 1;
  for (let k = 0; k < n; k++) {
    if (i >= payload.length) throw new MalformedPayload('payload shorter than its length prefix');
    i += payload.codePointAt(i) > 0xffff ? 2 : 1;
  }
  return { dtopic: payload.slice(colon + 1, i), json: payload.slice(i) };
}

// The topic a payload is about, or null when it is not a presence diff
// (another Tep broadcast topic). Throws MalformedPayload.
function topicOf(payload) {
  const { dtopic } = split(payload);
  return dtopic.startsWith(PREFIX) ? dtopic.slice(PREFIX.length) : null;
}

// decode(payload) -> { topic, diff, json } for a presence diff, null for
// another Tep topic; throws MalformedPayload.
function decode(payload) {
  const { dtopic, json } = split(payload);
  if (!dtopic.startsWith(PREFIX)) return null;
  const topic = dtopic.slice(PREFIX.length);
  let diff;
  try {
    diff = JSON.parse(json);
  } catch (e) {
    throw new MalformedPayload('diff is not JSON');
  }
  if (!diff || typeof diff !== 'object' || Array.isArray(diff)) throw new MalformedPayload('diff is not an object');
  if (!KINDS.has(diff.kind)) throw new MalformedPayload('unknown diff kind');
  if (!Number.isSafeInteger(diff.seq)) throw new MalformedPayload('diff has no integer seq');
  if (typeof diff.epoch !== 'string') throw new MalformedPayload('diff has no epoch');
  if (diff.topic !== undefined && diff.topic !== topic) throw new MalformedPayload('diff topic does not match its dtopic');
  if (typeof diff.worker_id !== 'string' || !Number.isSafeInteger(diff.fd)) throw new MalformedPayload('diff has no entry key');
  return { topic, diff, json };
}

// verify(json, keys) -> 'ok' | 'unsigned' | 'forged': the diff's JSON
// against the configured keys (current, then previous).
function verify(json, keys) {
  const m = SIG_MEMBER.exec(json);
  if (!m) return 'unsigned';
  const signed = `${json.slice(0, m.index)}}`;
  const sig = Buffer.from(m[1], 'hex');
  for (const key of keys) {
    const mac = crypto.createHmac('sha256', key).update(signed, 'utf8').digest();
    if (crypto.timingSafeEqual(mac, sig)) return 'ok';
  }
  return 'forged';
}

// sign(json, key): the JSON with its signature member, as the server signs.
function sign(json, key) {
  const mac = crypto.createHmac('sha256', key).update(json, 'utf8').digest('hex');
  return `${json.slice(0, -1)},"sig":"${mac}"}`;
}

// encode(topic, json): a payload as the server writes it (tests, forgeries).
function encode(topic, json) {
  const dtopic = PREFIX + topic;
  return `${[...dtopic].length}:${dtopic}${typeof json === 'string' ? json : JSON.stringify(json)}`;
}

module.exports = { decode, topicOf, verify, sign, encode, split, MalformedPayload, PREFIX };
