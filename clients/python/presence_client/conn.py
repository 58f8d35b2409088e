"""A psycopg AsyncConnection kept idle and watched: notifications and the
connection's loss are noticed while no command runs (a reader on its
socket), and commands are serialised with that reader."""

import asyncio
import logging
import random

import psycopg

log = logging.getLogger("presence_client")

BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0


def backoff(attempt, lo=BACKOFF_MIN, hi=BACKOFF_MAX):
    """Seconds to wait before attempt n (0-based): doubling, with jitter."""
    return min(hi, lo * 2 ** attempt) * (0.75 + random.random() * 0.5)


async def connect(conninfo, application_name):
    # TCP keepalives: a silently dead peer is noticed in about 25 s, not
    # after the kernel's two hours (libpq ignores them on Unix sockets)
    return await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, application_name=application_name, client_encoding="UTF8",
        keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)


class Watched:
    """conn, watched; on_notify(channel, payload) per notification,
    on_lost(self) once when the connection is gone."""

    def __init__(self, conn, *, on_notify=None, on_lost=None, keepalive=10.0):
        self.conn = conn
        self.lost = False
        self._on_notify = on_notify
        self._on_lost = on_lost
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._fd = conn.fileno()
        if on_notify:
            conn.add_notify_handler(lambda n: on_notify(n.channel, n.payload))
        self._loop.add_reader(self._fd, self._readable)
        self._keepalive = asyncio.create_task(self._keep(keepalive)) if keepalive else None

    def _readable(self):
        pg = self.conn.pgconn
        try:
            pg.consume_input()
            while (n := pg.notifies()) is not None:
                if self._on_notify:
                    self._on_notify(n.relname.decode(), n.extra.decode())
        except Exception as e:  # the server closed it, or the socket broke
            self._mark_lost(e)
            return
        if pg.status != psycopg.pq.ConnStatus.OK:
            self._mark_lost(None)

    async def execute(self, query, params=None):
        """Runs query; returns its rows (or None). Raises psycopg.Error."""
        async with self._lock:
            if self.lost:
                raise psycopg.OperationalError("the connection is lost")
            self._loop.remove_reader(self._fd)
            try:
                cur = await self.conn.execute(query, params)
                return await cur.fetchall() if cur.description else None
            except psycopg.OperationalError as e:
                self._mark_lost(e)
                raise
            finally:
                if not self.lost:
                    self._loop.add_reader(self._fd, self._readable)
                    self._readable()

    async def _keep(self, every):
        while not self.lost:
            await asyncio.sleep(every)
            try:
                await self.execute("SELECT 1")
            except psycopg.Error:
                pass

    def _mark_lost(self, e):
        if self.lost:
            return
        self.lost = True
        try:
            self._loop.remove_reader(self._fd)
        except Exception:
            pass
        if self._keepalive and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        log.debug("presence: connection lost: %s", e)
        self._loop.create_task(self._close_quietly())
        if self._on_lost:
            self._loop.call_soon(self._on_lost, self)

    async def _close_quietly(self):
        try:
            await self.conn.close()
        except Exception:
            pass

    async def close(self):
        """Closes the connection without calling on_lost."""
        self._on_lost = None
        self._mark_lost(None)
        await self.conn.close()
