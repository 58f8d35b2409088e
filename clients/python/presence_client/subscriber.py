"""The reading half: one LISTEN connection per process (one per shard in
shard mode), rooms kept exact by snapshot + diffs (docs/protocol.md)."""

import asyncio
import logging
import os

import psycopg
from psycopg import sql

from .conn import Watched, backoff, connect
from .errors import PresenceError
from .feed import Feed
from .wire import channel_of

log = logging.getLogger("presence_client")


def env_signing_keys():
    """The keys of PRESENCE_SIGNING_KEY and PRESENCE_SIGNING_KEY_PREVIOUS."""
    return [k for k in (os.environ.get("PRESENCE_SIGNING_KEY"),
                        os.environ.get("PRESENCE_SIGNING_KEY_PREVIOUS")) if k]


def check_topic(topic):
    if not isinstance(topic, str) or topic == "":
        raise ValueError("topic must be a non-empty string")
    if len(topic.encode()) > 255:
        raise ValueError("topic is over 255 bytes")


class _Listener:
    """One LISTEN connection (the database's, or a shard's) and the
    channels LISTENed on it."""

    def __init__(self, conninfo):
        self.conninfo = conninfo
        self.watched = None
        self.channels = set()
        self.attempt = 0

    @property
    def live(self):
        return self.watched is not None and not self.watched.lost


class Subscriber:
    """Rooms of topics, kept live.

    conninfo: libpq's (empty: its environment); signing_keys: the keys a
    diff must be signed with (default: PRESENCE_SIGNING_KEY and
    PRESENCE_SIGNING_KEY_PREVIOUS; empty: not checked); delivery:
    'broadcast' or 'topic' (default: the server's presence.delivery, 'both'
    read as 'topic'); channel: presence.channel (default: the server's);
    shards: the database is a presence_proxy one, LISTEN on every shard.
    """

    def __init__(self, conninfo="", *, signing_keys=None, delivery=None, channel=None, shards=False,
                 application_name="presence-client", listen_application_name=None, on_feed=None,
                 on_dropped=None, keepalive=10.0):
        self.conninfo = conninfo
        self.delivery = delivery
        self.shards = shards
        self.application_name = application_name
        self.listen_application_name = listen_application_name or application_name
        self.on_feed = on_feed  # on_feed(topics, live): a LISTEN connection went down or came back
        self.keepalive = keepalive
        self.feed = Feed(signing_keys=env_signing_keys() if signing_keys is None else signing_keys,
                         channel=channel or "tep_broadcast", resync=self._room_resync, on_dropped=on_dropped)
        self._channel_given = channel is not None
        self.stats = {"reconnects": 0, "resyncs": 0, "snapshot_queries": 0}
        self._query = None
        self._listeners = {}  # conninfo -> _Listener
        self._shard_of = {}  # topic -> conninfo of its listener
        self._pending = {}  # topic -> reason, rooms waiting for a snapshot
        self._wake = asyncio.Event()
        self._closed = False
        self._tasks = set()
        self._has_many = False

    # --- public --------------------------------------------------------

    async def start(self):
        """Connects: the query connection, then the LISTEN connection(s)."""
        await self._query_conn()
        rows = await self._q("SELECT to_regprocedure('presence_snapshot_many(text[])') IS NOT NULL")
        self._has_many = rows[0][0]
        if self.shards:
            rows = await self._q("SELECT connstr FROM presence_shards()")
            if not rows:
                raise PresenceError(None, "presence_shards() is empty: is this a presence_proxy database?")
            for (connstr,) in rows:
                self._listeners[connstr] = _Listener(connstr)
        else:
            self._listeners[self.conninfo] = _Listener(self.conninfo)
        first = True
        for lis in self._listeners.values():
            try:
                await self._listen(lis, settings=first)
                first = False
            except psycopg.Error as e:
                if not self.shards:
                    raise PresenceError.of(e) from None
                log.warning("presence: shard %s: LISTEN failed (%s); retrying", lis.conninfo, e)
                self._spawn(self._reconnect(lis))
        self._spawn(self._syncer())
        return self

    def room(self, topic):
        """The topic's Room, at once (to attach handlers before its first
        sync); its snapshot is taken in the background (await
        room.wait_synced() for it). Asking again returns the same room."""
        check_topic(topic)
        room = self.feed.rooms.get(topic)
        if room is None:
            room = self.feed.room(topic)
            room.begin_snapshot()
            self._request(room, "subscribe")
        return room

    async def subscribe(self, topic):
        """The topic's Room, once it has applied its first snapshot."""
        room = self.room(topic)
        await room.wait_synced()
        return room

    def counters(self):
        """Dropped diffs (forged, unsigned, stale, malformed), gaps, epoch
        changes, reconnects, resyncs, snapshots, ..."""
        return {**self.feed.stats, **self.stats}

    async def unsubscribe(self, topic):
        self._pending.pop(topic, None)
        lis = self._listener_of(topic)
        last = self.feed.drop(topic)
        self._shard_of.pop(topic, None)
        if last and self.feed.topic_delivery and lis and lis.live:
            ch = channel_of(topic)
            if ch in lis.channels:
                lis.channels.discard(ch)
                try:
                    await lis.watched.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(ch)))
                except psycopg.Error:
                    pass

    @property
    def rooms(self):
        return dict(self.feed.rooms)

    @property
    def live(self):
        return all(lis.live for lis in self._listeners.values())

    def shard_status(self):
        """[{"connstr", "live"}] of every LISTEN connection (shard mode)."""
        return [{"connstr": c, "live": lis.live} for c, lis in self._listeners.items()]

    def channels(self):
        """The channels LISTENed now, over all LISTEN connections."""
        return sorted(set().union(*(lis.channels for lis in self._listeners.values() if lis.live)))

    async def close(self):
        self._closed = True
        self._wake.set()
        for t in list(self._tasks):
            t.cancel()
        for lis in self._listeners.values():
            if lis.watched:
                await lis.watched.close()
        if self._query:
            await self._query.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    # --- connections ---------------------------------------------------

    def _spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def _query_conn(self):
        if self._query is None or self._query.closed:
            self._query = await connect(self.conninfo, self.application_name)
        return self._query

    async def _q(self, query, params=None):
        conn = await self._query_conn()
        try:
            cur = await conn.execute(query, params)
            return await cur.fetchall()
        except psycopg.OperationalError:
            await conn.close()
            raise

    async def _listen(self, lis, settings=False):
        """Connects lis, reads the server's settings (the first time),
        LISTENs on its channels."""
        conn = await connect(lis.conninfo, self.listen_application_name)
        try:
            if settings:
                rows = await (await conn.execute(
                    "SELECT current_setting('presence.delivery', true), current_setting('presence.channel', true)"
                )).fetchall()
                delivery, channel = rows[0]
                if self.delivery is None:
                    self.delivery = "topic" if delivery in ("topic", "both") else "broadcast"
                if not self._channel_given and channel:
                    self.feed.channel = channel
                self.feed.topic_delivery = self.delivery == "topic"
            channels = [self.feed.channel] if not self.feed.topic_delivery else \
                sorted({ch for t, ch in self._topic_channels() if self._listener_of(t) is lis})
            for ch in channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ch)))
        except BaseException:
            await conn.close()
            raise
        lis.channels = set(channels)
        lis.watched = Watched(conn, on_notify=self.feed.notification, on_lost=self._lost,
                              keepalive=self.keepalive)
        lis.attempt = 0

    def _topic_channels(self):
        return [(t, channel_of(t)) for t in self.feed.rooms]

    def _listener_of(self, topic):
        if not self.shards:
            return next(iter(self._listeners.values()), None)
        return self._listeners.get(self._shard_of.get(topic))

    def _lost(self, watched):
        lis = next((x for x in self._listeners.values() if x.watched is watched), None)
        if lis is None or self._closed:
            return
        log.warning("presence: LISTEN connection %s lost; reconnecting with backoff", lis.conninfo or "(default)")
        lis.channels = set()
        down = []
        for topic, room in self.feed.rooms.items():
            if self._listener_of(topic) is lis:
                room.gen += 1  # a snapshot in flight is dropped: asked again once LISTEN is back
                self._pending.pop(topic, None)
                down.append(topic)
        if self.on_feed:
            self.on_feed(down, False)
        self._spawn(self._reconnect(lis))

    async def _reconnect(self, lis):
        while not self._closed:
            await asyncio.sleep(backoff(lis.attempt))
            lis.attempt += 1
            try:
                await self._listen(lis)
            except psycopg.Error as e:
                log.warning("presence: LISTEN reconnect failed: %s", e)
                continue
            self.stats["reconnects"] += 1
            log.warning("presence: LISTEN connection back; resyncing its rooms")
            up = [t for t in self.feed.rooms if self._listener_of(t) is lis]
            for topic in up:
                self.feed.rooms[topic].reconnected()
            if self.on_feed:
                self.on_feed(up, True)
            return

    # --- snapshots ---------------------------------------------------------

    def _room_resync(self, room, reason):
        self._request(room, reason)

    def _request(self, room, reason):
        if reason != "subscribe":
            self.stats["resyncs"] += 1
            log.info("presence: resyncing %s (%s)", room.topic, reason)
        self._pending[room.topic] = reason
        self._wake.set()

    async def _syncer(self):
        """Takes the snapshots rooms wait for, as many per round trip as
        the server allows, once each room's channel is LISTENed."""
        attempt = 0
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._closed:
                try:
                    if not await self._sync_some():
                        break  # the rest wait for their LISTEN connection
                    attempt = 0
                except (psycopg.Error, OSError) as e:
                    if isinstance(e, psycopg.Error) and (e.sqlstate or "").startswith("22"):
                        log.error("presence: snapshot refused: %s", e)
                    else:
                        log.warning("presence: snapshot failed (%s); retrying", e)
                    await asyncio.sleep(backoff(attempt))
                    attempt += 1

    async def _sync_some(self):
        ready = []
        for topic in list(self._pending):
            if self.shards and topic not in self._shard_of:
                (s,), = await self._q("SELECT presence_shard(%s)", (topic,))
                self._shard_of[topic] = s
            lis = self._listener_of(topic)
            if topic in self._pending and lis is not None and lis.live:
                ready.append((topic, lis))
        if not ready:
            return False
        # LISTEN before the snapshot, so no diff committed after it is missed
        if self.feed.topic_delivery:
            for topic, lis in ready:
                ch = channel_of(topic)
                if ch not in lis.channels:
                    await lis.watched.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ch)))
                    lis.channels.add(ch)
        gens = {}
        for topic, _ in ready:
            room = self.feed.rooms.get(topic)
            if room is not None and self._pending.pop(topic, None) is not None:
                gens[topic] = room.gen
        if not gens:
            return True
        try:
            snaps = await self._snapshots(list(gens))
        except BaseException:
            for topic in gens:  # asked again, unless superseded meanwhile
                room = self.feed.rooms.get(topic)
                if room is not None and room.gen == gens[topic]:
                    self._pending.setdefault(topic, "retry")
            raise
        for topic, snap in snaps.items():
            room = self.feed.rooms.get(topic)
            lis = self._listener_of(topic)
            if room is None or room.gen != gens.get(topic) or lis is None or not lis.live:
                continue  # unsubscribed, resynced again, or its LISTEN was lost meanwhile
            room.apply_snapshot(snap)
        return True

    async def _snapshots(self, topics):
        self.stats["snapshot_queries"] += 1
        if self._has_many:
            rows = await self._q("SELECT s FROM presence_snapshot_many(%s::text[]) AS s", (topics,))
            return {s["topic"]: s for (s,) in rows}
        rows = await self._q("SELECT t, presence_snapshot(t) FROM unnest(%s::text[]) AS t", (topics,))
        return {t: s for t, s in rows}
