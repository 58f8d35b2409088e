'use strict';

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;

// Exponential backoff with jitter, in ms, for the attempt-th retry.
function backoff(attempt) {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt) * (0.75 + Math.random() * 0.5);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The keys a client checks signatures with: its own configuration, never
// the server's (which keeps the key to itself).
function signingKeysFromEnv(env = process.env) {
  return [env.PRESENCE_SIGNING_KEY, env.PRESENCE_SIGNING_KEY_PREVIOUS].filter(Boolean);
}

// An error from the server (code = its SQLSTATE) or from the client
// (code undefined).
class PresenceError extends Error {
  constructor(message, code, detail, cause) {
    super(message);
    this.name = 'PresenceError';
    this.code = code;
    this.detail = detail;
    if (cause) this.cause = cause;
  }

  static from(e) {
    if (e instanceof PresenceError) return e;
    return new PresenceError(e.message, e.code, e.detail, e);
  }
}

module.exports = { backoff, sleep, signingKeysFromEnv, PresenceError };
