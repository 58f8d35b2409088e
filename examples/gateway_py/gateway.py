#!/usr/bin/env python3
"""A WebSocket presence gateway on presence_client (clients/python), with
aiohttp: the page, the WebSocket protocol and the environment of
examples/gateway (see its README), in Python.

One process = one app worker (presence_client.Worker); each WebSocket is one
socket id, so one fd; one LISTEN connection (presence_client.Subscriber)
keeps a room per subscribed topic, and every socket subscribed to a topic
gets the room's snapshot, then the diffs the room applies, then a fresh
snapshot whenever the room resyncs.

    PORT=8081 python3 examples/gateway_py/gateway.py
"""

import asyncio
import datetime
import json
import logging
import math
import os
import pathlib
import signal
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "clients" / "python"))

from aiohttp import WSMsgType, web  # noqa: E402

import psycopg  # noqa: E402
from presence_client import PresenceError, Subscriber, Worker  # noqa: E402
from token_auth import TokenError, verify  # noqa: E402

env = os.environ
PORT = int(env.get("PORT", "8081"))
HOST = env.get("HOST", "127.0.0.1")
NAME = env.get("GATEWAY_NAME", f"gw-{PORT}")
CONNINFO = env.get("DATABASE_URL", "")
SECRET = env.get("PRESENCE_TOKEN_SECRET", "")
DEFAULT_TOPIC = env.get("PRESENCE_DEFAULT_TOPIC", "room:lobby")
DELIVERY = env.get("PRESENCE_DELIVERY") or None  # None: the server's presence.delivery
CHANNEL = env.get("PRESENCE_CHANNEL") or None
SHARDS = env.get("PRESENCE_SHARDS") == "1"
LEASE_S = float(env.get("PRESENCE_LEASE_S", "10"))
PUBLIC = HERE.parent / "gateway" / "public"
STATES = ("available", "busy", "blocked")
MAX_MESSAGE = 8192
MAX_SUBSCRIPTIONS = 32
MAX_QUEUED = 64
FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
         "/app.js": ("app.js", "text/javascript; charset=utf-8"), "/style.css": ("style.css", "text/css; charset=utf-8")}

log = logging.getLogger("gateway")
stats = {"diffs_relayed": 0, "client_errors": 0}


class ClientError(Exception):
    def __init__(self, error, message):
        super().__init__(message)
        self.error = error


class Conn:
    """One WebSocket: its socket id, identity, status and subscriptions."""

    next_id = 1

    def __init__(self, ws, topic, who):
        self.ws = ws
        self.sock = f"ws-{Conn.next_id}"
        Conn.next_id += 1
        self.topic = topic
        self.principal, self.kind, self.agent_id = who["principal"], who["kind"], who["agent_id"]
        self.meta = {"name": who["name"]} if who.get("name") else {}
        self.subs = {}  # topic -> "waiting" (for its first snapshot) or "live"
        self.lock = asyncio.Lock()  # one database call at a time, in arrival order
        self.pending = 0
        self.closed = False
        self.tracked = False

    def send(self, obj):
        if not self.ws.closed:
            asyncio.ensure_future(self._send(json.dumps(obj, ensure_ascii=False)))

    async def _send(self, text):
        try:
            await self.ws.send_str(text)
        except (ConnectionResetError, RuntimeError):
            pass  # the socket is closing: its close handler cleans up

    def error(self, error, message, ref=None, code=None):
        stats["client_errors"] += 1
        m = {"type": "error", "error": error, "message": message}
        if ref is not None:
            m["ref"] = ref
        if code:
            m["code"] = code
        self.send(m)

    def enqueue(self, coro_fn, force=False):
        if self.pending >= MAX_QUEUED and not force:
            raise ClientError("busy", "too many requests in flight")
        self.pending += 1

        async def run():
            try:
                async with self.lock:
                    return await coro_fn()
            finally:
                self.pending -= 1
        return asyncio.ensure_future(run())


class Gateway:
    def __init__(self):
        self.conns = set()
        self.topics = {}  # topic -> set of Conn
        self.stopping = False
        self.worker = Worker(CONNINFO, name=NAME, worker_id=NAME if SHARDS else None,
                             lease=datetime.timedelta(seconds=LEASE_S) if SHARDS else None, shards=SHARDS,
                             new_id_on_restart=not SHARDS,  # as examples/gateway: a new worker, a new id
                             application_name=f"presence-gateway:{NAME}:worker",
                             calls_application_name=f"presence-gateway:{NAME}:pool")
        self.worker.on("restart", self.on_worker_restart)
        self.sub = Subscriber(CONNINFO, delivery=DELIVERY, channel=CHANNEL, shards=SHARDS,
                              application_name=f"presence-gateway:{NAME}:pool",
                              listen_application_name=f"presence-gateway:{NAME}:listen", on_feed=self.on_feed)
        self.db = None

    # --- rooms to sockets ------------------------------------------------------

    def room(self, topic):
        known = topic in self.sub.feed.rooms
        room = self.sub.room(topic)
        if not known:
            room.on("diff", lambda d, room=room: self.relay(room, d))
            room.on("sync", lambda _entries, room=room: self.synced(room))
        return room

    def relay(self, room, d):
        for conn in self.topics.get(room.topic, ()):
            if conn.subs.get(room.topic) == "live":
                stats["diffs_relayed"] += 1
                conn.send({"type": "diff", "topic": room.topic, "seq": d["seq"], "diff": d})

    def synced(self, room):
        for conn in self.topics.get(room.topic, ()):
            reason = "subscribe" if conn.subs.get(room.topic) == "waiting" else room.reason
            self.send_snapshot(conn, room, reason)

    def send_snapshot(self, conn, room, reason):
        conn.subs[room.topic] = "live"
        conn.send({"type": "snapshot", "topic": room.topic, "seq": room.seq, "entries": room.list(),
                   "reason": reason})

    def on_feed(self, topics, live):
        if live:
            return  # each room resyncs: its sockets get a snapshot
        for topic in topics:
            for conn in self.topics.get(topic, ()):
                conn.send({"type": "feed", "topic": topic, "live": False})

    def subscribe(self, conn, topic):
        if topic not in conn.subs:
            if len(conn.subs) >= MAX_SUBSCRIPTIONS:
                raise ClientError("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions per socket")
            self.topics.setdefault(topic, set()).add(conn)
        room = self.room(topic)
        if room.synced and not room.pending:
            self.send_snapshot(conn, room, "subscribe")
        else:
            conn.subs[topic] = "waiting"

    async def unsubscribe(self, conn, topic):
        if conn.subs.pop(topic, None) is None:
            return
        subs = self.topics.get(topic)
        subs.discard(conn)
        if not subs:
            del self.topics[topic]
            await self.sub.unsubscribe(topic)

    # --- the worker ------------------------------------------------------------

    def hello(self, conn):
        conn.send({"type": "hello", "gateway": NAME, "worker_id": self.worker.id,
                   "fd": self.worker.fd_of(conn.sock), "topic": conn.topic, "principal": conn.principal,
                   "kind": conn.kind, "agent_id": conn.agent_id, "meta": conn.meta, "demo": not SECRET})

    def on_worker_restart(self, worker_id):
        log.warning("worker registered again as %s; its sockets were tracked again", worker_id)
        for conn in self.conns:
            if conn.tracked:
                self.hello(conn)

    async def track(self, conn):
        identity = {"principal": conn.principal, "agent": conn.agent_id}
        await self.worker.track(conn.topic, conn.sock, identity, conn.meta)
        conn.tracked = True
        self.hello(conn)

    async def counts(self, conn, topic, ref):
        async with self.db_lock:
            if self.db is None or self.db.closed:
                self.db = await psycopg.AsyncConnection.connect(
                    CONNINFO, autocommit=True, application_name=f"presence-gateway:{NAME}:pool")
            try:
                cur = await self.db.execute(
                    """SELECT count(*) FILTER (WHERE humans > 0), coalesce(sum(agents), 0),
                              coalesce(sum(connections), 0), presence_count_principals(%(t)s)
                         FROM presence_principals(%(t)s)""", {"t": topic})
                people, agents, connections, principals = await cur.fetchone()
            except psycopg.Error as e:
                if isinstance(e, psycopg.OperationalError):
                    await self.db.close()
                raise PresenceError.of(e) from None
        conn.send({"type": "counts", "topic": topic, "people": people, "agents": int(agents),
                   "connections": int(connections), "principals": principals, "ref": ref})

    # --- messages --------------------------------------------------------------

    def db_error(self, conn, e, ref):
        if isinstance(e, ClientError):
            conn.error(e.error, str(e), ref)
        elif isinstance(e, PresenceError) and (e.sqlstate or "")[:2] in ("22", "23", "P0"):
            conn.error("rejected", e.message, ref, e.sqlstate)
        else:
            log.warning("database call for %s failed: %s", conn.sock, e)
            conn.error("unavailable", "the database call failed; try again", ref)

    def call(self, conn, ref, fn):
        fut = conn.enqueue(fn)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception() is None or
                              self.db_error(conn, f.exception(), ref))

    def on_message(self, conn, msg):
        ref = None
        try:
            if msg.type == WSMsgType.BINARY:
                raise ClientError("bad_request", "binary messages are not supported")
            if len(msg.data.encode()) > MAX_MESSAGE:
                raise ClientError("bad_request", f"message over {MAX_MESSAGE} bytes")
            try:
                m = json.loads(msg.data)
            except ValueError:
                raise ClientError("bad_json", "message is not valid JSON") from None
            if not isinstance(m, dict):
                raise ClientError("bad_request", "message must be a JSON object")
            r = m.get("ref")
            if isinstance(r, str) or (isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r)):
                ref = r
            t = m.get("type")
            if t == "subscribe":
                self.subscribe(conn, check_topic(m.get("topic")))
            elif t == "unsubscribe":
                topic = check_topic(m.get("topic"))
                asyncio.ensure_future(self.unsubscribe(conn, topic))
                conn.send({"type": "unsubscribed", "topic": topic, "ref": ref})
            elif t == "status":
                state, note, expires, until = parse_status(m)

                async def status():
                    if not await self.worker.set_status(conn.topic, conn.sock, state, note, expires):
                        raise ClientError("not_tracked", "this socket has no presence entry")
                    conn.send({"type": "ok", "op": "status", "ref": ref, "state": state, "note": note,
                               "until_ts": until})
                self.call(conn, ref, status)
            elif t == "clear_status":
                async def clear():
                    if not await self.worker.clear_status(conn.topic, conn.sock):
                        raise ClientError("not_tracked", "this socket has no presence entry")
                    conn.send({"type": "ok", "op": "clear_status", "ref": ref})
                self.call(conn, ref, clear)
            elif t == "counts":
                topic = check_topic(m.get("topic"))
                self.call(conn, ref, lambda: self.counts(conn, topic, ref))
            elif t == "ping":
                conn.send({"type": "pong", "ref": ref})
            else:
                raise ClientError("unknown_type", f"unknown message type {json.dumps(str(t))[:80]}")
        except ClientError as e:
            conn.error(e.error, str(e), ref)

    async def websocket(self, request):
        if not self.worker.live or self.stopping:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        topic = request.query.get("topic") or DEFAULT_TOPIC
        try:
            check_topic(topic)
            who = verify(request.query.get("token", ""), SECRET)
        except (TokenError, ClientError) as e:
            await ws.send_str(json.dumps({"type": "error", "error": "unauthorized", "message": str(e)}))
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        conn = Conn(ws, topic, who)
        self.conns.add(conn)

        async def track():
            try:
                await self.track(conn)
            except PresenceError as e:
                if (e.sqlstate or "")[:2] in ("22", "23"):
                    conn.error("rejected", e.message, None, e.sqlstate)
                    await ws.close(code=4400, message=b"rejected")
                else:
                    log.warning("track of %s failed: %s", conn.sock, e)
                    conn.error("unavailable", "could not join; try again")
                    await ws.close(code=1011, message=b"unavailable")
        conn.enqueue(track)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self.on_message(conn, msg)
        finally:
            conn.closed = True
            self.conns.discard(conn)
            for t in list(conn.subs):
                await self.unsubscribe(conn, t)

            async def untrack():
                if not self.stopping:
                    await self.worker.untrack_socket(conn.sock)
            fut = conn.enqueue(untrack, force=True)
            fut.add_done_callback(lambda f: f.cancelled() or f.exception() is None or
                                  log.warning("untrack of %s failed: %s", conn.sock, f.exception()))
        return ws

    # --- HTTP -------------------------------------------------------------------

    async def http(self, request):
        path = request.path
        if path == "/ws":
            return await self.websocket(request)
        if request.method not in ("GET", "HEAD"):
            return json_response(405, {"error": "method not allowed"})
        if path == "/healthz":
            fs = self.sub.feed.stats
            body = {"ok": self.worker.live and self.sub.live, "gateway": NAME, "worker_id": self.worker.id,
                    "feed_live": self.sub.live, "sockets": len(self.conns), "topics": len(self.topics),
                    "delivery": self.sub.delivery, "channels": self.sub.channels(),
                    "worker_restarts": self.worker.stats["restarts"], "listen_reconnects": self.sub.stats["reconnects"],
                    "gaps": fs["gaps"], "resyncs": self.sub.stats["resyncs"], "diffs_relayed": stats["diffs_relayed"],
                    "bad_payloads": fs["malformed"], "forged": fs["forged"] + fs["unsigned"],
                    "epoch_changes": fs["epoch_changes"], "client_errors": stats["client_errors"]}
            if SHARDS:
                body["shards"] = self.sub.shard_status()
            return json_response(200, body)
        if path == "/config.json":
            return json_response(200, {"gateway": NAME, "demo": not SECRET, "default_topic": DEFAULT_TOPIC})
        f = FILES.get(path)
        if f is None:
            return json_response(404, {"error": "not found"})
        return web.Response(body=(PUBLIC / f[0]).read_bytes(), headers={
            "content-type": f[1], "cache-control": "no-cache",
            "content-security-policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:",
            "x-content-type-options": "nosniff"})

    # --- start and stop ---------------------------------------------------------

    async def run(self):
        self.db_lock = asyncio.Lock()
        await self.worker.start()
        await self.sub.start()  # LISTEN before any snapshot is taken
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.http)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, PORT, shutdown_timeout=0.5).start()
        log.warning("worker %s; listening on http://%s:%d/ (%s, %s delivery)", self.worker.id, HOST, PORT,
                    "signed tokens" if SECRET else "demo tokens", self.sub.delivery)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        self.stopping = True
        log.warning("leaving every topic and stopping")
        loop.call_later(5, os._exit, 1)
        n = await self.worker.stop()
        log.warning("worker %s stopped, %s entries dropped", self.worker.id, n)
        closing = [asyncio.ensure_future(c.ws.close(code=1001, message=b"gateway shutting down"))
                   for c in list(self.conns)]
        if closing:
            await asyncio.wait(closing, timeout=1)
        await self.sub.close()
        if self.db is not None:
            await self.db.close()
        try:
            await asyncio.wait_for(runner.cleanup(), 2)
        except asyncio.TimeoutError:
            pass


def json_response(status, obj):
    return web.Response(status=status, text=json.dumps(obj), content_type="application/json",
                        headers={"cache-control": "no-store"})


def check_topic(topic):
    if not isinstance(topic, str) or topic == "":
        raise ClientError("bad_request", "topic must be a non-empty string")
    if len(topic.encode()) > 255:
        raise ClientError("bad_request", "topic is over 255 bytes")
    return topic


def parse_status(m):
    """(state, note, expires for Worker.set_status, until_ts for the reply)."""
    if m.get("state") not in STATES:
        raise ClientError("bad_request", f"state must be one of {', '.join(STATES)}")
    note = m.get("note")
    note = "" if note is None else note
    if not isinstance(note, str):
        raise ClientError("bad_request", "note must be a string")
    exp, until = m.get("expires_in"), m.get("until_ts")
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if exp not in (None, 0):
        if not number(exp) or not math.isfinite(exp) or exp < 0 or exp > 10 * 365 * 86400:
            raise ClientError("bad_request", "expires_in must be a number of seconds")
        return m["state"], note, datetime.timedelta(seconds=exp), math.ceil(time.time() + exp)
    if until is not None:
        if not isinstance(until, int) or isinstance(until, bool) or abs(until) > 2 ** 53:
            raise ClientError("bad_request", "until_ts must be an integer (epoch seconds)")
        if until == 0:
            return m["state"], note, None, 0
        try:  # negative values are the extension's to reject
            at = datetime.datetime.fromtimestamp(until, datetime.timezone.utc)
        except (OverflowError, ValueError, OSError):
            raise ClientError("bad_request", "until_ts is out of range") from None
        return m["state"], note, at, until
    return m["state"], note, None, 0


def main():
    logging.basicConfig(level=logging.ERROR if env.get("GATEWAY_QUIET") else logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s [{NAME}] %(message)s")
    try:
        asyncio.run(Gateway().run())
    except (OSError, psycopg.Error, PresenceError) as e:
        print(f"[{NAME}] cannot start: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
