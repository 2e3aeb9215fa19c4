"""The event bus: publish, keep, fan out, replay.

``publish`` gives the event the next id, keeps it in a ring of recent events, queues it for the
store and offers it to every subscriber, all at once and without waiting: a subscriber's queue
is bounded, and one that is full drops the event and remembers the ids it missed (reported to
it as ``lagged``, or the subscriber is closed, as it chose). Nothing a subscriber does can slow a
publisher.

``run`` owns the writer: pending events go to SQLite in batches (every ``flush_interval``), and
old ones are pruned by count and age.

Replay without a gap or a duplicate: ``subscribe(since=N)`` registers the subscriber and takes a
snapshot of the ring in the same step (no ``await`` between), so every event after the snapshot
reaches the subscriber's queue. ``Subscription.replay()`` then yields the events after ``N`` up to
the snapshot: older ones from the store (after waiting until the writer has stored them), newer
ones from the snapshot.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from core.events.log import ID_BLOCK, EventLog
from core.events.model import Event, Filter

log = logging.getLogger(__name__)

STORE_WAIT = 10.0  # how long a replay waits for the writer to store what it must read back


@dataclass(frozen=True)
class BusSettings:
    ring: int = 4096  # recent events kept in memory (replays from here need no store read)
    flush_interval: float = 0.05  # seconds between writes of pending events
    max_pending: int = 100_000  # unwritten events kept when the store falls behind
    keep_events: int = 200_000  # retention by count
    keep_seconds: float = 14 * 86400.0  # retention by age
    prune_interval: float = 300.0
    replay_batch: int = 1000


class _Wakeup:
    """A reusable wake-up: ``set`` from the publisher, ``wait`` in the subscriber's writer."""

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._flag = False

    def set(self) -> None:
        self._flag = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        while not self._flag:
            self._event = anyio.Event()
            await self._event.wait()
        self._flag = False
        self._event = None


@dataclass(frozen=True)
class Lagged:
    """Events a subscriber missed: ids ``first`` to ``last`` (``count`` of them matched it)."""

    first: int
    last: int
    count: int


class Subscriber:
    """One subscriber's bounded queue."""

    def __init__(self, sub_id: int, flt: Filter, limit: int, close_on_lag: bool) -> None:
        self.id = sub_id
        self.filter = flt
        self.limit = limit
        self.close_on_lag = close_on_lag
        self.queue: deque[Event] = deque()
        self.wakeup = _Wakeup()
        self.dropped = 0  # over its life, for /metrics
        self.overflowed = False  # set when it should be closed (close_on_lag)
        self._missed_first = 0
        self._missed_last = 0
        self._missed = 0

    def offer(self, event: Event) -> None:
        if not self.filter.matches(event.kind, event.resource):
            return
        if self._missed or len(self.queue) >= self.limit:
            # Once behind, drop until the writer has told the subscriber, so what it sees is
            # always: events up to X, "lagged X+1..Y", events after Y.
            if not self._missed:
                self._missed_first = event.id
            self._missed_last = event.id
            self._missed += 1
            self.dropped += 1
            if self.close_on_lag:
                self.overflowed = True
            self.wakeup.set()
            return
        self.queue.append(event)
        self.wakeup.set()

    def take(self, limit: int) -> list[Event]:
        queue = self.queue
        if len(queue) <= limit:
            out = list(queue)
            queue.clear()
            return out
        return [queue.popleft() for _ in range(limit)]

    def take_lagged(self) -> Lagged | None:
        if not self._missed or self.queue:
            return None
        lagged = Lagged(self._missed_first, self._missed_last, self._missed)
        self._missed = 0
        return lagged

    async def wait(self) -> None:
        await self.wakeup.wait()


class Subscription:
    """A registered subscriber and what it has to replay first; use as a context manager."""

    def __init__(
        self, bus: EventBus, sub: Subscriber, since: int | None, snapshot: list[Event]
    ) -> None:
        self.bus = bus
        self.subscriber = sub
        self.since = since
        self._snapshot = snapshot
        self.expired: tuple[int, int] | None = None  # ids pruned before they could be replayed
        self.live_from = bus.last_id  # the last id before the subscriber's queue starts

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bus._unsubscribe(self.subscriber)

    async def replay(self) -> AsyncIterator[list[Event]]:
        """The events after ``since`` that were published before subscribing, in order."""
        if self.since is None:
            return
        flt = self.subscriber.filter
        snapshot, self._snapshot = self._snapshot, []
        ring_first = snapshot[0].id if snapshot else self.bus.last_id + 1
        bus = self.bus
        if self.since < bus.pruned_through:
            self.expired = (self.since + 1, bus.pruned_through)
        if bus.log is not None and self.since + 1 < ring_first:
            await bus.stored_through(ring_first - 1)
            after = self.since
            while True:
                rows = await anyio.to_thread.run_sync(
                    bus.log.read, after, ring_first, bus.settings.replay_batch
                )
                if not rows:
                    break
                after = rows[-1].id
                wanted = [e for e in rows if flt.matches(e.kind, e.resource)]
                if wanted:
                    yield wanted
        wanted = [e for e in snapshot if flt.matches(e.kind, e.resource)]
        for start in range(0, len(wanted), bus.settings.replay_batch):
            yield wanted[start : start + bus.settings.replay_batch]


class EventBus:
    def __init__(self, log: EventLog | None, settings: BusSettings | None = None) -> None:
        self.log = log
        self.settings = settings or BusSettings()
        self._ring: deque[Event] = deque(maxlen=self.settings.ring)
        self._pending: list[Event] = []
        self._subscribers: dict[int, Subscriber] = {}
        self._next_sub = 1
        self._next_id = 1
        self._id_limit = 0 if log is not None else 1 << 62
        self.last_id = 0
        self._stored = 0  # every id up to here is in the store (or was never stored)
        self._stored_changed = anyio.Event()
        self._flush_wakeup = _Wakeup()
        self.pruned_through = 0
        self.dropped_gone = 0  # drops of subscribers that have left
        self.lost = 0  # events that never reached the store (it fell behind)
        self.published = 0

    # ------------------------------------------------------------------------- life cycle

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the writer until cancelled; the last pending events are written on the way out."""
        if self.log is not None:
            await anyio.to_thread.run_sync(self._open)
        task_status.started()
        last_prune = time.monotonic()
        try:
            while True:
                await self._flush_wakeup.wait()
                await anyio.sleep(self.settings.flush_interval)
                await self._flush()
                now = time.monotonic()
                if self.log is not None and now - last_prune > self.settings.prune_interval:
                    last_prune = now
                    await anyio.to_thread.run_sync(self._prune)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                await self._flush()

    def _open(self) -> None:
        assert self.log is not None
        self.last_id = self._stored = self.log.last_id()
        first = self.log.first_id()
        self.pruned_through = first - 1 if first else self.last_id
        self._reserve()
        self._stored = self._next_id - 1  # everything before this start is in the store

    def _reserve(self) -> None:
        assert self.log is not None
        first, last = self.log.reserve(ID_BLOCK)
        self._next_id, self._id_limit = max(first, self._next_id), last

    def _prune(self) -> None:
        assert self.log is not None
        removed = self.log.prune(self.settings.keep_events, self.settings.keep_seconds)
        if removed:
            first = self.log.first_id()
            self.pruned_through = max(self.pruned_through, (first or self.last_id + 1) - 1)
            log.info("events: pruned %s old event(s)", removed)

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self.log is not None:
            try:
                await anyio.to_thread.run_sync(self.log.append, batch)
            except Exception as exc:  # the store's errors: keep going, say so
                self.lost += len(batch)
                log.error("events: %s event(s) not stored: %s", len(batch), exc)
        self._stored = batch[-1].id
        self._stored_changed.set()
        self._stored_changed = anyio.Event()

    async def stored_through(self, event_id: int) -> None:
        """Wait until every event up to ``event_id`` has been written (or ``STORE_WAIT``)."""
        with anyio.move_on_after(STORE_WAIT):
            while self._stored < event_id:
                self._flush_wakeup.set()
                await self._stored_changed.wait()

    # ---------------------------------------------------------------------------- publish

    def publish(self, kind: str, resource: str, payload: Any) -> Event:
        """Record an event and offer it to every subscriber; never waits. Call from the event
        loop's thread (from a worker thread use ``anyio.from_thread.run_sync``)."""
        if self._next_id > self._id_limit:
            self._reserve()  # once per ID_BLOCK events: one small write
        event = Event.of(self._next_id, time.time(), kind, resource, payload)
        self._next_id += 1
        self.last_id = event.id
        self.published += 1
        self._ring.append(event)
        pending = self._pending
        pending.append(event)
        if len(pending) > self.settings.max_pending:
            del pending[: len(pending) - self.settings.max_pending]
            self.lost += 1
        self._flush_wakeup.set()
        for sub in self._subscribers.values():
            sub.offer(event)
        return event

    # -------------------------------------------------------------------------- subscribe

    def subscribe(
        self,
        flt: Filter | None = None,
        *,
        since: int | None = None,
        limit: int = 1024,
        close_on_lag: bool = False,
    ) -> Subscription:
        """Register a subscriber; with ``since``, also what it must replay first."""
        sub = Subscriber(self._next_sub, flt or Filter(), limit, close_on_lag)
        self._next_sub += 1
        snapshot = [e for e in self._ring if e.id > since] if since is not None else []
        self._subscribers[sub.id] = sub
        return Subscription(self, sub, since, snapshot)

    def _unsubscribe(self, sub: Subscriber) -> None:
        if self._subscribers.pop(sub.id, None) is not None:
            self.dropped_gone += sub.dropped

    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers.values())

    def recent(self, n: int) -> list[Event]:
        return list(self._ring)[-n:]
