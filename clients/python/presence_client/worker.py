"""The writing half: one app worker per gateway process."""

import asyncio
import datetime
import json
import logging
import os
import secrets
import socket as socketlib

import psycopg

from .conn import Watched, backoff, connect
from .errors import PresenceError

log = logging.getLogger("presence_client")
STATES = ("available", "busy", "blocked")
WORKER_EVENTS = ("restart", "retrack_failed", "lost")


def identity_of(identity):
    if isinstance(identity, str):
        return {"principal": identity, "kind": "human", "agent_id": ""}
    if isinstance(identity, dict) and isinstance(identity.get("principal"), str):
        agent = identity.get("agent") or ""
        return {"principal": identity["principal"], "kind": "agent_for" if agent else "human", "agent_id": agent}
    raise TypeError('identity must be a principal id or {"principal": ..., "agent": ...}')


class Worker:
    """An app worker: registers an id (``<name>-<host>-<pid>-<random>``
    unless worker_id is given) on a dedicated connection, bound to it (or,
    with lease=timedelta, leased and heartbeated every third of it), and
    maps the app's socket ids (any hashable, usually strings) to fds.

    When the dedicated connection is lost (or a lease lapsed), the server
    drops the worker's entries; the Worker registers again (backoff), the
    same id (or, with new_id_on_restart, a new generated one, so that no
    call of the lost registration can meet the new one's entries), and
    tracks its live sockets again, with their last status and meta.
    Events (``worker.on(event, callback)``): ``lost(worker_id)``,
    ``restart(worker_id)``, ``retrack_failed(topic, socket, error)``.
    Calls raise PresenceError (with .sqlstate) when the server refuses.
    """

    def __init__(self, conninfo="", *, name="presence", worker_id=None, lease=None, shards=False,
                 new_id_on_restart=False, application_name=None, calls_application_name=None, keepalive=10.0):
        if lease is not None and not isinstance(lease, datetime.timedelta):
            raise TypeError("lease must be a datetime.timedelta")
        self.conninfo = conninfo
        self.name = name
        self.id = worker_id or self._new_id()
        # a generated id only: a given one is the app's to keep
        self.new_id_on_restart = new_id_on_restart and not worker_id
        self.lease = lease
        if shards and lease is None:
            raise TypeError("shards need a leased worker: pass lease")
        self.shards = shards
        self.application_name = application_name or f"presence-worker:{name}"
        self.calls_application_name = calls_application_name or self.application_name + ":calls"
        self.keepalive = keepalive
        self.stats = {"restarts": 0, "retracks": 0, "retrack_failures": 0}
        self._handlers = {e: [] for e in WORKER_EVENTS}
        self._dedicated = None
        self._calls = None
        self._calls_lock = asyncio.Lock()
        self._ready = None
        self._stopping = False
        self._fds = {}  # socket -> fd
        self._next_fd = 1
        self._entries = {}  # (topic, socket) -> {"principal", "kind", "agent_id", "meta", "status"}
        self._heartbeat = None
        self._restarting = None
        self._native_expiry = False
        self._native_interval = False
        self._takeover = False
        self._generation = 0  # registrations so far

    def _new_id(self):
        return f"{self.name}-{socketlib.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    def on(self, event, callback):
        if event not in self._handlers:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(WORKER_EVENTS)}")
        self._handlers[event].append(callback)
        return callback

    def _emit(self, event, *args):
        for cb in list(self._handlers[event]):
            try:
                cb(*args)
            except Exception:
                log.exception("presence: %s handler failed", event)

    # --- registration --------------------------------------------------------

    async def start(self):
        self._ready = asyncio.get_running_loop().create_future()
        (self._native_expiry, self._native_interval, self._takeover), = await self._call(
            """SELECT to_regprocedure('presence_set_status(text,integer,text,text,timestamptz,text)') IS NOT NULL,
                      to_regprocedure('presence_set_status(text,integer,text,text,interval,text)') IS NOT NULL,
                      EXISTS (SELECT FROM pg_proc WHERE proname = 'presence_worker_start'
                                 AND 'takeover' = ANY (proargnames))""", wait=False)
        await self._register()
        return self

    async def _register(self, again=False):
        conn = await connect(self.conninfo, self.application_name)
        # Our own id whose connection was lost: taken over even if the old
        # backend has not exited yet (where the server knows takeover).
        takeover = ", takeover => true" if again and self._takeover else ""
        try:
            if self.lease is None:
                await conn.execute(f"SELECT presence_worker_start(%s::text{takeover})", (self.id,))
            else:
                await conn.execute(f"SELECT presence_worker_start(%s::text, %s::interval{takeover})",
                                   (self.id, self.lease))
        except BaseException as e:
            await conn.close()
            raise PresenceError.of(e) if isinstance(e, psycopg.Error) else e
        self._generation += 1
        self._dedicated = Watched(conn, on_lost=lambda w: self._lost("connection lost"),
                                  keepalive=None if self.lease else self.keepalive)
        if self.lease is not None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(self._dedicated))
        if not self._ready.done():
            self._ready.set_result(self.id)

    async def _beat(self, watched):
        every = self.lease.total_seconds() / 3
        while not watched.lost:
            await asyncio.sleep(every)
            try:
                (ok,), = await watched.execute("SELECT presence_heartbeat(%s::text)", (self.id,))
            except psycopg.Error as e:
                if watched.lost:
                    return
                if (e.sqlstate or "").startswith("22"):
                    ok = False  # the worker is unknown: it lapsed and was pruned
                else:
                    continue
            if not ok:
                log.warning("presence: worker %s: lease lapsed; registering again", self.id)
                await watched.close()
                self._lost("lease lapsed")
                return

    def _lost(self, why):
        if self._stopping or self._restarting:
            return
        log.warning("presence: worker %s: %s; its entries are gone, registering again", self.id, why)
        self._ready = asyncio.get_running_loop().create_future()
        self._emit("lost", self.id)
        self._restarting = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self):
        try:
            for attempt in range(1 << 30):
                if self._stopping:
                    return
                await asyncio.sleep(backoff(attempt))
                if self.new_id_on_restart:
                    self.id = self._new_id()
                try:
                    await self._register(again=not self.new_id_on_restart)
                    break
                except (PresenceError, psycopg.Error, OSError) as e:
                    log.warning("presence: worker %s: registering again failed: %s", self.id, e)
            self.stats["restarts"] += 1
            await self._retrack()
        finally:
            self._restarting = None
        self._emit("restart", self.id)

    async def _retrack(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        for (topic, sock), e in list(self._entries.items()):
            try:
                await self._track_call(topic, sock, e)
                st = e["status"]
                if st and (st["until"] is None or st["until"] > now):
                    await self._status_call(topic, sock, st["state"], st["note"], st["until"])
                self.stats["retracks"] += 1
            except PresenceError as err:
                self.stats["retrack_failures"] += 1
                log.warning("presence: tracking %s in %s again failed: %s", sock, topic, err)
                self._emit("retrack_failed", topic, sock, err)

    async def stop(self):
        """presence_worker_stop: every entry leaves now; closes the connections."""
        self._stopping = True
        if self._restarting:
            self._restarting.cancel()
        n = 0
        try:
            if self._dedicated and not self._dedicated.lost:
                (n,), = await self._dedicated.execute("SELECT presence_worker_stop(%s::text)", (self.id,))
        except psycopg.Error as e:
            log.warning("presence: presence_worker_stop failed: %s", e)
        if self._heartbeat:
            self._heartbeat.cancel()
        if self._dedicated:
            await self._dedicated.close()
        if self._calls:
            await self._calls.close()
        return n

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    @property
    def live(self):
        return self._ready is not None and self._ready.done() and not self._stopping

    # --- calls -----------------------------------------------------------------

    def fd_of(self, socket):
        """The fd of a socket id (given at its first track)."""
        fd = self._fds.get(socket)
        if fd is None:
            fd = self._fds[socket] = self._next_fd
            self._next_fd += 1
        return fd

    async def _call(self, query, params=None, wait=True):
        if wait:
            await asyncio.shield(self._ready)
        async with self._calls_lock:
            try:
                if self._calls is None or self._calls.closed:
                    self._calls = await connect(self.conninfo, self.calls_application_name)
                cur = await self._calls.execute(query, params)
                return await cur.fetchall()
            except psycopg.Error as e:
                if isinstance(e, psycopg.OperationalError) and self._calls is not None:
                    await self._calls.close()
                raise PresenceError.of(e) from None

    async def _spanning(self, fn):
        """fn() under the current registration: run again when it spanned a
        re-registration (the server may have dropped what it did with the
        lost one's entries), or failed while the worker was being lost."""
        await asyncio.shield(self._ready)
        gen = self._generation
        try:
            result = await fn()
        except PresenceError as e:
            if self._ready.done() and gen == self._generation:
                if e.sqlstate != "55000":
                    raise
                # the server says this id's connection ended, a loss not
                # noticed here yet: register again now
                await self._dedicated.close()
                self._lost("its connection ended (55000)")
            await asyncio.shield(self._ready)
            return await fn()
        if gen != self._generation:
            await asyncio.shield(self._ready)
            result = await fn()
        return result

    async def _track_call(self, topic, sock, e):
        # arguments typed: the server's functions may have overloads
        (new,), = await self._call(
            "SELECT presence_track(%s::text, %s::int, %s::text, %s::text, %s::text,"
            " meta => %s::jsonb, worker_id => %s::text)",
            (topic, self.fd_of(sock), e["principal"], e["kind"], e["agent_id"], json.dumps(e["meta"]), self.id))
        return new

    async def track(self, topic, socket, identity, meta=None):
        """The socket joins topic as identity: a principal id ("user:42", a
        human) or {"principal": "user:42", "agent": "summarizer-bot"} (an
        agent acting for user:42). True when the entry is new."""
        e = dict(identity_of(identity), meta=meta or {}, status=None)
        new = await self._spanning(lambda: self._track_call(topic, socket, e))
        self._entries.setdefault((topic, socket), e)
        return new

    @staticmethod
    def _deadline(expires):
        """SQL for the moment an expiry ends, and its parameter: None (or 0)
        = none; a datetime (aware, or local time) that moment; a timedelta,
        that long after the server's now(). Raw numbers are refused: seconds
        from now and epoch seconds are too easy to confuse."""
        if expires is None or (type(expires) is int and expires == 0):
            return "NULL::timestamptz", []
        if isinstance(expires, datetime.datetime):
            return "%s::timestamptz", [expires if expires.tzinfo else expires.astimezone()]
        if isinstance(expires, datetime.timedelta):
            return "now() + %s::interval", [expires]
        raise TypeError("expires must be a datetime, a timedelta or None (not a number of seconds)")

    async def _status_call(self, topic, sock, state, note, expires):
        """(found, the deadline as the server computed it, or None)."""
        deadline, params = self._deadline(expires)
        # The duration or the moment itself where presence_set_status takes
        # an interval or a timestamptz, else until_ts as epoch seconds.
        # d, the moment, is kept to set the status again after a restart.
        args = []
        if not params:
            until = "0::bigint"
        elif isinstance(expires, datetime.timedelta) and self._native_interval:
            until, args = "%s::interval", params
        elif self._native_expiry:
            until = "d"
        else:
            until = "ceil(extract(epoch FROM d))::bigint"
        (ok, d), = await self._call(
            f"SELECT presence_set_status(%s::text, %s::int, %s::text, %s::text, {until}, %s::text), d"
            f" FROM (SELECT {deadline} AS d) s",
            [topic, self.fd_of(sock), state, note] + args + [self.id] + params)
        return ok, d

    async def set_status(self, topic, socket, state, note="", expires=None):
        """The socket's status in topic; expires: a datetime, a timedelta
        from now, or None. False when the socket is not tracked there."""
        self._deadline(expires)  # refuses numbers before anything is sent
        ok, until = await self._spanning(lambda: self._status_call(topic, socket, state, note, expires))
        e = self._entries.get((topic, socket))
        if ok and e:
            e["status"] = {"state": state, "note": note, "until": until}
        return ok

    async def clear_status(self, topic, socket):
        (ok,), = await self._call("SELECT presence_clear_status(%s::text, %s::int, %s::text)",
                                  (topic, self.fd_of(socket), self.id))
        e = self._entries.get((topic, socket))
        if e:
            e["status"] = None
        return ok

    async def set_meta(self, topic, socket, meta):
        (ok,), = await self._spanning(lambda: self._call("SELECT presence_set_meta(%s::text, %s::int, %s::jsonb, %s::text)",
                                                         (topic, self.fd_of(socket), json.dumps(meta), self.id)))
        e = self._entries.get((topic, socket))
        if ok and e:
            e["meta"] = meta
        return ok

    async def untrack(self, topic, socket):
        """The socket leaves topic."""
        self._entries.pop((topic, socket), None)
        if socket not in self._fds:
            return False
        (ok,), = await self._call("SELECT presence_untrack(%s::text, %s::int, %s::text)",
                                  (topic, self._fds[socket], self.id))
        if not any(s == socket for _, s in self._entries):
            self._fds.pop(socket, None)
        return ok

    async def untrack_socket(self, socket):
        """The socket leaves every topic (it closed); entries dropped."""
        topics = [k[0] for k in self._entries if k[1] == socket]
        for key in [k for k in self._entries if k[1] == socket]:
            del self._entries[key]
        fd = self._fds.pop(socket, None)
        if fd is None:
            return 0
        if self.shards:
            # presence_untrack_by_fd would skip a shard that is down
            n = 0
            for topic in topics:
                (ok,), = await self._call("SELECT presence_untrack(%s::text, %s::int, %s::text)", (topic, fd, self.id))
                n += ok
            return n
        (n,), = await self._call("SELECT presence_untrack_by_fd(%s::int, %s::text)", (fd, self.id))
        return n
