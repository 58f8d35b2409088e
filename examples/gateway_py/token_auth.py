"""Who is connecting: the token of examples/gateway (lib/token.js), in
Python.

    token   = base64url(JSON payload) [ "." base64url(HMAC-SHA256(secret, first part)) ]
    payload = {"sub": "user:alice", "kind": "human" | "agent_for", "agent": "bot",
               "name": "Alice", "exp": 1767225600}

With a secret only signed, unexpired tokens are accepted; without one (demo
mode) the signature is optional and anyone can claim to be anyone.
"""

import base64
import hashlib
import hmac
import json
import time


class TokenError(ValueError):
    pass


def _b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(s):
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (ValueError, TypeError):
        raise TokenError("malformed token") from None


def sign(payload, secret):
    body = _b64u(json.dumps(payload).encode())
    if not secret:
        return body
    return body + "." + _b64u(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())


def verify(token, secret, now=None):
    """{"principal", "kind", "agent_id"[, "name"]}; raises TokenError."""
    now = int(time.time()) if now is None else now
    if not isinstance(token, str) or not token:
        raise TokenError("missing token")
    if len(token) > 4096:
        raise TokenError("token too long")
    parts = token.split(".")
    if len(parts) > 2:
        raise TokenError("malformed token")
    body, sig = parts[0], parts[1] if len(parts) == 2 else ""
    if secret:
        if not sig:
            raise TokenError("token is not signed")
        want = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_unb64u(sig), want):
            raise TokenError("bad token signature")
    try:
        p = json.loads(_unb64u(body).decode())
    except (ValueError, UnicodeDecodeError):
        raise TokenError("token payload is not JSON") from None
    if not isinstance(p, dict):
        raise TokenError("token payload is not an object")
    if not isinstance(p.get("sub"), str) or p["sub"] == "":
        raise TokenError("token has no sub")
    kind = p.get("kind", "human")
    if kind not in ("human", "agent_for"):
        raise TokenError("token kind must be human or agent_for")
    agent = p.get("agent", "")
    if not isinstance(agent, str):
        raise TokenError("token agent must be a string")
    if kind == "agent_for" and agent == "":
        raise TokenError("agent_for token needs an agent")
    if kind == "human" and agent != "":
        raise TokenError("human token cannot name an agent")
    exp = p.get("exp")
    if exp is not None and (not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp < now):
        raise TokenError("token expired")
    who = {"principal": p["sub"], "kind": kind, "agent_id": agent}
    if "name" in p:
        name = p["name"]
        if not isinstance(name, str) or not name.strip():
            raise TokenError("token name must be a non-empty string")
        if len(name) > 64:
            raise TokenError("token name is over 64 characters")
        who["name"] = name.strip()
    return who
