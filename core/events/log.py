"""Events in the core's SQLite store: written in batches, read back in id order, pruned.

Blocking, like the rest of the store; the bus calls it in worker threads.

Ids are reserved in blocks (``meta.event_id`` holds the highest id handed out), so after a crash
that lost unwritten events the next id is still above every id a subscriber may have seen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from core.events.model import Event
from core.store import Store

ID_BLOCK = 10_000


class EventLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def reserve(self, count: int = ID_BLOCK) -> tuple[int, int]:
        """Reserve ``count`` ids; returns ``(first, last)``."""
        with self.store.write() as db:
            high = int(db.execute("SELECT value FROM meta WHERE key = 'event_id'").fetchone()[0])
            db.execute("UPDATE meta SET value = ? WHERE key = 'event_id'", (str(high + count),))
        return high + 1, high + count

    def last_id(self) -> int:
        with self.store.read() as db:
            row = db.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)

    def first_id(self) -> int:
        with self.store.read() as db:
            row = db.execute("SELECT MIN(id) FROM events").fetchone()
        return int(row[0] or 0)

    def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self.store.write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO events (id, time, kind, resource, data)"
                " VALUES (?, ?, ?, ?, ?)",
                [(e.id, e.time, e.kind, e.resource, e.data_mp) for e in events],
            )

    def read(self, after: int, before: int, limit: int = 1000) -> list[Event]:
        """Events with ``after < id < before``, oldest first, at most ``limit``."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT id, time, kind, resource, data FROM events"
                " WHERE id > ? AND id < ? ORDER BY id LIMIT ?",
                (after, before, limit),
            ).fetchall()
        return [Event(int(i), float(t), str(k), str(r), bytes(d)) for i, t, k, r, d in rows]

    def latest(self, kinds: Sequence[str]) -> dict[str, float]:
        """The time of the newest event of ``kinds``, per resource (one scan, newest first)."""
        marks = ",".join("?" * len(kinds))
        with self.store.read() as db:
            rows = db.execute(
                f"SELECT resource, MAX(time) FROM events WHERE kind IN ({marks}) GROUP BY resource",
                tuple(kinds),
            ).fetchall()
        return {str(r): float(t) for r, t in rows}

    def prune(self, keep: int, max_age: float, now: float | None = None) -> int:
        """Delete events beyond the newest ``keep`` and older than ``max_age`` seconds."""
        now = time.time() if now is None else now
        with self.store.write() as db:
            removed = db.execute("DELETE FROM events WHERE time < ?", (now - max_age,)).rowcount
            high = db.execute("SELECT MAX(id) FROM events").fetchone()[0]
            if high is not None:
                cut = db.execute(
                    "SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (keep,)
                ).fetchone()
                if cut is not None:
                    removed += db.execute("DELETE FROM events WHERE id <= ?", (cut[0],)).rowcount
        return int(removed)

    # -- webhook deliveries (de-duplicated across restarts) -----------------------------------
    def first_delivery(self, delivery: str, now: float, ttl: float) -> bool:
        """True the first time ``delivery`` is seen within ``ttl`` seconds."""
        with self.store.write() as db:
            db.execute("DELETE FROM webhook_deliveries WHERE seen_at < ?", (now - ttl,))
            cur = db.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (delivery, seen_at) VALUES (?, ?)",
                (delivery, now),
            )
            return cur.rowcount == 1
