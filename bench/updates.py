"""Image update checks and alerts: what they cost, against their floors in the same run.

(a) **Registry lookups**: the digest of a tag asked of a real registry (Debian's
    ``docker-registry`` on loopback) through stackward's lookup (the state machine and its
    aiohttp driver), sequentially, against a bare aiohttp ``HEAD`` with the same ``Accept``
    header on the same session kind (the floor). Target: ≥ 0.8× the floor's rate.
(b) **Raising an alert**: ``Alerts.raise_alert`` for an alert four alerters take (filters,
    maintenance windows, the ``alert.raised`` event, four requests built and queued) against
    publishing one event on the bus (the floor): what a caller on any path pays, never waiting
    for an endpoint. Target: ≤ 100 µs an alert.

Run: ``python bench/updates.py`` (needs ``docker-registry``: ``apt-get install docker-registry``;
no Docker engine).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import anyio  # noqa: E402

from core.alerts import model as m  # noqa: E402
from core.alerts.center import Alerts  # noqa: E402
from core.alerts.routing import Alerter  # noqa: E402
from core.alerts.sender import AlertSender  # noqa: E402
from core.events.bus import EventBus  # noqa: E402
from core.events.model import HealthChanged, Kind  # noqa: E402
from core.resources.models import AlerterConfig, AlerterEndpoint, ResourceTarget  # noqa: E402
from core.updates.lookup import ACCEPT  # noqa: E402
from core.updates.reference import parse_reference  # noqa: E402
from core.updates.registry import Registries  # noqa: E402
from tests.integration.updates.test_registry import push_manifest  # noqa: E402
from tests.support.registry import Registry, registry_binary  # noqa: E402

LOOKUPS = 300
ALERTS = 20_000


async def lookups(registry: Registry) -> tuple[float, float]:
    name = "bench/app"
    digest = await push_manifest(registry, name, "1", "bench")
    ref = parse_reference(f"{registry.host}/{name}:1")
    async with Registries({}, timeout=5) as reg:
        assert await reg.digest(ref, None) == digest  # warm
        start = time.perf_counter()
        for _ in range(LOOKUPS):
            await reg.digest(ref, None)
        ours = LOOKUPS / (time.perf_counter() - start)
    url = f"http://{registry.host}/v2/{name}/manifests/1"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.head(url, headers={"Accept": ACCEPT}) as r:
            assert r.headers["Docker-Content-Digest"] == digest
        start = time.perf_counter()
        for _ in range(LOOKUPS):
            async with session.head(url, headers={"Accept": ACCEPT}) as r:
                r.headers["Docker-Content-Digest"]
        floor = LOOKUPS / (time.perf_counter() - start)
    return ours, floor


def raising() -> tuple[float, float]:
    bus = EventBus(None)
    alerts = Alerts(bus, AlertSender(bus), clock=time.time)
    kinds = ("Ntfy", "Discord", "Slack", "Custom")
    alerts.set_alerters(
        [
            Alerter(
                k.lower(),
                AlerterConfig(
                    enabled=True,
                    endpoint=AlerterEndpoint(k, {"url": f"https://{k.lower()}.invalid/hook"}),
                    except_resources=[ResourceTarget("Stack", "other")],
                ),
                url=f"https://{k.lower()}.invalid/hook",
            )
            for k in kinds
        ]
    )
    alert = m.Alert(
        ts=0,
        level=m.WARNING,
        target=m.Target("Stack", "web"),
        type=m.STACK_STATE_CHANGE,
        data={"id": "web", "name": "web", "server_name": "nas", "from": "running", "to": "down"},
    )
    with bus.subscribe(limit=10 * ALERTS):
        start = time.perf_counter()
        for _ in range(ALERTS):
            alerts.raise_alert(alert)
        ours = (time.perf_counter() - start) / ALERTS * 1e6
    payload = HealthChanged("web", False, True, "down")
    with bus.subscribe(limit=10 * ALERTS):
        start = time.perf_counter()
        for _ in range(ALERTS):
            bus.publish(Kind.HEALTH_CHANGED, "stack:web", payload)
        floor = (time.perf_counter() - start) / ALERTS * 1e6
    return ours, floor


def main() -> None:
    if registry_binary() is None:
        sys.exit("needs docker-registry: apt-get install docker-registry")
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "reg", Path(tmp) / "storage")
        try:
            ours, floor = anyio.run(lookups, registry)
        finally:
            registry.stop()
    print(
        f"(a) registry lookups: {ours:,.0f}/s stackward, {floor:,.0f}/s bare HEAD:"
        f" {ours / floor:.2f}x (target >= 0.8x)"
    )
    per_alert, per_event = raising()
    print(
        f"(b) raising an alert for 4 alerters: {per_alert:.1f} us, publishing one event:"
        f" {per_event:.1f} us ({per_alert / per_event:.1f}x; target <= 100 us)"
    )


if __name__ == "__main__":
    main()
