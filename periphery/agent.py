"""The agent process: listen for the core on ``/ws``, or dial the core, or both.

Every connection is authenticated by ``protocol.connect.Acceptor`` / ``dial`` before one
frame of a command is decoded; then a ``PeripheryChannel`` serves it with the ``Dispatcher``,
every message sealed. The listener is a ``protocol.guard.GuardedRunner``: a deadline from the
TCP accept to a completed handshake, and caps on unauthenticated connections.
"""

from __future__ import annotations

import logging
import os
import ssl

import aiohttp
import anyio
import anyio.abc
from aiohttp import web

from periphery.config import LoadedConfig
from periphery.handlers import Dispatcher
from periphery.handlers.health import software_version
from periphery.keys import KeyHolder
from periphery.ops.dockercli import log_capabilities, probe
from protocol.admission import AdmissionLimits
from protocol.backoff import Backoff
from protocol.connect import Acceptor, Authenticated, DialFailed, cert_sha256_from_pem, dial
from protocol.guard import ConnectionGuard, GuardedRunner, listen_backlog
from protocol.keys import PrivateKey, PublicKey
from protocol.messages import Role
from protocol.ratelimit import AuthFailureLimiter
from protocol.transport import PeripheryChannel, describe

log = logging.getLogger(__name__)

CORE_PATH = "/ws/periphery"


class Agent:
    def __init__(self, config: LoadedConfig) -> None:
        self.config = config
        key_path = (config.path.parent / os.path.expanduser(config.raw.private_key)).resolve()
        self.keys = KeyHolder(key_path, config.private_key)  # RotateKey replaces it
        self.dispatcher = Dispatcher(config, self.keys)
        self.software = f"stackward {software_version()}"
        core_keys = config.core_keys
        tls_hash = cert_sha256_from_pem(config.tls_cert.read_bytes()) if config.tls_cert else b""

        def authorize(role: Role, name: str, key: PublicKey) -> bool:
            return role is Role.CORE and any(key == trusted for trusted in core_keys)

        self.acceptor = Acceptor(
            private_key=config.private_key,
            role=Role.PERIPHERY,
            authorize=authorize,
            settings=config.channel,
            tls_cert_sha256=tls_hash,
            software=self.software,
            limiter=AuthFailureLimiter(
                limit=config.raw.auth_failure_limit, window=config.raw.auth_failure_window
            ),
        )
        self.connections = 0
        self.keys.on_change.append(self._key_rotated)

    def _key_rotated(self, key: PrivateKey) -> None:
        """New handshakes prove the new key; connections open now stay as they are."""
        self.acceptor.private_key = key

    # ---------------------------------------------------------------------------- listening

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.acceptor.accept(request)
        if conn is not None:
            await self._serve(conn)
        return ws

    async def _serve(self, conn: Authenticated) -> None:
        channel = PeripheryChannel(conn, self.config.channel, self.dispatcher)
        self.connections += 1
        log.info("serving %s", describe(conn.peer))
        try:
            await channel.run()
        finally:
            self.connections -= 1
            log.info("%s disconnected: %s", describe(conn.peer), channel.close_reason or "closed")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/ws", self._ws_handler)
        return app

    def _server_ssl(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None or self.config.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    async def _listen(self, task_status: anyio.abc.TaskStatus[str]) -> None:
        assert self.config.listen_port is not None
        guard = ConnectionGuard(
            AdmissionLimits(
                deadline=self.config.channel.handshake_timeout,
                per_address=self.config.raw.unauthenticated_per_address,
                total=self.config.raw.unauthenticated_total,
            ),
            handshake_paths={"/ws"},
        )
        runner = GuardedRunner(
            self.app(), guard, handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.config.listen_host,
            self.config.listen_port,
            ssl_context=self._server_ssl(),
            backlog=listen_backlog(),
        )
        try:
            await site.start()
            server = site._server
            assert server is not None
            sockets = getattr(server, "sockets", None) or []
            host, port = sockets[0].getsockname()[:2]
            scheme = "wss" if self.config.tls_cert else "ws"
            url = f"{scheme}://{host}:{port}/ws"
            log.info("periphery listening on %s", url)
            task_status.started(url)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

    # ------------------------------------------------------------------------------ dialing

    async def _dial_core(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        raw = self.config.raw
        url = raw.core_address.rstrip("/")
        if not url.endswith(CORE_PATH):
            url += CORE_PATH
        backoff = Backoff(initial=raw.reconnect_initial_delay, maximum=raw.reconnect_max_delay)
        ssl_context: ssl.SSLContext | bool = (
            ssl.create_default_context() if raw.core_tls_verify else False
        )
        task_status.started()
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    conn = await dial(
                        session,
                        url,
                        private_key=self.keys.current,
                        role=Role.PERIPHERY,
                        trusted_keys=self.config.core_keys,
                        name=raw.server_name,
                        settings=self.config.channel,
                        ssl_context=ssl_context,
                        software=self.software,
                    )
                except DialFailed as exc:
                    delay = backoff.next_delay()
                    log.warning("%s; retrying in %.1fs", exc, delay)
                    await anyio.sleep(delay)
                    continue
                backoff.reset()
                log.info("connected to the core at %s as %r", url, raw.server_name)
                await self._serve(conn)
                delay = backoff.next_delay()
                await anyio.sleep(delay)

    async def _log_docker(self) -> None:
        """Once, at start: what this host's docker CLI can do, and what it cannot. A probe that
        fails (out of descriptors under a flood) must not take the agent down."""
        try:
            log_capabilities(await probe())
        except Exception as exc:
            log.warning("the docker CLI was not probed at start: %s", exc)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled. ``task_status`` gets the listening URL (or "")."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._log_docker)
            url = ""
            if self.config.listen_port is not None:
                url = await tg.start(self._listen)
            if self.config.raw.core_address:
                await tg.start(self._dial_core)
            task_status.started(url)
