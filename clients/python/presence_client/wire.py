"""Tep's broadcast wire format and presence's diff signatures.

A payload is ``<N>:<dtopic><json>``: N is the length of dtopic in
characters (code points, which is what a Python str counts), dtopic is
``presence:<topic>`` for presence diffs, and the diff's JSON follows with no
separator.  With ``presence.signing_key`` set on the server, the JSON ends
with ``,"sig":"<64 hex>"}``: the HMAC-SHA256 under the key of the JSON
without that member.
"""

import hashlib
import hmac
import json
import re

PREFIX = "presence:"
KINDS = ("join", "leave", "status")
_SIG_MEMBER = re.compile(r',"sig":"([0-9a-f]{64})"\}$')
_MAX_CHANNEL_BYTES = 63  # NAMEDATALEN - 1


class WireError(ValueError):
    """A payload that is not in the wire format, or not a presence diff."""


def decode(payload):
    """(dtopic, json_text) of a payload; WireError when malformed."""
    colon = payload.find(":")
    if colon <= 0 or colon > 10 or not payload[:colon].isascii() or not payload[:colon].isdigit():
        raise WireError("no length prefix")
    end = colon + 1 + int(payload[:colon])
    if end > len(payload):
        raise WireError("payload shorter than its length prefix")
    return payload[colon + 1:end], payload[end:]


def topic_of(payload):
    """The presence topic of a payload, or None for another broadcast
    topic; WireError when its length prefix is bad."""
    dtopic, _ = decode(payload)
    return dtopic[len(PREFIX):] if dtopic.startswith(PREFIX) else None


def decode_presence(payload):
    """(topic, diff, json_text) of a presence diff, or None for another
    broadcast topic; WireError when malformed."""
    dtopic, text = decode(payload)
    if not dtopic.startswith(PREFIX):
        return None
    topic = dtopic[len(PREFIX):]
    return (topic, parse_diff(topic, text), text)


def parse_diff(topic, text):
    """The diff of a presence payload's JSON text; WireError when it is not
    one."""
    try:
        diff = json.loads(text)
    except ValueError as e:
        raise WireError(f"diff is not JSON: {e}") from None
    if not isinstance(diff, dict):
        raise WireError("diff is not an object")
    if diff.get("kind") not in KINDS:
        raise WireError("unknown diff kind")
    if type(diff.get("seq")) is not int:
        raise WireError("diff has no integer seq")
    if "topic" in diff and diff["topic"] != topic:
        raise WireError("diff topic does not match its dtopic")
    if not isinstance(diff.get("epoch"), str):
        raise WireError("diff has no epoch")
    return diff


def _mac(text, key):
    if isinstance(key, str):
        key = key.encode()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def signed_by(text, key):
    """Whether the diff's JSON text carries a valid signature under key."""
    m = _SIG_MEMBER.search(text)
    if not m:
        return False
    return hmac.compare_digest(_mac(text[:m.start()] + "}", key), m.group(1))


def verify(text, keys):
    """'ok' when one of keys signed the diff's JSON text, 'unsigned' when it
    has no sig member, else 'forged'."""
    m = _SIG_MEMBER.search(text)
    if not m:
        return "unsigned"
    body = text[:m.start()] + "}"
    return "ok" if any(hmac.compare_digest(_mac(body, k), m.group(1)) for k in keys) else "forged"


def sign(text, key):
    """The JSON text with its signature added, as the server signs."""
    return f'{text[:-1]},"sig":"{_mac(text, key)}"}}'


def encode(dtopic, diff):
    """A payload (tests forge them with this)."""
    text = diff if isinstance(diff, str) else json.dumps(diff, ensure_ascii=False, separators=(",", ":"))
    return f"{len(dtopic)}:{dtopic}{text}"


def channel_of(topic):
    """presence_channel(topic), computed as the server does: 'presence:' ||
    topic while that fits a channel name (63 bytes), else 'presence#', the
    first 32 hex digits of the topic's SHA-256, ':' and as much of the topic
    as fits, cut at a character boundary."""
    plain = PREFIX + topic
    if len(plain.encode()) <= _MAX_CHANNEL_BYTES:
        return plain
    head = "presence#" + hashlib.sha256(topic.encode()).hexdigest()[:32] + ":"
    room = _MAX_CHANNEL_BYTES - len(head)
    tail = topic.encode()[:room].decode(errors="ignore")
    return head + tail
