'use strict';
// Who is connecting: a token in the WebSocket URL (?token=...).
//
//   token   = base64url(JSON payload) [ "." base64url(HMAC-SHA256(secret, first part)) ]
//   payload = { "sub": "user:alice",             principal_id (the human)
//               "kind": "human" | "agent_for",    default "human"
//               "agent": "summarizer-bot",        agent_id, agent_for only
//               "name": "Alice Martin",           optional display name (meta)
//               "exp": 1767225600 }               optional, epoch seconds
//
// With PRESENCE_TOKEN_SECRET set the gateway accepts only signed, unexpired
// tokens (your app's login issues them). Without it the gateway runs in demo
// mode: the signature is optional and anyone can claim to be anyone.

const crypto = require('crypto');

const b64u = (buf) => Buffer.from(buf).toString('base64url');

function sign(payload, secret) {
  const body = b64u(JSON.stringify(payload));
  if (!secret) return body;
  const mac = crypto.createHmac('sha256', secret).update(body).digest();
  return `${body}.${b64u(mac)}`;
}

class TokenError extends Error {}

// verify(token, secret, now) -> { principal, kind, agent_id[, name] }; throws TokenError.
function verify(token, secret, now = Math.floor(Date.now() / 1000)) {
  if (typeof token !== 'string' || token.length === 0) throw new TokenError('missing token');
  if (token.length > 4096) throw new TokenError('token too long');
  const parts = token.split('.');
  if (parts.length > 2) throw new TokenError('malformed token');
  const [body, sig] = parts;
  if (secret) {
    if (!sig) throw new TokenError('token is not signed');
    const want = crypto.createHmac('sha256', secret).update(body).digest();
    const got = Buffer.from(sig, 'base64url');
    if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) {
      throw new TokenError('bad token signature');
    }
  }
  let p;
  try {
    p = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch (e) {
    throw new TokenError('token payload is not JSON');
  }
  if (!p || typeof p !== 'object' || Array.isArray(p)) throw new TokenError('token payload is not an object');
  if (typeof p.sub !== 'string' || p.sub === '') throw new TokenError('token has no sub');
  const kind = p.kind === undefined ? 'human' : p.kind;
  if (kind !== 'human' && kind !== 'agent_for') throw new TokenError('token kind must be human or agent_for');
  const agent = p.agent === undefined ? '' : p.agent;
  if (typeof agent !== 'string') throw new TokenError('token agent must be a string');
  if (kind === 'agent_for' && agent === '') throw new TokenError('agent_for token needs an agent');
  if (kind === 'human' && agent !== '') throw new TokenError('human token cannot name an agent');
  if (p.exp !== undefined && (!Number.isFinite(p.exp) || p.exp < now)) throw new TokenError('token expired');
  const who = { principal: p.sub, kind, agent_id: agent };
  if (p.name !== undefined) who.name = displayName(p.name);
  return who;
}

// The optional "name" claim: a display name, kept in the entry's meta.
function displayName(name) {
  if (typeof name !== 'string' || name.trim() === '') throw new TokenError('token name must be a non-empty string');
  if ([...name].length > 64) throw new TokenError('token name is over 64 characters');
  return name.trim();
}

module.exports = { sign, verify, TokenError };

// CLI: node lib/token.js <sub> [agent] [--ttl seconds]   (uses PRESENCE_TOKEN_SECRET)
if (require.main === module) {
  const args = process.argv.slice(2);
  let ttl = 0;
  const i = args.indexOf('--ttl');
  if (i >= 0) { ttl = Number(args[i + 1]); args.splice(i, 2); }
  if (args.length < 1) {
    console.error('usage: node lib/token.js <sub> [agent_id] [--ttl seconds]');
    process.exit(2);
  }
  const payload = { sub: args[0] };
  if (args[1]) { payload.kind = 'agent_for'; payload.agent = args[1]; }
  if (ttl > 0) payload.exp = Math.floor(Date.now() / 1000) + ttl;
  console.log(sign(payload, process.env.PRESENCE_TOKEN_SECRET || ''));
}
