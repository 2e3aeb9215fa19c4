"""Running the core: ``stackward core --config FILE``.

Opens the store and the event bus, has the composition root (``core/wiring.py``) build and run
the parts, and serves the HTTP app (``core/api``) on ``config.listen`` until SIGINT or SIGTERM.
At start it loads and checks the local ``resources`` and logs what it found; plans read the
files afresh.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import anyio.to_thread
from aiohttp import web

from core import wiring
from core.api.app import build_app
from core.config import CoreConfig
from core.events.bus import BusSettings, EventBus
from core.events.log import EventLog
from core.events.model import CoreStarted, Kind, ResourcesLoaded
from core.exceptions import ConfigError
from core.store import Store
from protocol.admission import AdmissionLimits
from protocol.guard import ConnectionGuard, GuardedRunner, listen_backlog
from protocol.keys import PrivateKey
from protocol.memory import keep_large_buffers

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 0.5  # open HTTP requests get this long once the core stops


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
            key = load_private_key(config) if config.private_key else None
            if key is None:
                log.warning(
                    "no private_key in the config: peripheries and deploys are off"
                    " (stackward keys new FILE, then private_key = FILE)"
                )
            core = wiring.build(config, store, bus, key)
            async with anyio.create_task_group() as parts:
                await parts.start(wiring.run, core)
                await _serve_app(config, build_app(core), setup, started)
                parts.cancel_scope.cancel()
            tg.cancel_scope.cancel()
    finally:
        store.close()


async def _serve_app(
    config: CoreConfig,
    app: web.Application,
    setup: Sequence[Callable[[web.Application], None]],
    started: Callable[[int], None] | None,
) -> None:
    for fn in setup:
        fn(app)
    # /ws/periphery before authentication: a deadline from the TCP accept, capped (issue 12).
    guard = ConnectionGuard(AdmissionLimits(), handshake_paths={"/ws/periphery"})
    runner = GuardedRunner(app, guard, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=listen_backlog())
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
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


def load_private_key(config: CoreConfig) -> PrivateKey:
    from core.keyfiles import read_private_key
    from protocol.exceptions import BadKey

    try:
        return read_private_key(Path(config.private_key))
    except BadKey as exc:
        raise ConfigError(f"{config.source}: key 'private_key': {exc}") from exc


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
