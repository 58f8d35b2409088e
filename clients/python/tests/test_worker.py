"""The Worker against a real server: a gateway process killed with -9
leaves; a terminated dedicated connection is registered again with its
sockets; expiries are datetimes or timedeltas, never raw seconds; errors
carry the server's SQLSTATE."""

import asyncio
import datetime
import os
import signal
import sys
import unittest

from presence_client import PresenceError, Subscriber, Worker
from tests.support import HERE, PYTHON, admin, needs_cluster, rows, table_view, wait_for

GATEWAY = """
import asyncio, sys
from presence_client import Worker
async def main():
    w = await Worker(name="kill9").start()
    for i, topic in enumerate(["room:k9", "room:k9 ☕", "room:k9"]):
        await w.track(topic, f"sock-{i}", f"user:{i}")
    await w.set_status("room:k9", "sock-0", "busy", "", None)
    print(w.id, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@needs_cluster
class WorkerTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.db = await admin()
        self.sub = await Subscriber(signing_keys=[]).start()

    async def asyncTearDown(self):
        await self.sub.close()
        await self.db.close()

    async def test_killed_with_9_its_entries_leave(self):
        rooms = [self.sub.room(t) for t in ("room:k9", "room:k9 ☕")]
        for r in rooms:
            await r.wait_synced()
        proc = await asyncio.create_subprocess_exec(PYTHON, "-c", GATEWAY, env=dict(os.environ, PYTHONPATH=HERE),
                                                    stdout=asyncio.subprocess.PIPE)
        try:
            wid = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
            self.assertRegex(wid, r"^kill9-.+-\d+-[0-9a-f]{6}$")
            mine = lambda: sum(1 for r in rooms for e in r.list() if e["worker_id"] == wid)
            await wait_for(lambda: asyncio.sleep(0, mine() == 3), what="its three entries in the rooms")
            left = []
            for r in rooms:
                r.on("leave", left.append)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await wait_for(lambda: asyncio.sleep(0, mine() == 0), timeout=5, what="its entries leaving")
            self.assertEqual(sorted(e["principal"] for e in left), ["user:0", "user:1", "user:2"])
            (n,), = await rows(self.db, "SELECT count(*) FROM tep_presence WHERE worker_id = %s", (wid,))
            self.assertEqual(n, 0)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def test_dedicated_connection_terminated_registers_again(self):
        room = self.sub.room("room:retrack")
        await room.wait_synced()
        w = await Worker(name="retrack").start()
        restarted = asyncio.Event()
        w.on("restart", lambda wid: restarted.set())
        await w.track("room:retrack", "tab-1", "user:ann", {"name": "Ann"})
        await w.track("room:retrack", "bot", {"principal": "user:ann", "agent": "summarizer"})
        await w.set_status("room:retrack", "tab-1", "blocked", "on a call", datetime.timedelta(hours=1))
        before = await table_view(self.db, "room:retrack")
        self.assertEqual(len(before), 2)
        (pid,), = await rows(self.db, "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                             ("presence-worker:retrack",))
        await self.db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.wait_for(restarted.wait(), 10)
        self.assertEqual(w.stats["restarts"], 1)
        after = await table_view(self.db, "room:retrack")
        self.assertEqual(after, before, "the same id, fds, status (with its expiry) and meta")
        await wait_for(lambda: asyncio.sleep(0, sorted(e["fd"] for e in room.list()) == [1, 2]),
                       what="the room to show them again")
        # and the new registration is bound to a live connection again
        (n,), = await rows(self.db, """SELECT count(*) FROM tep_presence_worker w JOIN pg_stat_activity a
                                         ON a.pid = w.backend_pid WHERE w.worker_id = %s""", (w.id,))
        self.assertEqual(n, 1)
        self.assertEqual(await w.stop(), 2)
        self.assertEqual(await table_view(self.db, "room:retrack"), [])

    async def test_a_new_id_on_restart(self):
        w = await Worker(name="renew", new_id_on_restart=True).start()
        restarted = asyncio.Event()
        w.on("restart", lambda wid: restarted.set())
        old = w.id
        await w.track("room:renew", "tab", "user:ann", {"name": "Ann"})
        await w.set_status("room:renew", "tab", "busy", "x", datetime.timedelta(hours=1))
        before = await table_view(self.db, "room:renew")
        (pid,), = await rows(self.db, "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                             ("presence-worker:renew",))
        await self.db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.wait_for(restarted.wait(), 10)
        self.assertNotEqual(w.id, old)
        self.assertRegex(w.id, r"^renew-")
        want = [dict(before[0], worker_id=w.id)]  # the socket under the new id, as it was; the old one pruned
        await wait_for(lambda: _equals(
            table_view(self.db, "room:renew"), want), what="the old id pruned, the new one there")
        await w.stop()

    async def test_calls(self):
        w = await Worker(name="calls", worker_id="py-calls-worker").start()
        try:
            self.assertEqual(w.id, "py-calls-worker")
            self.assertTrue(await w.track("room:calls", "a", "user:a"))
            self.assertFalse(await w.track("room:calls", "a", "user:a"), "already there")
            self.assertTrue(await w.track("room:calls ☕", "a", "user:a"))
            self.assertTrue(await w.track("room:calls", "b", "user:b"))
            self.assertEqual((w.fd_of("a"), w.fd_of("b")), (1, 2))
            (now,), = await rows(self.db, "SELECT extract(epoch FROM now())::bigint")
            self.assertTrue(await w.set_status("room:calls", "a", "busy", "x", datetime.timedelta(minutes=10)))
            (until,), = await rows(self.db, "SELECT status_until FROM presence_find_entry('room:calls', 1, %s)",
                                   (w.id,))
            self.assertLessEqual(abs(until - (now + 600)), 2)
            at = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
            self.assertTrue(await w.set_status("room:calls", "a", "busy", "x", at))
            (until,), = await rows(self.db, "SELECT status_until FROM presence_find_entry('room:calls', 1, %s)",
                                   (w.id,))
            self.assertEqual(until, int(at.timestamp()))
            for raw in (600, 1.5, "600"):
                with self.assertRaises(TypeError):
                    await w.set_status("room:calls", "a", "busy", "x", raw)
            with self.assertRaises(PresenceError) as cm:
                await w.set_status("room:calls", "a", "sleepy")
            self.assertEqual(cm.exception.sqlstate, "22023")
            self.assertIn("state", cm.exception.message)
            with self.assertRaises(PresenceError) as cm:
                await w.track("room:calls", "c", {"principal": "user:c", "agent": "x" * 300})
            self.assertEqual(cm.exception.sqlstate, "22023")
            with self.assertRaises(TypeError):
                await w.track("room:calls", "c", 42)
            self.assertFalse(await w.set_status("room:calls", "nobody", "busy"), "not tracked")
            self.assertTrue(await w.set_meta("room:calls", "b", {"name": "Bé"}))
            (meta,), = await rows(self.db, "SELECT meta FROM presence_find_entry('room:calls', 2, %s)", (w.id,))
            self.assertEqual(meta, {"name": "Bé"})
            self.assertTrue(await w.untrack("room:calls", "b"))
            self.assertEqual(await w.untrack_socket("a"), 2, "both topics")
            self.assertEqual(await table_view(self.db, "room:calls"), [])
        finally:
            await w.stop()

    async def test_expiry_as_a_moment_where_the_server_takes_one(self):
        """Where presence_set_status takes a timestamptz (in flight
        elsewhere; a stand-in here until then), the Worker passes the moment
        itself, never seconds."""
        sig = "presence_set_status(text,integer,text,text,timestamptz,text)"
        (real,), = await rows(self.db, "SELECT to_regprocedure(%s) IS NOT NULL", (sig,))
        if not real:
            await self.db.execute("""
                CREATE TABLE py_moment_calls (until timestamptz);
                CREATE FUNCTION presence_set_status(topic text, fd integer, state text, note text,
                                                    until timestamptz, worker_id text) RETURNS boolean
                LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO py_moment_calls VALUES (until);
                    RETURN presence_set_status(topic, fd, state, note, ceil(extract(epoch FROM until))::bigint,
                                               worker_id);
                END $$""")
        w = await Worker(name="moment").start()
        try:
            await w.track("room:moment", "a", "user:a")
            at = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
            self.assertTrue(await w.set_status("room:moment", "a", "busy", "x", at))
            self.assertTrue(await w.set_status("room:moment", "a", "busy", "y", None))
            (until,), = await rows(self.db, "SELECT status_until FROM presence_find_entry('room:moment', 1, %s)",
                                   (w.id,))
            self.assertEqual(until, 0, "no expiry")
            if not real:
                self.assertEqual([u for (u,) in await rows(self.db, "SELECT until FROM py_moment_calls")], [at])
        finally:
            await w.stop()
            if not real:
                await self.db.execute(f"DROP FUNCTION {sig}; DROP TABLE py_moment_calls")


async def _equals(coro, want):
    return await coro == want


if __name__ == "__main__":
    unittest.main()
