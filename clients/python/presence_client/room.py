"""A live room: the state of one topic, kept from a snapshot and the diffs
after it, with no I/O (the Subscriber feeds it; the conformance suite
drives it directly).

The rule (docs/protocol.md): while a snapshot is being taken, diffs are
buffered; once it arrives, it replaces the entries and the buffered diffs
are applied in seq order through the same rule as live ones: a diff of
another epoch than the room's, or with a seq beyond the next, asks for a
resync; a seq at or below the room's is already in it and is dropped; the
next seq is applied.
"""

import asyncio
import logging

from .wire import PREFIX

log = logging.getLogger("presence_client")

#: the keys of an entry, with the diff's names (a snapshot entry has them too)
ENTRY_KEYS = ("worker_id", "fd", "principal", "ekind", "agent_id", "state",
              "note", "until_ts", "meta", "since", "topic")
EVENTS = ("sync", "join", "leave", "update", "diff")
_STATE_RANK = {"busy": 0, "available": 1}  # blocked and anything else: 2


def entry_of(obj):
    """An entry (a dict with ENTRY_KEYS) from a diff or a snapshot entry."""
    e = {k: obj.get(k) for k in ENTRY_KEYS}
    if e["meta"] is None:
        e["meta"] = {}
    return e


def entry_key(e):
    return (e["worker_id"], e["fd"])


def same_entry(a, b):
    """Equal in the nine keys of ENTRY_KEYS[:9] (meta as JSON values)."""
    return all(a[k] == b[k] for k in ENTRY_KEYS[:9])


def new_stats():
    """Counters (a Feed's rooms share its dict)."""
    return {"forged": 0, "unsigned": 0, "stale": 0, "malformed": 0, "gaps": 0, "epoch_changes": 0,
            "resyncs": 0, "snapshots": 0, "applied": 0, "unknown_leaves": 0}


class Room:
    """One topic's live state.  Events (``room.on(event, callback)``):

    - ``sync(entries)``: the room was (re)loaded from a snapshot (after the
      join/leave/update events of what the snapshot changed);
    - ``join(entry)``, ``leave(entry)``: an entry came or went;
    - ``update(entry, previous)``: its status or meta changed (never a
      leave and a join).
    """

    def __init__(self, topic, resync=None, stats=None):
        self.topic = topic
        self.epoch = None
        self.seq = None  # None before the first snapshot
        self.pending = False  # a snapshot is awaited: diffs are buffered
        self.synced = False  # once the first snapshot is applied
        self._entries = {}
        self._buffer = []
        self.gen = 0  # counts snapshots asked for: a stale answer is dropped
        self.reason = None  # why the last snapshot was asked for: subscribe, gap, epoch, reconnect
        self._in_snapshot = False  # a snapshot is being applied (its buffer replayed)
        self._waiters = []
        self._handlers = {e: [] for e in EVENTS}
        self._resync = resync or (lambda room, reason: None)
        self.stats = stats if stats is not None else new_stats()

    # --- the application's side ------------------------------------------

    def on(self, event, callback):
        """Calls callback on each event (see the class); returns callback."""
        if event not in self._handlers:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        self._handlers[event].append(callback)
        return callback

    def off(self, event, callback):
        self._handlers[event].remove(callback)

    def list(self):
        """The entries, oldest first (since, worker_id, fd), as
        presence_list_global orders them."""
        return sorted(self._entries.values(), key=lambda e: (e["since"] or 0, e["worker_id"], e["fd"]))

    def get(self, worker_id, fd):
        return self._entries.get((worker_id, fd))

    def list_by_principal(self):
        """One dict per principal, as presence_principals groups them:
        principal, humans (human connections), agents (distinct agent ids),
        connections, state (of the human connections, else of the agents:
        busy beats available beats blocked), since (the oldest entry's),
        meta (the newest human entry's, else the newest agent entry's), and
        entries (the principal's devices and agents, oldest first)."""
        groups = {}
        for e in self.list():
            groups.setdefault(e["principal"], []).append(e)
        out = []
        for principal, entries in groups.items():
            humans = [e for e in entries if e["ekind"] == "human"]
            agents = [e for e in entries if e["ekind"] != "human"]
            ranked = humans or agents
            state = ("busy", "available", "blocked")[min(_STATE_RANK.get(e["state"], 2) for e in ranked)]
            newest = max(ranked, key=lambda e: (e["since"] or 0, e["worker_id"].encode(), e["fd"]))
            out.append({
                "principal": principal,
                "humans": len(humans),
                "agents": len({e["agent_id"] for e in agents}),
                "connections": len(entries),
                "state": state,
                "since": min(e["since"] or 0 for e in entries),
                "meta": newest["meta"],
                "entries": entries,
            })
        out.sort(key=lambda p: (p["since"], p["principal"]))
        return out

    by_principal = list_by_principal

    def counts(self):
        """entries, humans (human entries), agents (agent entries) and
        principals, as presence_count_global, _humans_global,
        _agents_global and presence_count_principals count them."""
        es = self._entries.values()
        humans = sum(1 for e in es if e["ekind"] == "human")
        return {"entries": len(es), "humans": humans, "agents": len(es) - humans,
                "principals": len({e["principal"] for e in es})}

    async def wait_synced(self):
        """Returns once the room has applied a snapshot."""
        if not self.synced:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut

    def __len__(self):
        return len(self._entries)

    # --- the protocol's side (Subscriber, conformance) ---------------------

    @property
    def snapshot_pending(self):
        return self.pending

    def begin_snapshot(self):
        """A fresh snapshot is needed (subscribe, reconnect): what was
        buffered is unreliable; diffs are buffered until it arrives.
        Entries, seq and epoch stay until then."""
        self._buffer = []
        self._want_snapshot("subscribe")

    def _want_snapshot(self, reason):
        self.pending = True
        self.reason = reason
        self.gen += 1
        if reason != "subscribe":
            self.stats["resyncs"] += 1

    def reconnected(self):
        """The LISTEN connection was lost and is back."""
        self._buffer = []
        self._want_snapshot("reconnect")
        self._resync(self, "reconnect")

    def apply_snapshot(self, snap):
        """The answer to the outstanding snapshot request: replaces the
        entries, emits what changed (leave, join, update, by key), applies
        the diffs buffered meanwhile, then emits sync."""
        if snap.get("topic", self.topic) != self.topic:
            raise ValueError(f"snapshot of {snap.get('topic')!r} for room {self.topic!r}")
        new = {}
        for obj in snap.get("entries") or []:
            e = entry_of(obj)
            e["topic"] = self.topic
            new[entry_key(e)] = e
        old, self._entries = self._entries, new
        self.seq = int(snap["seq"])
        self.epoch = snap["epoch"]
        self.pending = False
        self.synced = True
        self.stats["snapshots"] += 1
        self._in_snapshot = True
        for key in sorted(old.keys() | new.keys(), key=lambda k: (k[0], k[1])):
            a, b = old.get(key), new.get(key)
            if b is None:
                self._emit("leave", a)
            elif a is None:
                self._emit("join", b)
            elif not same_entry(a, b):
                self._emit("update", b, a)
        buffered, self._buffer = self._buffer, []
        for d in buffered:
            if self.pending:
                break  # a gap or another epoch asked for a new snapshot: it has the rest
            if d["epoch"] == self.epoch and d["seq"] <= self.seq:
                self.stats["stale"] += 1
            else:
                self.apply_diff(d)
        self._in_snapshot = False
        self._emit("sync", self.list())
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters = []

    def apply_diff(self, diff):
        """One decoded (and verified) diff of this topic."""
        if self.pending:
            self._buffer.append(diff)
            return
        if diff["epoch"] == self.epoch and diff["seq"] <= self.seq:
            self.stats["stale"] += 1
            return
        if diff["epoch"] != self.epoch or diff["seq"] != self.seq + 1:
            # another epoch: the server's history started over and its seqs
            # say nothing here; a greater seq: diffs were missed. The diff is
            # dropped: the snapshot, taken after it arrived, has it if it is
            # real (kept, a bogus one would ask for snapshots forever).
            reason = "epoch" if diff["epoch"] != self.epoch else "gap"
            self.stats["epoch_changes" if reason == "epoch" else "gaps"] += 1
            self._want_snapshot(reason)
            self._resync(self, reason)
            return
        self.seq = diff["seq"]
        self.stats["applied"] += 1
        if not self._in_snapshot:
            self._emit("diff", diff)
        self._change(diff)

    def _change(self, diff):
        e = entry_of(diff)
        e["topic"] = self.topic
        key = entry_key(e)
        before = self._entries.get(key)
        if diff["kind"] == "leave":
            if before is None:
                self.stats["unknown_leaves"] += 1
                return
            del self._entries[key]
            self._emit("leave", before)
            return
        self._entries[key] = e
        if before is None:
            self._emit("join", e)
        else:
            self._emit("update", e, before)

    def _emit(self, event, *args):
        for cb in list(self._handlers[event]):
            try:
                cb(*args)
            except Exception:  # an application's bug must not stop the room
                log.exception("presence: %s handler of %s failed", event, self.topic)

    def __repr__(self):
        return f"<Room {PREFIX}{self.topic} epoch={self.epoch} seq={self.seq} entries={len(self._entries)}>"
