"""The one client of the core's HTTP API (aiohttp, async): used by the command line, the
bootstrap, the benchmarks and the tests.

Every call has a deadline. An answer the API gives as an error (its JSON shape,
``{"error": {"code", "message", "findings"?}}``) raises ``ApiError`` with the HTTP status and the
core's code and message; a core that cannot be reached raises ``Unreachable``. ``accept`` lets a
caller take a status as an answer (``GET /api/stacks/NAME`` is 503 for an unhealthy stack).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from types import TracebackType
from typing import Any

import aiohttp
import anyio
import msgspec

from core.exceptions import CoreError

DEFAULT_URL = "http://127.0.0.1:9120"
TIMEOUT = 120.0  # seconds for one request (an apply may plan first)
POLL = 0.25

_json = msgspec.json.Decoder()


class ClientError(CoreError):
    """A call to the core did not give the answer asked for."""


class Unreachable(ClientError):
    """The core cannot be reached (connection refused, timed out, not HTTP)."""


class ApiError(ClientError):
    """The core answered with an error."""

    def __init__(
        self, status: int, code: str, message: str, findings: list[str] | None = None
    ) -> None:
        lines = [f"{code}: {message}", *(findings or [])]
        super().__init__("\n".join(lines))
        self.status = status
        self.code = code
        self.message = message
        self.findings = findings or []


class CoreClient:
    def __init__(self, url: str, token: str, *, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> CoreClient:
        """``url`` / ``token``, else ``STACKWARD_URL`` / ``STACKWARD_TOKEN``."""
        return cls(
            url or os.environ.get("STACKWARD_URL") or DEFAULT_URL,
            token or os.environ.get("STACKWARD_TOKEN") or "",
        )

    async def __aenter__(self) -> CoreClient:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------------------ calls

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The status and decoded body, whatever the status."""
        own = self._session is None
        session = self._session or aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            with anyio.fail_after(self.timeout):
                async with session.request(
                    method,
                    self.url + path,
                    data=msgspec.json.encode(body) if body is not None else None,
                    headers={**headers, "Content-Type": "application/json"}
                    if body is not None
                    else headers,
                ) as response:
                    raw = await response.read()
                    status = response.status
        except TimeoutError as exc:
            raise Unreachable(
                f"the core at {self.url} did not answer {method} {path} within {self.timeout:g}s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise Unreachable(f"cannot reach the core at {self.url}: {exc}") from exc
        finally:
            if own:
                await session.close()
        try:
            return status, _json.decode(raw) if raw else None
        except msgspec.DecodeError as exc:
            raise Unreachable(
                f"{self.url}{path} answered HTTP {status} with something that is not JSON"
            ) from exc

    async def ask(
        self, method: str, path: str, body: Any = None, *, accept: Collection[int] = ()
    ) -> Any:
        """The decoded body of a 2xx (or ``accept``ed) answer; ``ApiError`` otherwise."""
        status, data = await self.request(method, path, body)
        if 200 <= status < 300 or status in accept:
            return data
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            raise ApiError(
                status,
                str(error.get("code", "http_error")),
                str(error.get("message", "")),
                [str(f) for f in error.get("findings", [])],
            )
        raise ApiError(status, "http_error", f"HTTP {status}")

    # ------------------------------------------------------------------------ the API

    async def plan(self, sync: str = "local") -> dict[str, Any]:
        plan: dict[str, Any] = await self.ask("POST", f"/api/syncs/{sync}/plan")
        return plan

    async def apply(self, sync: str, plan_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.ask(
            "POST", f"/api/syncs/{sync}/apply", {"plan_id": plan_id}
        )
        return result

    async def sync(self, sync: str = "local") -> dict[str, Any]:
        """Plan and apply (whatever the plan says)."""
        return await self.apply(sync, (await self.plan(sync))["id"])

    async def deploy(self, stack: str, *, exclusive: bool = False) -> dict[str, Any]:
        query = "?exclusive=true" if exclusive else ""
        run: dict[str, Any] = await self.ask("POST", f"/api/stacks/{stack}/deploy{query}")
        return run

    async def stacks(self) -> list[dict[str, Any]]:
        body = await self.ask("GET", "/api/stacks")
        stacks: list[dict[str, Any]] = body["stacks"]
        return stacks

    async def stack(self, name: str) -> dict[str, Any]:
        """The stack as it runs now (an unhealthy one is an answer too)."""
        body: dict[str, Any] = await self.ask("GET", f"/api/stacks/{name}", accept=(503,))
        return body

    async def run(self, run_id: int) -> dict[str, Any]:
        body: dict[str, Any] = await self.ask("GET", f"/api/runs/{run_id}")
        return body

    async def log(self, deploy_id: int, after: int = -1) -> list[dict[str, Any]]:
        body = await self.ask("GET", f"/api/deploys/{deploy_id}/log?after={after}")
        lines: list[dict[str, Any]] = body["lines"]
        return lines

    async def reconcile(self) -> dict[str, Any]:
        body: dict[str, Any] = await self.ask("GET", "/api/reconcile")
        return body

    async def servers(self) -> dict[str, Any]:
        body: dict[str, Any] = await self.ask("GET", "/api/servers")
        return body

    async def procedures(self) -> list[dict[str, Any]]:
        body = await self.ask("GET", "/api/procedures")
        procedures: list[dict[str, Any]] = body["procedures"]
        return procedures

    async def run_procedure(self, name: str) -> int:
        """Start a run of the procedure; its id."""
        body = await self.ask("POST", f"/api/procedures/{name}/run")
        return int(body["run"])

    async def procedure_run(self, run_id: int, after: int = -1) -> dict[str, Any]:
        """A procedure run, its steps, and its output lines after ``after``."""
        body: dict[str, Any] = await self.ask("GET", f"/api/procedure-runs/{run_id}?after={after}")
        return body

    async def wait_procedure(self, run_id: int, within: float = 600.0) -> dict[str, Any]:
        """The procedure run once it ended."""
        with anyio.fail_after(within):
            while True:
                run = await self.procedure_run(run_id)
                if run["status"] != "running":
                    return run
                await anyio.sleep(POLL)

    # --------------------------------------------------------------------------- waiting

    async def wait_run(self, run_id: int, within: float = 600.0) -> dict[str, Any]:
        """The run once it ended."""
        with anyio.fail_after(within):
            while True:
                run = await self.run(run_id)
                if run["status"] != "running":
                    return run
                await anyio.sleep(POLL)

    async def wait_deployed(
        self, stack: str, commit: str = "", within: float = 60.0
    ) -> dict[str, dict[str, Any]]:
        """Wait until ``stack``'s last deploy is healthy (at ``commit``, when given); every
        stack's last deploy then, by name."""
        with anyio.fail_after(within):
            while True:
                last = {s["name"]: s.get("last_deploy") or {} for s in await self.stacks()}
                mine = last.get(stack, {})
                if mine.get("status") == "healthy" and (not commit or mine.get("commit") == commit):
                    return last
                await anyio.sleep(0.2)
