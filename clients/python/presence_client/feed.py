"""The subscriber's dispatch, with no I/O: which notifications are
presence diffs of a subscribed topic, whether they are signed, and which
room they go to."""

import logging

from . import wire
from .room import Room, new_stats

log = logging.getLogger("presence_client")


class Feed:
    """Routes NOTIFY payloads to rooms.

    signing_keys: keys of which one must have signed each diff (empty: not
    checked); channel: the broadcast channel (presence.channel);
    topic_delivery: diffs arrive on each topic's own channel instead;
    resync(room, reason): called when a room needs a fresh snapshot.
    """

    def __init__(self, *, signing_keys=(), channel="tep_broadcast", topic_delivery=False, resync=None,
                 on_dropped=None):
        self.signing_keys = [k for k in signing_keys if k]
        self.channel = channel
        self.topic_delivery = topic_delivery
        self.rooms = {}
        self._channel_topics = {}  # topic delivery: channel -> set of topics
        self._resync = resync or (lambda room, reason: None)
        self.on_dropped = on_dropped  # on_dropped(reason, topic, payload): forged, unsigned, malformed
        self.stats = new_stats()

    def room(self, topic):
        """The topic's room, made on first use."""
        r = self.rooms.get(topic)
        if r is None:
            r = self.rooms[topic] = Room(topic, resync=self._room_resync, stats=self.stats)
            self._channel_topics.setdefault(wire.channel_of(topic), set()).add(topic)
        return r

    def drop(self, topic):
        """Forgets the topic's room; True when its channel has no topic left."""
        if self.rooms.pop(topic, None) is None:
            return False
        ch = wire.channel_of(topic)
        topics = self._channel_topics.get(ch, set())
        topics.discard(topic)
        if not topics:
            self._channel_topics.pop(ch, None)
            return True
        return False

    def channels(self):
        """The channels to LISTEN on."""
        return sorted(self._channel_topics) if self.topic_delivery else [self.channel]

    def _room_resync(self, room, reason):
        self._resync(room, reason)

    def _malformed(self, channel, e, topic, payload):
        self.stats["malformed"] += 1
        log.warning("presence: ignoring a malformed payload on %s: %s", channel, e)
        if self.on_dropped:
            self.on_dropped("malformed", topic, payload)

    def notification(self, channel, payload):
        """One NOTIFY; returns the room it went to, or None."""
        if self.topic_delivery:
            if channel not in self._channel_topics:
                return None
        elif channel != self.channel:
            return None
        try:
            topic = wire.topic_of(payload)
        except wire.WireError as e:
            self._malformed(channel, e, None, payload)
            return None
        room = self.rooms.get(topic) if topic is not None else None
        if room is None or (self.topic_delivery and wire.channel_of(topic) != channel):
            return None  # another topic, or another Tep broadcast topic, or not its channel
        text = wire.decode(payload)[1]
        try:
            diff = wire.parse_diff(topic, text)
        except wire.WireError as e:
            self._malformed(channel, e, topic, payload)
            return None
        if self.signing_keys:
            verdict = wire.verify(text, self.signing_keys)
            if verdict != "ok":
                self.stats[verdict] += 1
                log.warning("presence: dropping a diff on %s without a valid signature (%s): %.200s",
                            topic, verdict, payload)
                if self.on_dropped:
                    self.on_dropped(verdict, topic, payload)
                return None
        room.apply_diff(diff)
        return room
