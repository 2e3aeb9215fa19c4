"""The event bus: ids, fan-out, filters, bounded queues, replay without gap or duplicate."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from core.events.bus import BusSettings, EventBus
from core.events.log import ID_BLOCK, EventLog
from core.events.model import DeployOutput, Event, Filter, HealthChanged, Kind
from core.store import Store

pytestmark = pytest.mark.anyio


def out(i: int) -> DeployOutput:
    return DeployOutput(deploy=1, stack="web", step="deploy", stream="stdout", seq=i, text=f"{i}")


def test_filters_match_families_and_resources() -> None:
    f = Filter(kinds=("deploy",), resources=("stack:web",))
    assert f.matches("deploy.output", "stack:web")
    assert f.matches("deploy", "stack:web")
    assert not f.matches("deployment.x", "stack:web")  # a family is a dotted prefix
    assert not f.matches("deploy.output", "stack:db")
    assert not f.matches("drift", "stack:web")
    assert Filter().matches("anything", "")
    assert Filter(kinds=("drift", "health.changed")).matches("health.changed", "stack:x")


def test_an_event_encodes_once_per_format_with_the_documented_shape() -> None:
    e = Event.of(7, 1.5, Kind.HEALTH_CHANGED, "stack:web", HealthChanged("web", True, None))
    as_json = msgspec.json.decode(e.json())
    assert as_json == {
        "id": 7,
        "time": 1.5,
        "kind": "health.changed",
        "resource": "stack:web",
        "data": {"stack": "web", "healthy": True, "previous": None, "detail": ""},
    }
    assert msgspec.msgpack.decode(e.msgpack()) == as_json
    assert e.json() is e.json()  # kept


def test_publish_fans_out_in_order_to_matching_subscribers() -> None:
    bus = EventBus(None)
    with (
        bus.subscribe(Filter(kinds=("deploy",))) as a,
        bus.subscribe(Filter(resources=("stack:db",))) as b,
    ):
        for i in range(5):
            bus.publish(Kind.DEPLOY_OUTPUT, "stack:web", out(i))
        bus.publish(Kind.DRIFT, "stack:db", {"x": 1})
        assert [e.id for e in a.subscriber.take(100)] == [1, 2, 3, 4, 5]
        assert [e.kind for e in b.subscriber.take(100)] == ["drift"]
    assert bus.subscribers() == []


def test_a_full_queue_reports_exactly_the_ids_it_missed_then_goes_on() -> None:
    bus = EventBus(None)
    with bus.subscribe(limit=4) as s:
        sub = s.subscriber
        for i in range(10):
            bus.publish(Kind.DEPLOY_OUTPUT, "stack:web", out(i))
        assert sub.take_lagged() is None  # first the queued events
        assert [e.id for e in sub.take(100)] == [1, 2, 3, 4]
        lagged = sub.take_lagged()
        assert lagged is not None and (lagged.first, lagged.last, lagged.count) == (5, 10, 6)
        bus.publish(Kind.DEPLOY_OUTPUT, "stack:web", out(10))
        assert [e.id for e in sub.take(100)] == [11]
        assert sub.dropped == 6 and not sub.overflowed
    assert bus.dropped_gone == 6


def test_close_on_lag_marks_the_subscriber() -> None:
    bus = EventBus(None)
    with bus.subscribe(limit=2, close_on_lag=True) as s:
        for i in range(3):
            bus.publish(Kind.DEPLOY_OUTPUT, "stack:web", out(i))
        assert s.subscriber.overflowed


async def test_replay_from_store_and_ring_then_live_has_no_gap_and_no_duplicate(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path)
    bus = EventBus(EventLog(store), BusSettings(ring=8, flush_interval=0.001))
    async with anyio.create_task_group() as tg:
        await tg.start(bus.run)
        for i in range(50):
            bus.publish(Kind.DEPLOY_OUTPUT, "stack:web", out(i))
        first = bus.last_id - 49
        since = first + 9  # replay the last 40: 32 from the store, 8 from the ring
        with bus.subscribe(since=since) as s:
            bus.publish(Kind.DEPLOY_OUTPUT, "stack:web", out(50))  # during the replay
            seen = [e.id async for batch in s.replay() for e in batch]
            bus.publish(Kind.DEPLOY_OUTPUT, "stack:web", out(51))
            seen += [e.id for e in s.subscriber.take(100)]
        assert seen == list(range(since + 1, bus.last_id + 1))
        tg.cancel_scope.cancel()
    assert EventLog(store).last_id() == bus.last_id  # the last ones were written on the way out
    store.close()


async def test_ids_keep_growing_across_restarts_and_crashes(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    bus = EventBus(EventLog(store), BusSettings(flush_interval=0.001))
    async with anyio.create_task_group() as tg:
        await tg.start(bus.run)
        bus.publish(Kind.DRIFT, "stack:a", {})
        tg.cancel_scope.cancel()
    # a "crash": published, never written
    crashed = EventBus(EventLog(store))
    crashed._open()
    lost = crashed.publish(Kind.DRIFT, "stack:a", {}).id
    after = EventBus(EventLog(store))
    after._open()
    new = after.publish(Kind.DRIFT, "stack:a", {}).id
    assert new > lost > 1
    assert new - lost >= ID_BLOCK - 1
    store.close()


async def test_retention_prunes_by_count_and_replay_says_what_expired(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    bus = EventBus(EventLog(store), BusSettings(ring=4, flush_interval=0.001, keep_events=10))
    async with anyio.create_task_group() as tg:
        await tg.start(bus.run)
        for i in range(30):
            bus.publish(Kind.DEPLOY_OUTPUT, "stack:web", out(i))
        await bus.stored_through(bus.last_id)
        await anyio.to_thread.run_sync(bus._prune)
        assert EventLog(store).first_id() == bus.last_id - 9
        with bus.subscribe(since=0) as s:
            seen = [e.id async for batch in s.replay() for e in batch]
            assert s.expired == (1, bus.last_id - 10)
        assert seen == list(range(bus.last_id - 9, bus.last_id + 1))
        tg.cancel_scope.cancel()
    store.close()


def test_webhook_deliveries_are_remembered_in_the_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    log = EventLog(store)
    assert log.first_delivery("abc", 1000.0, 86400)
    assert not log.first_delivery("abc", 2000.0, 86400)
    store.close()
    again = EventLog(Store.open(tmp_path))  # a restart
    assert not again.first_delivery("abc", 3000.0, 86400)
    assert again.first_delivery("abc", 1000.0 + 86401, 86400)  # a day later
    again.store.close()
