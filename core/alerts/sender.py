"""Delivery: each alerter has its own bounded queue and one sender task, so an endpoint that is
slow or down holds up only its own alerts, and nothing that raises an alert ever waits.

``enqueue`` never blocks: past ``alert_queue`` waiting alerts the oldest is dropped (and said so:
``alert.failed``; a warning at most every 10 s). A send has a deadline (``alert_timeout``); a
network error, a timeout, a 429 or a 5xx is tried again after ``alert_backoff`` seconds, doubled
each time (at most 60), up to ``alert_retries`` more times; another status (a 4xx: the endpoint
refuses this request) is not. Each alert ends in one event per alerter: ``alert.sent`` or
``alert.failed`` (the reason, never the URL: webhook URLs carry their tokens).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import aiohttp
import anyio
import anyio.abc

from core.alerts.endpoints import Outgoing
from core.alerts.model import Alert
from core.events.bus import EventBus
from core.events.model import AlertDelivery, Kind
from core.exceptions import AlertDeliveryError

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
DROP_LOG_EVERY = 10.0  # seconds between warnings about one alerter's dropped alerts
MAX_ANSWER = 2048  # bytes of an endpoint's refusal kept for the reason


@dataclass(frozen=True)
class DeliverySettings:
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 2.0
    queue: int = 256


@dataclass
class _Queue:
    items: deque[tuple[Alert, Outgoing]] = field(default_factory=deque)
    wakeup: anyio.Event = field(default_factory=anyio.Event)
    dropped: int = 0
    logged_at: float = -DROP_LOG_EVERY  # when its drops were last logged (monotonic)


class AlertSender:
    def __init__(self, events: EventBus, settings: DeliverySettings | None = None) -> None:
        self.events = events
        self.settings = settings or DeliverySettings()
        self._queues: dict[str, _Queue] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._session: aiohttp.ClientSession | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with (
            aiohttp.ClientSession(headers={"User-Agent": "stackward"}) as session,
            anyio.create_task_group() as tg,
        ):
            self._session = session
            self._tg = tg
            for name in self._queues:  # queued before the sender ran
                tg.start_soon(self._work, name)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                self._session = None

    def waiting(self, alerter: str) -> int:
        queue = self._queues.get(alerter)
        return len(queue.items) if queue is not None else 0

    def enqueue(self, alerter: str, alert: Alert, outgoing: Outgoing) -> None:
        """Queue one alert for ``alerter`` (never blocks)."""
        queue = self._queues.get(alerter)
        if queue is None:
            queue = self._queues[alerter] = _Queue()
            if self._tg is not None:
                self._tg.start_soon(self._work, alerter)
        if len(queue.items) >= self.settings.queue:
            old, _ = queue.items.popleft()
            queue.dropped += 1
            now = time.monotonic()
            if now - queue.logged_at >= DROP_LOG_EVERY:  # once per 10 s, not once per alert
                queue.logged_at = now
                log.warning(
                    "alerter %s: %s alert(s) waiting, the oldest dropped (%s dropped in all)",
                    alerter,
                    self.settings.queue,
                    queue.dropped,
                )
            self._outcome(
                Kind.ALERT_FAILED, alerter, old, 0, f"dropped: {self.settings.queue} waiting"
            )
        queue.items.append((alert, outgoing))
        queue.wakeup.set()

    async def _work(self, alerter: str) -> None:
        queue = self._queues[alerter]
        while True:
            while not queue.items:
                queue.wakeup = anyio.Event()
                await queue.wakeup.wait()
            alert, outgoing = queue.items.popleft()
            await self._deliver(alerter, alert, outgoing)

    async def _deliver(self, alerter: str, alert: Alert, outgoing: Outgoing) -> None:
        started = time.monotonic()
        attempts, delay = 0, self.settings.backoff
        while True:
            attempts += 1
            try:
                await self._post(outgoing)
            except AlertDeliveryError as exc:
                if exc.retry and attempts <= self.settings.retries:
                    log.info("alerter %s: %s; trying again in %gs", alerter, exc, delay)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                log.warning("alerter %s: %s alert not sent: %s", alerter, alert.type, exc)
                self._outcome(Kind.ALERT_FAILED, alerter, alert, attempts, str(exc), started)
                return
            self._outcome(Kind.ALERT_SENT, alerter, alert, attempts, "", started)
            return

    async def _post(self, outgoing: Outgoing) -> None:
        """One attempt. Raises ``AlertDeliveryError`` (``retry`` says whether it may work)."""
        assert self._session is not None
        timeout = self.settings.timeout
        try:
            with anyio.fail_after(timeout):
                async with self._session.post(
                    outgoing.url,
                    data=outgoing.body,
                    headers=outgoing.headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    allow_redirects=False,
                ) as resp:
                    if 200 <= resp.status < 300:
                        return
                    answer = (await resp.content.read(MAX_ANSWER)).decode("utf-8", "replace")
                    retry = resp.status == 429 or resp.status >= 500
                    raise AlertDeliveryError(
                        f"the endpoint answered {resp.status}: {answer.strip()[:200]}",
                        retry=retry,
                    )
        except TimeoutError as exc:
            raise AlertDeliveryError(f"no answer in {timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            reason = type(exc).__name__
            if isinstance(exc, aiohttp.ClientConnectorError):
                reason = f"cannot connect: {exc.os_error.strerror or exc.os_error}"
            raise AlertDeliveryError(reason) from exc  # never str(exc): it holds the URL

    def _outcome(
        self,
        kind: Kind,
        alerter: str,
        alert: Alert,
        attempts: int,
        error: str,
        started: float | None = None,
    ) -> None:
        self.events.publish(
            kind,
            alert.target.resource,
            AlertDelivery(
                alerter=alerter,
                type=alert.type,
                target=alert.target.resource,
                attempts=attempts,
                error=error,
                seconds=round(time.monotonic() - started, 3) if started is not None else 0.0,
            ),
        )
