"""The Subscriber against a real server: the delivery mode read from
presence.delivery, topic delivery LISTENing on exactly its topics'
channels (hashed ones too), and a reconnect resyncing every room in one
round trip."""

import asyncio
import unittest

from presence_client import Subscriber, Worker, wire
from tests.support import admin, needs_cluster, rows, table_view, wait_for

TOPICS = ["room:sub", "room:" + "x" * 60, "doc:" + "é" * 40]


@needs_cluster
class SubscriberTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.db = await admin()

    async def asyncTearDown(self):
        await self.db.execute("ALTER SYSTEM RESET presence.delivery")
        await self.db.execute("SELECT pg_reload_conf()")
        await self.db.close()

    async def set_delivery(self, mode):
        await self.db.execute(f"ALTER SYSTEM SET presence.delivery = '{mode}'")
        await self.db.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.3)

    async def test_delivery_from_the_server(self):
        for mode, want in (("topic", "topic"), ("both", "topic"), ("broadcast", "broadcast")):
            await self.set_delivery(mode)
            sub = await Subscriber(signing_keys=[]).start()
            self.assertEqual(sub.delivery, want, mode)
            await sub.close()

    async def test_topic_delivery_channels(self):
        await self.set_delivery("topic")
        sub = await Subscriber(signing_keys=[], application_name="py-sub-test").start()
        w = await Worker(name="subtest").start()
        try:
            rooms = [sub.room(t) for t in TOPICS]
            for r in rooms:
                await r.wait_synced()
            server = [c for (c,) in await rows(self.db, "SELECT presence_channel(t) FROM unnest(%s::text[]) t",
                                               (TOPICS,))]
            self.assertEqual(server, [wire.channel_of(t) for t in TOPICS])
            self.assertTrue(server[1].startswith("presence#") and server[2].startswith("presence#"))
            self.assertEqual(sub.channels(), sorted(server))
            for i, t in enumerate(TOPICS):
                await w.track(t, f"s{i}", f"user:{i}")
            await wait_for(lambda: asyncio.sleep(0, all(len(r) == 1 for r in rooms)), what="the joins")

            # a lost LISTEN connection: every room resynced, in one round trip
            queries = sub.stats["snapshot_queries"]
            (pid,), = await rows(self.db, """SELECT pid FROM pg_stat_activity WHERE application_name = 'py-sub-test'
                                              AND query LIKE 'LISTEN%%'""")
            await self.db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            for i, t in enumerate(TOPICS):  # while it is away
                await w.set_status(t, f"s{i}", "busy", "away")
            await wait_for(lambda: asyncio.sleep(0, all(r.list()[0]["state"] == "busy" for r in rooms)),
                           what="the resync")
            self.assertEqual(sub.stats["reconnects"], 1)
            self.assertEqual(sub.stats["snapshot_queries"], queries + 1)
            self.assertEqual(sub.channels(), sorted(server), "LISTENing again on the same channels")
            for r in rooms:
                self.assertEqual([(e["worker_id"], e["fd"], e["state"]) for e in r.list()],
                                 [(e["worker_id"], e["fd"], e["state"]) for e in await table_view(self.db, r.topic)])

            await sub.unsubscribe(TOPICS[1])
            self.assertEqual(sub.channels(), sorted([server[0], server[2]]))
        finally:
            await w.stop()
            await sub.close()

    async def test_snapshot_many_where_the_server_has_it(self):
        """presence_snapshot_many(text[]) (issue 23) answers a resync of
        every room in one call where it exists (else a stand-in that logs
        its calls shows it)."""
        (real,), = await rows(self.db, "SELECT to_regprocedure('presence_snapshot_many(text[])') IS NOT NULL")
        if not real:
            await self.db.execute("""
                CREATE TABLE py_many_calls (topics text[]);
                CREATE FUNCTION presence_snapshot_many(topics text[]) RETURNS SETOF json LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO py_many_calls VALUES (topics);
                    RETURN QUERY SELECT presence_snapshot(t) FROM unnest(topics) AS t;
                END $$""")
        sub = await Subscriber(signing_keys=[], application_name="py-sub-many").start()
        w = await Worker(name="many").start()
        try:
            rooms = [sub.room(t) for t in TOPICS]
            for r in rooms:
                await r.wait_synced()
            self.assertTrue(sub._has_many)
            (pid,), = await rows(self.db, """SELECT pid FROM pg_stat_activity WHERE application_name = 'py-sub-many'
                                              AND query LIKE 'LISTEN%%'""")
            await self.db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            for i, t in enumerate(TOPICS):  # while it is away
                await w.track(t, "s", f"user:{i}")
            await wait_for(lambda: asyncio.sleep(0, all(len(r) == 1 and not r.pending for r in rooms)),
                           what="the resync")
            for r in rooms:
                self.assertEqual([e["principal"] for e in r.list()],
                                 [e["principal"] for e in await table_view(self.db, r.topic)])
            if not real:
                calls = [sorted(t) for (t,) in await rows(self.db, "SELECT topics FROM py_many_calls")]
                self.assertEqual(calls[-1], sorted(TOPICS), "the resync: every room in one call")
                self.assertEqual(sorted(t for c in calls for t in c), sorted(TOPICS * 2), "and nothing else")
        finally:
            await w.stop()
            await sub.close()
            if not real:
                await self.db.execute("DROP FUNCTION presence_snapshot_many(text[]); DROP TABLE py_many_calls")

if __name__ == "__main__":
    unittest.main()
