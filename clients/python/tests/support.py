"""What the integration tests share: the cluster run.sh started (PY_IT_*
and libpq's environment), an admin connection, pg_ctl, the watch tool."""

import asyncio
import json
import os
import subprocess
import sys
import unittest

import psycopg

CLUSTER = os.environ.get("PY_IT_CLUSTER", "")
KEY = os.environ.get("PY_IT_KEY", "")
PYTHON = os.environ.get("PYTHON", sys.executable)
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def needs_cluster(cls):
    return unittest.skipUnless(CLUSTER, "no test cluster (run through test/clients/python.sh)")(cls)


def pg_ctl(*args):
    cmd = [os.path.join(os.environ["PG_BINDIR"], "pg_ctl"), "-D", os.path.join(CLUSTER, "data"), *args]
    if os.environ.get("PY_IT_AS_POSTGRES") == "1":
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, cwd="/", check=True, stdout=subprocess.DEVNULL)


async def admin():
    return await psycopg.AsyncConnection.connect(autocommit=True, application_name="py-it-admin")


async def rows(conn, query, params=None):
    return await (await conn.execute(query, params)).fetchall()


async def wait_for(pred, timeout=10.0, every=0.05, what="a condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = await pred()
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


async def table_view(conn, topic):
    """presence_list_global(topic) as the watch tool prints entries."""
    rs = await rows(conn, """SELECT worker_id, fd, principal_id, kind, agent_id, status_state, status_note,
                                    status_until, meta FROM presence_list_global(%s)
                              ORDER BY worker_id COLLATE "C", fd""", (topic,))
    return [dict(zip(("worker_id", "fd", "principal", "ekind", "agent_id", "state", "note", "until_ts", "meta"), r))
            for r in rs]


class Watch:
    """python3 -m presence_client.watch as a subprocess; its lines."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, topics, key=KEY, exit_after=120):
        env = dict(os.environ, PYTHONPATH=HERE, PRESENCE_SIGNING_KEY=key)
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "presence_client.watch", "--exit-after", str(exit_after), *topics,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return cls(proc)

    async def _read(self):
        async for raw in self.proc.stdout:
            self.lines.append(json.loads(raw))

    def synced(self, topic):
        return any(ln.get("event") == "sync" and ln["topic"] == topic for ln in self.lines)

    async def finish(self):
        """SIGTERM; returns ({topic: final line}, stderr)."""
        self.proc.terminate()
        err = await asyncio.wait_for(self.proc.stderr.read(), 20)
        await asyncio.wait_for(self.proc.wait(), 20)
        await self.reader
        return {ln["topic"]: ln for ln in self.lines if ln.get("final")}, err.decode()
