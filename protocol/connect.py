"""The handshake over aiohttp websockets: ``Acceptor`` for the listening side, ``dial`` for the
dialing side. Both give an authenticated websocket, the peer, and the channel's session keys;
``protocol.transport`` runs the channel over them.

Before authentication a listener reads at most ``HANDSHAKE_MAX_BYTES`` per websocket message
(aiohttp refuses a larger one from its header, before buffering it); the limit becomes
``max_frame_bytes`` only once the dialer's signature verified. The handshake's deadline counts
from the TCP accept when a ``protocol.guard`` watches the listener (it then covers the HTTP
upgrade too), else from the upgrade.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import anyio
from aiohttp import web

from protocol import codec
from protocol.admission import Stage
from protocol.channel import ChannelSettings
from protocol.exceptions import ChannelError, HandshakeFailed, VersionMismatch
from protocol.guard import GUARD_KEY, ConnectionGuard
from protocol.handshake import (
    Authorizer,
    ClientHandshake,
    ConnectionBinding,
    Peer,
    ServerHandshake,
)
from protocol.keys import PrivateKey, PublicKey
from protocol.messages import Role
from protocol.ratelimit import AuthFailureLimiter
from protocol.sealing import SessionKeys

log = logging.getLogger(__name__)

AUTH_FAILED_CLOSE_CODE = 4401
"""Every authentication failure closes with this code and ``AUTH_FAILED_REASON``."""
AUTH_FAILED_REASON = b"authentication failed"
VERSION_CLOSE_CODE = 4426
"""A protocol version mismatch closes with this code; the reason says both versions."""
HANDSHAKE_READ_LIMIT = codec.HANDSHAKE_MAX_BYTES + 1
_DEFAULT_SETTINGS = ChannelSettings()
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket(Protocol):
    """What a channel needs of an aiohttp websocket, client or server side."""

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage: ...  # noqa: ASYNC109

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...

    @property
    def closed(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A websocket after a successful handshake: who is there, and the channel's keys."""

    ws: WebSocket
    peer: Peer
    keys: SessionKeys


class DialFailed(ChannelError):
    """Could not connect, or could not authenticate, to the listener."""


def accept_key_for(sec_websocket_key: str) -> str:
    digest = hashlib.sha1((sec_websocket_key + _WS_GUID).encode()).digest()  # noqa: S324
    return base64.b64encode(digest).decode()


def cert_sha256_from_pem(pem: bytes) -> bytes:
    """SHA-256 of the first certificate's DER in a PEM file's contents."""
    text = pem.decode("ascii", "replace")
    begin = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(text[begin:end])).digest()


async def _receive_handshake_bytes(ws: WebSocket) -> bytes:
    msg = await ws.receive()
    if msg.type is aiohttp.WSMsgType.BINARY:
        data: bytes = msg.data
        return data
    if msg.type is aiohttp.WSMsgType.TEXT:
        raise HandshakeFailed("text frame during the handshake")
    if msg.type is aiohttp.WSMsgType.CLOSE and msg.data == VERSION_CLOSE_CODE:
        raise VersionMismatch(str(msg.extra or "protocol version mismatch"))
    if msg.type is aiohttp.WSMsgType.ERROR:
        raise HandshakeFailed(f"connection failed during the handshake: {msg.data}")
    raise HandshakeFailed(f"connection ended during the handshake ({msg.type.name})")


async def _close(ws: WebSocket, settings: ChannelSettings, code: int, reason: bytes) -> None:
    with anyio.move_on_after(settings.close_timeout, shield=True):
        await ws.close(code=code, message=reason)


async def _close_auth_failed(ws: WebSocket, settings: ChannelSettings) -> None:
    await _close(ws, settings, AUTH_FAILED_CLOSE_CODE, AUTH_FAILED_REASON)


def _answer(ws: web.WebSocketResponse) -> web.StreamResponse:
    """What the handler returns after a failure: the websocket when it was upgraded, else a
    plain answer (an unprepared websocket would make aiohttp log a traceback; the connection
    may be gone already, evicted or past its deadline)."""
    if ws.prepared:
        return ws
    return web.Response(status=408, text="no completed handshake\n")


def raise_read_limit(ws: web.WebSocketResponse, request: web.Request, limit: int) -> bool:
    """Replace the websocket's frame reader by one that accepts messages up to ``limit``.

    aiohttp fixes the limit when the response is prepared and its compiled reader does not
    expose it, so a new reader takes over the same queue. Only call this while the peer waits
    for us (after its last handshake message, before our answer): nothing of its next message
    is then buffered in the old reader. False where this aiohttp has no such parts.
    """
    from aiohttp.http import WebSocketReader

    protocol = request.protocol
    queue = getattr(ws, "_reader", None)
    if queue is None or not hasattr(protocol, "_payload_parser"):
        return False
    try:
        reader = WebSocketReader(
            queue, limit, compress=False, decode_text=getattr(ws, "_decode_text", True)
        )
    except TypeError:  # an aiohttp before decode_text
        reader = WebSocketReader(queue, limit, compress=False)  # type: ignore[call-arg]
    callback = getattr(protocol, "_data_received_cb", None)
    protocol._payload_parser = None
    protocol.set_parser(reader, data_received_cb=callback)
    ws._parser = reader  # keeps it alive, as aiohttp does
    ws._max_msg_size = limit
    return True


@dataclass
class Acceptor:
    """The listening side's authentication, shared by every connection of one server.

    ``accept`` upgrades an HTTP request to a websocket and runs the handshake within the
    deadline. Any failure (a bad or unknown key, a bad signature, garbage, a missed deadline)
    closes the socket with the same code and reason, is logged with the peer address, and
    counts against that address in ``limiter``; a version mismatch closes with its own code
    and says both versions. The limiter never refuses a peer that proves an allowed key: its
    count only quiets the log (``protocol.guard`` bounds what unauthenticated peers hold).
    Nothing but handshake messages is decoded before it succeeds.
    """

    private_key: PrivateKey
    role: Role
    authorize: Authorizer
    settings: ChannelSettings = field(default_factory=ChannelSettings)
    tls_cert_sha256: bytes = b""
    software: str = ""
    limiter: AuthFailureLimiter = field(default_factory=AuthFailureLimiter)

    async def accept(self, request: web.Request) -> tuple[web.StreamResponse, Authenticated | None]:
        address = request.remote or "unknown"
        guard: ConnectionGuard | None = request.get(GUARD_KEY)
        transport = request.transport
        remaining = self.settings.handshake_timeout
        if guard is not None and transport is not None:
            remaining = guard.handover(transport, time.monotonic())
        ws = web.WebSocketResponse(
            max_msg_size=HANDSHAKE_READ_LIMIT,
            timeout=self.settings.close_timeout,
            autoping=True,
            compress=False,
        )
        binding = ConnectionBinding(
            accept_key=accept_key_for(request.headers.get("Sec-WebSocket-Key", "")),
            host=request.host,
            path=request.path,
            tls_server_cert_sha256=self.tls_cert_sha256,
        )
        handshake = ServerHandshake(
            private_key=self.private_key,
            role=self.role,
            authorize=self.authorize,
            binding=binding,
            software=self.software,
        )
        try:
            with anyio.fail_after(max(remaining, 0.001)):
                await ws.prepare(request)
                while not handshake.complete:
                    reply = handshake.receive(await _receive_handshake_bytes(ws))
                    if guard is not None and transport is not None:
                        guard.progress(transport, Stage.HANDSHAKING)
                    if handshake.complete and not raise_read_limit(
                        ws, request, self.settings.max_frame_bytes + 1
                    ):
                        raise HandshakeFailed("cannot raise this aiohttp's websocket read limit")
                    await ws.send_bytes(reply)
        except VersionMismatch as exc:
            self.limiter.record_failure(address, anyio.current_time())
            log.warning("refused %s: %s", address, exc)
            if exc.reply and not ws.closed:
                with anyio.move_on_after(self.settings.close_timeout, shield=True):
                    await ws.send_bytes(exc.reply)
            await _close(ws, self.settings, VERSION_CLOSE_CODE, str(exc).encode()[:120])
            return _answer(ws), None
        except (HandshakeFailed, TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            reason = "handshake deadline passed" if isinstance(exc, TimeoutError) else str(exc)
            self._failed(address, reason)
            if ws.prepared:
                await _close_auth_failed(ws, self.settings)
            return _answer(ws), None
        assert handshake.peer is not None and handshake.keys is not None
        if guard is not None and transport is not None:
            guard.authenticated(transport)
        log.info(
            "authenticated %s %s%s from %s",
            handshake.peer.role.value,
            handshake.peer.public_key.fingerprint(),
            f" ({handshake.peer.name})" if handshake.peer.name else "",
            address,
        )
        return ws, Authenticated(ws, handshake.peer, handshake.keys)

    def _failed(self, address: str, reason: str) -> None:
        now = anyio.current_time()
        quiet = self.limiter.blocked(address, now)
        self.limiter.record_failure(address, now)
        if not quiet:
            log.warning("authentication failed from %s: %s", address, reason)
        elif self.limiter.first_quiet(address):
            log.warning(
                "authentication failed from %s: %s (more than %s failures in %gs from there:"
                " further ones are not logged until it calms down)",
                address,
                reason,
                self.limiter.limit,
                self.limiter.window,
            )


def _client_binding(ws: aiohttp.ClientWebSocketResponse) -> ConnectionBinding:
    response = ws._response  # the upgrade response: headers we bind to
    sslobj = ws.get_extra_info("ssl_object")
    cert_hash = b""
    if sslobj is not None:
        der = sslobj.getpeercert(binary_form=True)
        if der:
            cert_hash = hashlib.sha256(der).digest()
    return ConnectionBinding(
        accept_key=response.headers.get("Sec-WebSocket-Accept", ""),
        host=response.request_info.headers.get("Host", ""),
        path=response.request_info.url.raw_path,
        tls_server_cert_sha256=cert_hash,
    )


async def dial(
    session: aiohttp.ClientSession,
    url: str,
    *,
    private_key: PrivateKey,
    role: Role,
    trusted_keys: Collection[PublicKey],
    name: str = "",
    settings: ChannelSettings = _DEFAULT_SETTINGS,
    ssl_context: ssl.SSLContext | bool = False,
    software: str = "",
) -> Authenticated:
    """Connect to ``url`` and authenticate both ways. Raises ``DialFailed`` with a reason.

    With ``ssl_context=False`` a ``wss://`` certificate is not checked against a CA: the
    handshake binds the certificate the dialer saw, so a stand-in certificate makes the
    listener's signature fail. Pass a context to check it as well.
    """
    try:
        with anyio.fail_after(settings.connect_timeout):
            ws = await session.ws_connect(
                url,
                max_msg_size=settings.max_frame_bytes + 1,
                autoping=True,
                compress=0,
                ssl=ssl_context,
                timeout=aiohttp.ClientWSTimeout(ws_close=settings.close_timeout),
            )
    except TimeoutError as exc:
        raise DialFailed(
            f"cannot connect to {url}: no answer in {settings.connect_timeout}s"
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise DialFailed(f"cannot connect to {url}: {exc}") from exc
    handshake = ClientHandshake(
        private_key=private_key,
        role=role,
        trusted_server_keys=trusted_keys,
        binding=_client_binding(ws),
        name=name,
        software=software,
    )
    try:
        with anyio.fail_after(settings.handshake_timeout):
            await ws.send_bytes(handshake.start())
            while not handshake.complete:
                data = await _receive_handshake_bytes(ws)
                reply = handshake.receive(data)
                if reply is not None:
                    await ws.send_bytes(reply)
    except VersionMismatch as exc:
        await _close(ws, settings, VERSION_CLOSE_CODE, str(exc).encode()[:120])
        raise DialFailed(f"{url}: {exc}") from exc
    except HandshakeFailed as exc:
        await _close_auth_failed(ws, settings)
        if ws.close_code == AUTH_FAILED_CLOSE_CODE:
            raise DialFailed(
                f"{url} refused our authentication (a key it does not accept, or a peer"
                " older than protocol version 2)"
            ) from exc
        raise DialFailed(f"authentication with {url} failed: {exc}") from exc
    except TimeoutError as exc:
        await _close_auth_failed(ws, settings)
        raise DialFailed(f"authentication with {url} timed out") from exc
    except (aiohttp.ClientError, OSError) as exc:
        await _close_auth_failed(ws, settings)
        raise DialFailed(f"connection to {url} failed during authentication: {exc}") from exc
    assert handshake.peer is not None and handshake.keys is not None
    return Authenticated(ws, handshake.peer, handshake.keys)


def session_kwargs() -> dict[str, object]:
    """Defaults for the aiohttp client session the dialers share."""
    return {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=10)}
