"""presence_client: the two halves of a presence gateway, on psycopg 3.

    from presence_client import Subscriber, Worker

Subscriber: one LISTEN connection per process; room(topic) gives a
Room kept exact (snapshot, then diffs; resync on a gap, another epoch or a
lost connection; signatures checked). Worker: an app worker that tracks the
app's sockets and registers again when its connection is lost.
See clients/python/README.md and docs/protocol.md.
"""

from .errors import PresenceError
from .feed import Feed
from .room import Room
from .subscriber import Subscriber
from .worker import Worker

__all__ = ["PresenceError", "Feed", "Room", "Subscriber", "Worker"]
