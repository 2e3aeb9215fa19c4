"""The registry driver: sends what :class:`~core.updates.lookup.DigestLookup` asks, with a
deadline per request and a bound on every body read, and gives it the answers."""

from __future__ import annotations

import logging
import time
from types import TracebackType

import aiohttp
import anyio

from core.exceptions import RegistryError
from core.updates.lookup import Credentials, DigestLookup, HttpRequest, HttpResponse, Tokens
from core.updates.reference import ImageRef

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0  # seconds for one request to the registry or its token service
MAX_BODY = 4 * 1024 * 1024  # a manifest or a token answer larger than this is refused


class Registries:
    """One HTTP session for a check's lookups; tokens are kept by the caller across checks."""

    def __init__(self, tokens: Tokens, timeout: float = REQUEST_TIMEOUT) -> None:
        self.tokens = tokens
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Registries:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": "stackward"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            with anyio.CancelScope(shield=True):
                await self._session.close()
            self._session = None

    async def digest(self, ref: ImageRef, credentials: Credentials | None) -> str:
        """The registry's digest of ``ref``'s tag now. Raises ``RegistryError``."""
        lookup = DigestLookup(ref, credentials, self.tokens, time.monotonic())
        while (request := lookup.next_request()) is not None:
            lookup.receive(await self._send(lookup.what, request))
        return lookup.digest

    async def _send(self, what: str, request: HttpRequest) -> HttpResponse:
        assert self._session is not None, "use Registries as an async context manager"
        try:
            with anyio.fail_after(self.timeout):
                async with self._session.request(
                    request.method, request.url, headers=request.headers, allow_redirects=True
                ) as resp:
                    body = b""
                    if request.method != "HEAD":
                        body = await resp.content.read(MAX_BODY + 1)
                        if len(body) > MAX_BODY:
                            raise RegistryError(f"{what}: an answer over {MAX_BODY} bytes")
                    headers = {k.lower(): v for k, v in resp.headers.items()}
                    return HttpResponse(resp.status, headers, body)
        except TimeoutError as exc:
            raise RegistryError(f"{what}: no answer in {self.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            host = request.url.split("/")[2] if "//" in request.url else request.url
            reason = type(exc).__name__
            if isinstance(exc, aiohttp.ClientConnectorError):
                reason = f"cannot connect: {exc.os_error.strerror or exc.os_error}"
            raise RegistryError(f"{what}: {host}: {reason}") from exc
