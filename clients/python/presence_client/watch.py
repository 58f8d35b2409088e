"""python3 -m presence_client.watch [--exit-after SECONDS] TOPIC...

Prints one JSON line per applied change, {"topic", "epoch", "seq", "event",
"count"}, and when it exits (after --exit-after, SIGINT or SIGTERM) one
line per topic, {"final": true, "topic", "epoch", "seq", "entries"}, the
entries sorted by (worker_id, fd). Connection from libpq's environment,
signing key from PRESENCE_SIGNING_KEY (and _PREVIOUS), delivery from the
server's presence.delivery unless PRESENCE_DELIVERY (broadcast or topic)
says. Warnings, and the counters at exit, go to stderr.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

import psycopg

from .errors import PresenceError
from .subscriber import Subscriber

FINAL_KEYS = ("worker_id", "fd", "principal", "ekind", "agent_id", "state", "note", "until_ts", "meta")


def line(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def final(room):
    entries = sorted(room.list(), key=lambda e: (e["worker_id"], e["fd"]))
    return {"final": True, "topic": room.topic, "epoch": room.epoch, "seq": room.seq,
            "entries": [{k: e[k] for k in FINAL_KEYS} for e in entries]}


async def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m presence_client.watch", description=__doc__.split("\n\n")[1])
    p.add_argument("--exit-after", type=float, metavar="SECONDS")
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="presence-watch: %(message)s")
    sub = Subscriber(application_name="presence-watch", delivery=os.environ.get("PRESENCE_DELIVERY") or None)
    try:
        await sub.start()
    except (PresenceError, psycopg.Error, OSError) as e:
        sys.stderr.write(f"presence-watch: {e}\n")
        return 1
    rooms = []
    for topic in dict.fromkeys(args.topics):
        room = sub.room(topic)

        def emit(event, room=room):
            line({"topic": room.topic, "epoch": room.epoch, "seq": room.seq, "event": event, "count": len(room)})
        room.on("sync", lambda r, emit=emit: emit("sync"))
        for ev in ("join", "leave", "update"):
            room.on(ev, lambda *a, ev=ev, emit=emit: emit(ev))
        rooms.append(room)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await asyncio.wait_for(done.wait(), args.exit_after)
    except asyncio.TimeoutError:
        pass
    for room in rooms:
        line(final(room))
    sys.stderr.write(f"presence-watch: {json.dumps(sub.counters())}\n")
    await sub.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
