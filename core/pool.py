"""One authenticated channel per server, kept open and re-opened with backoff.

A server is reached in one of two ways:

- it has an ``address`` (``ws(s)://HOST:8120/ws``): the pool dials it, and re-dials with
  jittered exponential backoff whenever the channel ends;
- it has none: the periphery dials the core at ``/ws/periphery`` (``handle_dial_in``), naming
  itself; only the key pinned for that name is accepted.

``channel(name)`` waits, with a deadline, for the server's channel to be up.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
import anyio
import anyio.abc
from aiohttp import web

from core.exceptions import PeripheryUnavailable
from protocol.backoff import Backoff
from protocol.connect import Acceptor, DialFailed, dial
from protocol.handshake import Peer
from protocol.keys import PrivateKey, PublicKey
from protocol.messages import Role
from protocol.ratelimit import AuthFailureLimiter
from protocol.transport import ChannelSettings, CoreChannel, describe

log = logging.getLogger(__name__)

DEFAULT_CHANNEL_WAIT = 10.0
"""How long ``channel()`` waits for a server's channel by default."""


@dataclass(frozen=True)
class ServerEndpoint:
    name: str
    public_key: PublicKey
    address: str = ""  # empty: the periphery dials us
    # also accepted: a key the agent made in a rotation (core/automation/keys.py) and may
    # use already
    also_keys: tuple[PublicKey, ...] = ()

    @property
    def keys(self) -> tuple[PublicKey, ...]:
        return (self.public_key, *self.also_keys)


@dataclass
class _ServerState:
    endpoint: ServerEndpoint
    channel: CoreChannel | None = None
    last_error: str = ""
    attempts: int = 0  # connection attempts that ended, successful or not
    changed: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    retired: set[PublicKey] = field(default_factory=set)  # keys a rotation replaced

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


@dataclass
class PoolSettings:
    channel: ChannelSettings = field(default_factory=ChannelSettings)
    reconnect_initial_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    ssl_context: ssl.SSLContext | bool = False  # for wss:// addresses; see transport.dial
    software: str = "stackward core"


class PeripheryPool:
    """Use as ``async with PeripheryPool(...) as pool`` (or ``await tg.start(pool.run)``)."""

    def __init__(self, private_key: PrivateKey, settings: PoolSettings | None = None) -> None:
        self.private_key = private_key
        self.settings = settings or PoolSettings()
        self._servers: dict[str, _ServerState] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._outer: anyio.abc.TaskGroup | None = None
        self._session: aiohttp.ClientSession | None = None
        # Called with each new channel, in a task that lives as long as it; and when it ends.
        self.on_connected: Callable[[str, CoreChannel], Awaitable[None]] | None = None
        self.on_lost: Callable[[str, str], None] | None = None
        self.acceptor = Acceptor(
            private_key=private_key,
            role=Role.CORE,
            authorize=self._authorize_dial_in,
            settings=self.settings.channel,
            software=self.settings.software,
            limiter=AuthFailureLimiter(),
        )

    # ------------------------------------------------------------------------ life cycle

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
            self._session = session
            self._tg = tg
            for state in self._servers.values():
                self._start_dialer(state)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def __aenter__(self) -> PeripheryPool:
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer = outer
        await outer.start(self.run)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._outer is not None
        self._outer.cancel_scope.cancel()
        await self._outer.__aexit__(None, None, None)
        self._outer = None

    # --------------------------------------------------------------------------- servers

    def set_servers(self, endpoints: Iterable[ServerEndpoint]) -> None:
        """Make the pool's servers exactly these; changed ones reconnect."""
        wanted = {e.name: e for e in endpoints}
        for name in list(self._servers):
            state = self._servers[name]
            want = wanted.get(name)
            if want is not None and want != state.endpoint and self._same_agent(state, want):
                state.endpoint = want  # only its keys changed, and the live channel's is kept
            elif want is None or want != state.endpoint:
                self._drop(name)
        for name, endpoint in wanted.items():
            if name not in self._servers:
                state = _ServerState(endpoint)
                self._servers[name] = state
                self._start_dialer(state)

    @staticmethod
    def _same_agent(state: _ServerState, want: ServerEndpoint) -> bool:
        """A change of keys alone keeps the live channel when its key is still accepted, or
        was replaced by a key rotation (the same agent, which proved the new key)."""
        channel = state.channel
        if want.address != state.endpoint.address or channel is None or channel.closed:
            return False
        key = channel.peer.public_key
        return key in want.keys or key in state.retired

    def endpoint(self, name: str) -> ServerEndpoint | None:
        state = self._servers.get(name)
        return state.endpoint if state is not None else None

    def rekey(
        self,
        name: str,
        public_key: PublicKey,
        also_keys: tuple[PublicKey, ...],
        retired: PublicKey | None = None,
    ) -> None:
        """Accept these keys for ``name`` from now on (a key rotation): new connections must
        prove one of them; the channel open now stays (it is the same agent), also when its
        key is ``retired``."""
        state = self._servers.get(name)
        if state is None:
            return
        if retired is not None:
            state.retired.add(retired)
        state.endpoint = ServerEndpoint(name, public_key, state.endpoint.address, also_keys)

    async def probe(self, name: str, key: PublicKey, wait: float = 10.0) -> None:
        """A new connection to a server the core dials, accepting only ``key``, closed at once:
        proof that a handshake with it works. Raises ``PeripheryUnavailable``."""
        state = self._servers.get(name)
        if state is None or not state.endpoint.address or self._session is None:
            raise PeripheryUnavailable(f"server {name!r} is not one the core dials")
        try:
            with anyio.fail_after(wait):
                conn = await dial(
                    self._session,
                    state.endpoint.address,
                    private_key=self.private_key,
                    role=Role.CORE,
                    trusted_keys=(key,),
                    settings=self.settings.channel,
                    ssl_context=self.settings.ssl_context,
                    software=self.settings.software,
                )
        except (DialFailed, TimeoutError) as exc:
            raise PeripheryUnavailable(f"server {name!r}: {exc or 'no answer'}") from exc
        await conn.ws.close()

    def _drop(self, name: str) -> None:
        state = self._servers.pop(name)
        if state.scope is not None:
            state.scope.cancel()
        if state.channel is not None and self._tg is not None:
            self._tg.start_soon(state.channel.aclose, "server removed")
        state.notify()

    def known(self) -> list[str]:
        return sorted(self._servers)

    def connected(self) -> dict[str, Peer]:
        return {n: s.channel.peer for n, s in self._servers.items() if s.channel is not None}

    async def channel(
        self, name: str, wait: float = DEFAULT_CHANNEL_WAIT, *, fail_fast: bool = False
    ) -> CoreChannel:
        """The server's channel, waiting up to ``wait`` seconds for it to come up.

        With ``fail_fast`` the first failed connection attempt raises at once (for one-shot
        tools); otherwise the pool keeps trying until the deadline.
        """
        state = self._servers.get(name)
        if state is None:
            raise PeripheryUnavailable(f"no server named {name!r} is known to the core")
        start_attempts = state.attempts
        with anyio.move_on_after(wait):
            while True:
                if self._servers.get(name) is not state:
                    raise PeripheryUnavailable(f"server {name!r} was removed")
                if state.channel is not None and not state.channel.closed:
                    return state.channel
                if fail_fast and state.attempts > start_attempts and state.last_error:
                    raise PeripheryUnavailable(state.last_error)
                await state.changed.wait()
        how = state.last_error or (
            "it has not dialed in" if not state.endpoint.address else "no connection yet"
        )
        raise PeripheryUnavailable(f"server {name!r} unreachable after {wait:g}s: {how}")

    # ---------------------------------------------------------------------------- dialing

    def _start_dialer(self, state: _ServerState) -> None:
        if self._tg is not None and state.endpoint.address:
            self._tg.start_soon(self._dial_loop, state)

    async def _dial_loop(self, state: _ServerState) -> None:
        assert self._session is not None
        backoff = Backoff(
            initial=self.settings.reconnect_initial_delay,
            maximum=self.settings.reconnect_max_delay,
        )
        with anyio.CancelScope() as scope:
            state.scope = scope
            while True:
                endpoint = state.endpoint  # re-read: a key rotation may have changed its keys
                try:
                    conn = await dial(
                        self._session,
                        endpoint.address,
                        private_key=self.private_key,
                        role=Role.CORE,
                        trusted_keys=endpoint.keys,
                        settings=self.settings.channel,
                        ssl_context=self.settings.ssl_context,
                        software=self.settings.software,
                    )
                except DialFailed as exc:
                    state.last_error = str(exc)
                    state.attempts += 1
                    state.notify()
                    delay = backoff.next_delay()
                    log.warning("server %s: %s; retrying in %.1fs", endpoint.name, exc, delay)
                    await anyio.sleep(delay)
                    continue
                backoff.reset()
                await self._serve(state, CoreChannel(conn, self.settings.channel))
                await anyio.sleep(backoff.next_delay())

    async def _serve(self, state: _ServerState, channel: CoreChannel) -> None:
        previous = state.channel
        if previous is not None and self._tg is not None:
            self._tg.start_soon(previous.aclose, "replaced by a newer connection")
        state.channel = channel
        state.last_error = ""
        log.info("server %s connected: %s", state.endpoint.name, describe(channel.peer))
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(channel.run)
                state.notify()
                if self.on_connected is not None:
                    tg.start_soon(self._companion, state.endpoint.name, channel)
        finally:
            if state.channel is channel:
                state.channel = None
            state.last_error = f"channel lost: {channel.close_reason or 'closed'}"
            state.attempts += 1
            state.notify()
            log.warning("server %s disconnected: %s", state.endpoint.name, channel.close_reason)
            if self.on_lost is not None:
                self.on_lost(state.endpoint.name, channel.close_reason or "closed")

    async def _companion(self, name: str, channel: CoreChannel) -> None:
        """Run ``on_connected`` for as long as the channel lives (cancelled when it closes)."""
        assert self.on_connected is not None
        async with anyio.create_task_group() as tg:

            async def until_closed() -> None:
                await channel.wait_closed()
                tg.cancel_scope.cancel()

            tg.start_soon(until_closed)
            try:
                await self.on_connected(name, channel)
            except Exception:
                log.exception("server %s: the connection hook failed", name)
            await anyio.sleep_forever()

    # --------------------------------------------------------------------------- dial-in

    def _authorize_dial_in(self, role: Role, name: str, key: PublicKey) -> bool:
        state = self._servers.get(name)
        return (
            role is Role.PERIPHERY
            and state is not None
            and not state.endpoint.address
            and key in state.endpoint.keys
        )

    async def handle_dial_in(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler for ``/ws/periphery``."""
        ws, conn = await self.acceptor.accept(request)
        if conn is None:
            return ws
        state = self._servers.get(conn.peer.name)
        if state is None:  # removed between the handshake and now
            await ws.close(code=1008, message=b"unknown server")
            return ws
        await self._serve(state, CoreChannel(conn, self.settings.channel))
        return ws
