"""Units with no database: the wire decoder, signatures, channel names,
a room's by-principal view and counts."""

import hashlib
import json
import unittest

from presence_client import wire
from presence_client.room import Room


def diff(**kw):
    d = {"kind": "join", "topic": "t", "principal": "user:1", "ekind": "human", "agent_id": "", "fd": 1,
         "since": 10, "state": "available", "note": "", "until_ts": 0, "seq": 1, "worker_id": "w",
         "meta": {}, "epoch": "e"}
    d.update(kw)
    return d


class Wire(unittest.TestCase):
    def test_length_counts_characters(self):
        topic = "café ☕ 𝄞"
        p = wire.encode("presence:" + topic, diff(topic=topic))
        self.assertTrue(p.startswith("17:presence:"), p)  # 9 + 8 characters (14 bytes of topic)
        t, d, _ = wire.decode_presence(p)
        self.assertEqual((t, d["topic"]), (topic, topic))

    def test_malformed(self):
        for p in ("", "x:presence:t{}", "99:presence:t{}", "11:presence:t[]",
                  wire.encode("presence:t", diff(kind="hop")), wire.encode("presence:t", diff(seq="1")),
                  wire.encode("presence:t", {k: v for k, v in diff().items() if k != "epoch"}),
                  wire.encode("presence:t", diff(topic="u"))):
            with self.assertRaises(wire.WireError, msg=p):
                wire.decode_presence(p)
        self.assertIsNone(wire.decode_presence(wire.encode("chat:t", diff())))

    def test_signatures(self):
        text = json.dumps(diff(), separators=(",", ":"))
        signed = wire.sign(text, "k1")
        self.assertEqual(wire.verify(signed, ["k1"]), "ok")
        self.assertEqual(wire.verify(signed, ["k0", "k1"]), "ok", "the previous key")
        self.assertEqual(wire.verify(signed, ["k2"]), "forged")
        self.assertEqual(wire.verify(text, ["k1"]), "unsigned")
        self.assertEqual(wire.verify(signed.replace('"user:1"', '"user:2"'), ["k1"]), "forged")

    def test_channel_names(self):
        self.assertEqual(wire.channel_of("room:lobby"), "presence:room:lobby")
        self.assertEqual(wire.channel_of("x" * 54), "presence:" + "x" * 54)
        long = "x" * 55
        ch = wire.channel_of(long)
        self.assertEqual(ch, "presence#" + hashlib.sha256(long.encode()).hexdigest()[:32] + ":" + "x" * 21)
        ch = wire.channel_of("é" * 40)
        self.assertLessEqual(len(ch.encode()), 63)
        self.assertTrue(ch.endswith(":" + "é" * 10), "cut at a character boundary")


class Views(unittest.TestCase):
    def test_by_principal_and_counts(self):
        r = Room("t")
        r.begin_snapshot()
        r.apply_snapshot({"topic": "t", "seq": 0, "epoch": "e", "entries": [
            diff(fd=1, since=5, state="blocked", meta={"name": "Ann"}),
            diff(fd=2, since=6, state="available", meta={"name": "Ann 2"}),
            diff(fd=3, since=7, ekind="agent_for", agent_id="bot", state="busy", meta={"a": 1}),
            diff(fd=4, since=8, ekind="agent_for", agent_id="bot", state="busy"),
            diff(fd=5, since=4, principal="user:2", ekind="agent_for", agent_id="x", state="blocked"),
        ]})
        p = r.list_by_principal()
        self.assertEqual([(x["principal"], x["humans"], x["agents"], x["connections"], x["state"], x["since"],
                           x["meta"]) for x in p],
                         [("user:2", 0, 1, 1, "blocked", 4, {}),
                          ("user:1", 2, 1, 4, "available", 5, {"name": "Ann 2"})])
        self.assertEqual(r.counts(), {"entries": 5, "humans": 2, "agents": 3, "principals": 2})
        self.assertEqual([e["fd"] for e in r.list()], [5, 1, 2, 3, 4])

    def test_a_status_change_is_an_update(self):
        r = Room("t")
        seen = []
        for ev in ("join", "leave", "update"):
            r.on(ev, lambda e, *_, ev=ev: seen.append(ev))
        r.begin_snapshot()
        r.apply_snapshot({"topic": "t", "seq": 0, "epoch": "e", "entries": []})
        r.apply_diff(diff(seq=1))
        r.apply_diff(diff(seq=2, kind="status", state="busy"))
        r.apply_diff(diff(seq=3, kind="status", meta={"page": 2}))
        r.apply_diff(diff(seq=4, kind="leave"))
        self.assertEqual(seen, ["join", "update", "update", "leave"])

    def test_diff_events_for_relays(self):
        """'diff' carries each live diff as sent, before its event; the
        diffs a snapshot's buffer replays have none (its sync has them)."""
        r = Room("t")
        seen = []
        r.on("diff", lambda d: seen.append(("diff", d["seq"])))
        r.on("join", lambda e: seen.append(("join", e["fd"])))
        r.begin_snapshot()
        r.apply_diff(diff(seq=1))
        r.apply_snapshot({"topic": "t", "seq": 0, "epoch": "e", "entries": []})
        r.apply_diff(diff(seq=2, fd=2))
        self.assertEqual(seen, [("join", 1), ("diff", 2), ("join", 2)])

    def test_a_diff_no_snapshot_follows_does_not_loop(self):
        """A gap or another epoch asks for a snapshot and the diff is
        dropped: the snapshot, taken after it arrived, has it if it is real;
        a bogus one (forged on an unsigned channel) does not ask again and
        again."""
        for bad in (diff(seq=9), diff(seq=6, epoch="other")):
            r = Room("t")
            asked = []
            r._resync = lambda room, reason: asked.append(reason)
            r.begin_snapshot()
            r.apply_snapshot({"topic": "t", "seq": 5, "epoch": "e", "entries": []})
            r.apply_diff(bad)
            self.assertTrue(r.pending)
            r.apply_snapshot({"topic": "t", "seq": 5, "epoch": "e", "entries": []})
            self.assertFalse(r.pending, bad)
            self.assertEqual((len(asked), len(r)), (1, 0))
            r.apply_diff(diff(seq=6))
            self.assertEqual((r.seq, len(r)), (6, 1), "the real next diff is applied")


if __name__ == "__main__":
    unittest.main()
