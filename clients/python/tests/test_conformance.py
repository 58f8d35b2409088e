"""The conformance suite (test/conformance/*.json, format in its README):
each case drives a Feed and its one Room with the case's notifications and
snapshot answers, and compares the room after each step."""

import json
import pathlib
import logging
import unittest

from presence_client import wire
from presence_client.feed import Feed
from presence_client.room import ENTRY_KEYS

CASES = pathlib.Path(__file__).resolve().parents[3] / "test" / "conformance"
NINE = ENTRY_KEYS[:9]
logging.getLogger("presence_client").setLevel(logging.CRITICAL)  # the drops are the point


def run_case(case, t):
    keys = case["keys"] or {}
    topic_delivery = case["delivery"] == "topic"
    asked = []
    feed = Feed(signing_keys=[keys.get("current"), keys.get("previous")],
                channel="tep_broadcast" if topic_delivery else case["channel"],
                topic_delivery=topic_delivery, resync=lambda room, reason: asked.append(reason))
    room = None
    events = []

    def record(event):
        return lambda e=None, *_: events.append({"event": event} if event == "sync" else
                                                {"event": event, "worker_id": e["worker_id"], "fd": e["fd"]})

    for i, step in enumerate(case["steps"]):
        where = f"{case['name']}, step {i} ({step['op']})"
        events.clear()
        op = step["op"]
        if op == "subscribe":
            room = feed.room(case["topic"])
            for ev in ("sync", "join", "leave", "update"):
                room.on(ev, record(ev))
            room.begin_snapshot()
            t.assertEqual(feed.channels(), [case["channel"]], f"{where}: the channel LISTENed")
            if topic_delivery:
                t.assertEqual(wire.channel_of(case["topic"]), case["channel"], f"{where}: presence_channel")
        elif op == "notify":
            feed.notification(step["channel"], step["payload"])
        elif op == "snapshot":
            t.assertTrue(room.pending, f"{where}: a snapshot answer with no request outstanding")
            room.apply_snapshot(step["response"])
        elif op == "reconnect":
            room.reconnected()
        else:
            t.fail(f"{where}: unknown op")
        want = step.get("expect")
        if not want:
            continue
        if "entries" in want:
            got = sorted(room.list() if room is not None else [], key=lambda e: (e["worker_id"], e["fd"]))
            t.assertEqual([{k: e[k] for k in NINE} for e in got], want["entries"], f"{where}: entries")
        if "seq" in want:
            t.assertEqual(room.seq if room is not None else None, want["seq"], f"{where}: seq")
        if "epoch" in want:
            t.assertEqual(room.epoch if room is not None else None, want["epoch"], f"{where}: epoch")
        if "snapshot_pending" in want:
            t.assertEqual(room is not None and room.pending, want["snapshot_pending"], f"{where}: snapshot_pending")
        if "events" in want:
            t.assertEqual(events, want["events"], f"{where}: events")
        if "dropped" in want:
            t.assertEqual({k: feed.stats[k] for k in want["dropped"]}, want["dropped"], f"{where}: dropped")


class Conformance(unittest.TestCase):
    def test_cases_exist(self):
        self.assertTrue(list(CASES.glob("*.json")), f"no case in {CASES}")


def _add(path):
    def test(self):
        run_case(json.loads(path.read_text(encoding="utf-8")), self)
    setattr(Conformance, f"test_{path.stem}", test)


for _p in sorted(CASES.glob("*.json")):
    _add(_p)

if __name__ == "__main__":
    unittest.main()
