"""Against a real server (test/clients/python.sh starts it, signing on):
six topics churned by two Workers while the watch tool follows them; its
LISTEN backend terminated twice, the server restarted (a new epoch), a
forged diff with the next seq sent by a CONNECT-only role.  Every room's
final view must equal presence_list_global, at the snapshot's seq, without
the forgery; in broadcast and in topic delivery."""

import asyncio
import datetime
import json
import random
import unittest

import psycopg

from presence_client import PresenceError, Worker, wire
from tests.support import KEY, Watch, admin, needs_cluster, pg_ctl, rows, table_view, wait_for

TOPICS = ["room:lobby", "room:café ☕", "room:𝄞 noten", "team:ops", "room:zoë \"q\" \\",
          "doc:" + "ü" * 40 + ":long-enough-for-a-hashed-channel"]


async def churn(worker, stop, rnd, counts):
    """Random calls until stop is set; errors while the server restarts are
    expected and counted."""
    sockets = [f"s{i}" for i in range(8)]
    while not stop.is_set():
        topic, sock = rnd.choice(TOPICS), rnd.choice(sockets)
        op = rnd.random()
        try:
            if op < 0.35:
                who = f"user:{rnd.randrange(5)}"
                await worker.track(topic, sock, rnd.choice([who, who, {"principal": who, "agent": "bot-🤖"}]),
                                   {"n": rnd.randrange(100)})
            elif op < 0.6:
                exp = rnd.choice([None, datetime.timedelta(seconds=1), datetime.timedelta(hours=1)])
                await worker.set_status(topic, sock, rnd.choice(["busy", "blocked", "available"]), "ñ", exp)
            elif op < 0.75:
                await worker.set_meta(topic, sock, {"page": rnd.randrange(10)})
            elif op < 0.92:
                await worker.untrack(topic, sock)
            else:
                await worker.untrack_socket(sock)
            counts["ok"] += 1
        except PresenceError:
            counts["errors"] += 1
            await asyncio.sleep(0.05)
        await asyncio.sleep(rnd.uniform(0.002, 0.02))


async def listen_backend(db):
    """The watch tool's LISTEN backend (its other one has run a snapshot)."""
    rs = await rows(db, """SELECT pid FROM pg_stat_activity WHERE application_name = 'presence-watch'
                            AND query NOT LIKE '%%snapshot%%' AND query NOT LIKE '%%regprocedure%%'""")
    return rs[0][0] if len(rs) == 1 else None


@needs_cluster
class Churn(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.db = await admin()

    async def asyncTearDown(self):
        await self.db.execute("ALTER SYSTEM RESET presence.delivery")
        await self.db.execute("SELECT pg_reload_conf()")
        await self.db.close()

    async def scenario(self, delivery):
        db = self.db
        await db.execute(f"ALTER SYSTEM SET presence.delivery = '{delivery}'")
        await db.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)
        await db.execute("DROP ROLE IF EXISTS py_mallory")
        await db.execute("CREATE ROLE py_mallory LOGIN")  # CONNECT through PUBLIC, nothing else
        epoch0 = (await rows(db, "SELECT presence_epoch()"))[0][0]

        watch = await Watch.start(TOPICS)
        await wait_for(lambda: asyncio.sleep(0, all(watch.synced(t) for t in TOPICS)), what="the first syncs")
        stop = asyncio.Event()
        counts = {"ok": 0, "errors": 0}
        workers = [await Worker(name=f"churn{i}").start() for i in range(2)]
        tasks = [asyncio.create_task(churn(w, stop, random.Random(i), counts)) for i, w in enumerate(workers)]

        # the LISTEN backend terminated twice
        for _ in range(2):
            await asyncio.sleep(0.7)
            pid = await wait_for(lambda: listen_backend(db), what="the watch tool's LISTEN backend")
            await db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await wait_for(lambda: _other(db, pid), what="a new LISTEN backend")
        await asyncio.sleep(0.7)

        # the server restarted: a new epoch; every connection is lost
        await db.close()
        await asyncio.to_thread(pg_ctl, "restart", "-m", "fast", "-w")
        self.db = db = await admin()
        epoch1 = (await rows(db, "SELECT presence_epoch()"))[0][0]
        self.assertNotEqual(epoch1, epoch0)
        await wait_for(lambda: asyncio.sleep(0, all(w.live for w in workers)), what="the workers back")
        await asyncio.sleep(1.0)

        # a forged diff with the next seq, unsigned and with a made-up sig
        topic = TOPICS[1]
        (snap,), = await rows(db, "SELECT presence_snapshot(%s)", (topic,))
        channel = (await rows(db, "SELECT presence_channel(%s)", (topic,)))[0][0] if delivery == "topic" \
            else "tep_broadcast"
        fake = {"kind": "join", "topic": topic, "principal": "user:forged", "ekind": "human", "agent_id": "",
                "fd": 999, "since": 1, "state": "available", "note": "", "until_ts": 0,
                "seq": snap["seq"] + 1, "worker_id": "forged", "meta": {}, "epoch": epoch1}
        async with await psycopg.AsyncConnection.connect(user="py_mallory", autocommit=True) as mallory:
            for sig in (None, "0" * 64):
                body = dict(fake, **({"sig": sig} if sig else {}))
                await mallory.execute("SELECT pg_notify(%s, %s)",
                                      (channel, wire.encode("presence:" + topic, json.dumps(body))))
        # a real change of that topic next, with the seq the forgery took
        await workers[0].track(topic, "after-forgery", "user:real")
        await asyncio.sleep(1.0)

        stop.set()
        await asyncio.gather(*tasks)
        # quiet: the statuses with a 1 s expiry reset by the sweep, then the
        # watch tool at every topic's seq (or it never gets there: a failure)
        await wait_for(lambda: no_short_statuses(db), what="the short statuses to expire")
        await wait_for(lambda: watch_at_seqs(db, watch), what="the watch tool at every topic's seq")
        finals, err = await watch.finish()
        self.assertEqual(watch.proc.returncode, 0, err)
        self.assertGreater(counts["ok"], 100, counts)
        self.assertTrue(all(w.stats["restarts"] >= 1 for w in workers), "the workers registered again")
        self.assertEqual(sorted(finals), sorted(TOPICS))
        for t in TOPICS:
            (snap,), = await rows(db, "SELECT presence_snapshot(%s)", (t,))
            want = await table_view(db, t)
            self.assertEqual(finals[t]["entries"], want, f"{t}: the watch tool's final view is the table's")
            self.assertEqual((finals[t]["seq"], finals[t]["epoch"]), (snap["seq"], epoch1), t)
            self.assertNotIn("user:forged", {e["principal"] for e in finals[t]["entries"]})
        self.assertIn("user:real", {e["principal"] for e in finals[topic]["entries"]})
        self.assertIn("without a valid signature", err, "the forgeries were dropped and logged")
        syncs = sum(1 for ln in watch.lines if ln.get("event") == "sync")
        self.assertGreaterEqual(syncs, 4 * len(TOPICS), "a sync per topic at start, two reconnects, the restart")
        for w in workers:
            await w.stop()

    async def test_broadcast_delivery(self):
        await self.scenario("broadcast")

    async def test_topic_delivery(self):
        await self.scenario("topic")


async def no_short_statuses(db):
    (n,), = await rows(db, """SELECT count(*) FROM tep_presence WHERE topic = ANY (%s)
                               AND status_until BETWEEN 1 AND extract(epoch FROM now()) + 60""", (TOPICS,))
    return n == 0


async def watch_at_seqs(db, watch):
    last = {ln["topic"]: ln["seq"] for ln in watch.lines if "event" in ln}
    seqs = await rows(db, "SELECT t, (presence_snapshot(t)->>'seq')::bigint FROM unnest(%s::text[]) t", (TOPICS,))
    return all(last.get(t) == seq for t, seq in seqs)


async def _other(db, old):
    pid = await listen_backend(db)
    return pid is not None and pid != old


if __name__ == "__main__":
    unittest.main()
