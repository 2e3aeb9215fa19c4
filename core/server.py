"""Running the core: ``stackward core --config FILE``.

Serves :func:`core.app.build_app` on ``config.listen`` until SIGINT or SIGTERM. At start it
loads and checks the local ``resources`` and logs what it found; plans read the files afresh.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread
from aiohttp import web

from core.app import build_app
from core.config import CoreConfig
from core.events.bus import BusSettings, EventBus
from core.events.log import EventLog
from core.events.model import CoreStarted, Kind, ResourcesLoaded
from core.runtime import CoreRuntime, load_private_key
from core.store import Store
from protocol.admission import AdmissionLimits
from protocol.guard import ConnectionGuard, GuardedRunner
from protocol.memory import keep_large_buffers

log = logging.getLogger(__name__)


async def serve(
    config: CoreConfig,
    *,
    setup: Sequence[Callable[[web.Application], None]] = (),
    started: Callable[[int], None] | None = None,
) -> None:
    """Serve until a signal (or cancellation). ``started(port)`` is called once listening."""
    loaded = await anyio.to_thread.run_sync(_check_resources, config)
    store = await anyio.to_thread.run_sync(Store.open, config.data_dir)
    try:
        async with anyio.create_task_group() as tg:
            bus = EventBus(
                EventLog(store),
                BusSettings(
                    keep_events=config.event_keep, keep_seconds=config.event_keep_days * 86400
                ),
            )
            await tg.start(bus.run)
            previous = bus.last_id
            bus.publish(
                Kind.CORE_STARTED,
                "",
                CoreStarted(version=_version(), listen=config.listen, last_event=previous),
            )
            if loaded is not None:
                bus.publish(Kind.RESOURCES_LOADED, "sync:local", loaded)
            setups = list(setup)
            if config.private_key:
                runtime = CoreRuntime(config, store, load_private_key(config), events=bus)
                await tg.start(runtime.run)
                setups.append(runtime.setup)
            else:
                log.warning(
                    "no private_key in the config: peripheries and deploys are off"
                    " (stackward keys new FILE, then private_key = FILE)"
                )
            await _serve_app(config, store, bus, setups, started)
            tg.cancel_scope.cancel()
    finally:
        store.close()


async def _serve_app(
    config: CoreConfig,
    store: Store,
    bus: EventBus,
    setup: Sequence[Callable[[web.Application], None]],
    started: Callable[[int], None] | None,
) -> None:
    app = build_app(config, store=store, events=bus, setup=setup)
    # /ws/periphery before authentication: a deadline from the TCP accept, capped (issue 12).
    guard = ConnectionGuard(AdmissionLimits(), handshake_paths={"/ws/periphery"})
    runner = GuardedRunner(app, guard, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = int(runner.addresses[0][1]) if runner.addresses else config.port
        log.info("core listening on %s:%s (data in %s)", config.host, port, config.data_dir)
        if started is not None:
            started(port)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("core stopping on signal %s", signal.Signals(signum).name)
                break
    finally:
        await runner.cleanup()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stackward")
    except PackageNotFoundError:
        return "unknown"


def _check_resources(config: CoreConfig) -> ResourcesLoaded | None:
    if not config.resources:
        log.info("no local resources configured")
        return None
    from core.resources import validate

    rs = validate(config.resources)
    for f in rs.sorted_findings():
        (log.error if f.severity == "error" else log.warning)("%s", f.format())
    log.info(
        "local resources: %s file(s), %s resource(s), %s error(s), %s warning(s)",
        len(rs.files),
        len(rs.resources),
        len(rs.errors),
        len(rs.warnings),
    )
    return ResourcesLoaded(
        source="local",
        files=len(rs.files),
        resources=len(rs.resources),
        errors=len(rs.errors),
        warnings=len(rs.warnings),
    )


def run(config: CoreConfig) -> None:
    keep_large_buffers()
    anyio.run(serve, config)
