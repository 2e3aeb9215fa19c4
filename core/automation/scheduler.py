"""Firing procedures on their schedules (Komodo's ``spawn_schedule_executor``,
``bin/core/src/schedule.rs``), once per time, and saying which times were missed.

Komodo checks every second and runs a procedure whose next time has come; it computes the
next time from "now" when it starts, so a time that passed while it was down is silently
skipped. Here:

- a schedule is armed for each applied procedure with a ``schedule`` and ``schedule_enabled``
  (read by :mod:`core.automation.schedule`; an unreadable one is reported once:
  ``schedule.invalid``), in ``schedule_timezone``, else the core's ``timezone``, else the host's;
- at its time the run starts (source ``schedule``) within a second: the time is first recorded
  in SQLite (``schedule_fires``, keyed by procedure and time) in the same transaction as the
  schedule's watermark, so a time never fires twice, across restarts too;
- when the core starts, the times between the last one dealt with (or when the schedule was
  armed) and now are reported (``schedule.missed``: how many, the first and the last), not run
  late; a time less than a second old still fires;
- a time whose procedure is still running is recorded, and not run (``busy``), as Komodo's
  busy action state refuses it;
- a changed schedule (expression, format, zone, enabled) starts afresh from when it changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import anyio.abc
import anyio.to_thread

from core.automation.records import ProcedureRecords
from core.automation.runner import ProcedureBusy, ProcedureRefused, ProcedureRunner
from core.automation.schedule import Schedule, ScheduleError, next_after, parse, times_between
from core.events.bus import EventBus
from core.events.model import Kind, ScheduleFired, ScheduleInvalid, ScheduleMissed
from core.exceptions import StoreError
from core.resources.models import ProcedureConfig

log = logging.getLogger(__name__)

START_GRACE = 1.0  # a time at most this old when the core starts still fires
LATE_LIMIT = 60.0  # a running core that finds a time older than this (a clock jump) reports it
RESCAN = 1.0  # seconds between looks at the applied procedures (a revision read)
MISSED_CAP = 1000


def local_zone() -> str:
    """The host's time zone name: ``$TZ``, ``/etc/timezone``, the ``/etc/localtime`` link, or
    UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if not name:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return "UTC"


def schedule_of(config: ProcedureConfig, default_zone: str) -> Schedule:
    """The procedure's schedule (Komodo's ``find_next_occurrence``: its zone, else the core's;
    ``schedule_format`` not written is Komodo's default, English). Raises ``ScheduleError``."""
    return parse(
        config.schedule,
        config.schedule_format or "English",
        config.schedule_timezone or default_zone,
        format_written=bool(config.schedule_format),
    )


@dataclass
class Armed:
    procedure: str
    schedule: Schedule
    fingerprint: str
    next_due: float


def fingerprint(config: ProcedureConfig, zone: str) -> str:
    text = "\0".join(
        (config.schedule_format, config.schedule.strip(), config.schedule_timezone or zone)
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Scheduler:
    def __init__(
        self,
        records: ProcedureRecords,
        events: EventBus,
        runner: ProcedureRunner,
        timezone: str = "",
        *,
        clock: Callable[[], float] = time.time,
        revision: Callable[[], int] | None = None,
    ) -> None:
        self.records = records
        self.events = events
        self.runner = runner
        self.zone = timezone or local_zone()
        self.clock = clock
        self._revision = revision
        self.armed: dict[str, Armed] = {}
        self.invalid: dict[str, str] = {}  # procedure -> why its schedule is not armed
        self._reported: set[tuple[str, str]] = set()
        self._seen_revision: int | None = None
        self._wake = anyio.Event()

    def rescan(self) -> None:
        """The applied procedures may have changed: arm again at once."""
        self._seen_revision = None
        self._wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await self._arm(starting=True)
        task_status.started()
        while True:
            now = self.clock()
            due = min((a.next_due for a in self.armed.values()), default=now + RESCAN)
            wait = min(max(due - now, 0.0), RESCAN)
            if wait > 0:
                self._wake = anyio.Event()
                with anyio.move_on_after(wait):
                    await self._wake.wait()
            await self._fire_due()
            if self._revision is None or self._seen_revision != await anyio.to_thread.run_sync(
                self._revision
            ):
                await self._arm(starting=False)

    # ------------------------------------------------------------------------------ arming

    async def _arm(self, starting: bool) -> None:
        if self._revision is not None:
            try:
                self._seen_revision = await anyio.to_thread.run_sync(self._revision)
            except StoreError as exc:
                log.warning("schedules: %s", exc)
                return
        procedures = await self.runner.procedures()
        now = self.clock()
        wanted: dict[str, Armed] = {}
        for name, config in sorted(procedures.items()):
            if not config.schedule.strip() or not config.schedule_enabled:
                continue
            fp = fingerprint(config, self.zone)
            current = self.armed.get(name)
            if current is not None and current.fingerprint == fp:
                wanted[name] = current
                continue
            try:
                schedule = schedule_of(config, self.zone)
            except ScheduleError as exc:
                self.invalid[name] = str(exc)
                if (name, fp) not in self._reported:
                    self._reported.add((name, fp))
                    log.warning("procedure %s: schedule not armed: %s", name, exc)
                    self.events.publish(
                        Kind.SCHEDULE_INVALID,
                        f"procedure:{name}",
                        ScheduleInvalid(procedure=name, schedule=config.schedule, error=str(exc)),
                    )
                continue
            self.invalid.pop(name, None)
            if schedule.note and (name, fp) not in self._reported:
                self._reported.add((name, fp))
                log.warning("procedure %s: %s", name, schedule.note)
            try:
                row = await anyio.to_thread.run_sync(self.records.arm, name, fp, now)
            except StoreError as exc:
                log.warning("procedure %s: schedule not armed: %s", name, exc)
                continue
            since = max(row.armed_at, row.last_due or 0.0)
            if starting or current is None:
                since = await self._report_missed(name, schedule, since, now - START_GRACE)
            base = max(since, now - START_GRACE)
            try:
                nxt = next_after(schedule, base)
            except ScheduleError as exc:
                self.invalid[name] = str(exc)
                continue
            wanted[name] = Armed(name, schedule, fp, nxt)
            log.info(
                "procedure %s: scheduled %s; next at %s",
                name,
                schedule.describe(),
                time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(nxt)),
            )
        self.armed = wanted
        for name in list(self.invalid):
            if name not in procedures:
                del self.invalid[name]
        try:
            await anyio.to_thread.run_sync(self.records.disarm, sorted(wanted))
        except StoreError as exc:
            log.warning("schedules: %s", exc)

    async def _report_missed(
        self, name: str, schedule: Schedule, since: float, until: float
    ) -> float:
        """Report the times in ``(since, until]`` (the core was down); the new watermark."""
        if until <= since:
            return since
        missed = times_between(schedule, since, until, MISSED_CAP + 1)
        if not missed:
            return since
        more = len(missed) > MISSED_CAP
        missed = missed[:MISSED_CAP]
        log.warning(
            "procedure %s: %s%s scheduled time(s) passed while the core was down (%s ... %s):"
            " not run late",
            name,
            len(missed),
            "+" if more else "",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(missed[0])),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(missed[-1])),
        )
        self.events.publish(
            Kind.SCHEDULE_MISSED,
            f"procedure:{name}",
            ScheduleMissed(
                procedure=name,
                schedule=schedule.expression,
                count=len(missed),
                first=missed[0],
                last=missed[-1],
                more=more,
            ),
        )
        try:
            await anyio.to_thread.run_sync(self.records.passed, name, missed[-1])
        except StoreError as exc:
            log.warning("procedure %s: %s", name, exc)
        return missed[-1]

    # ------------------------------------------------------------------------------ firing

    async def _fire_due(self) -> None:
        now = self.clock()
        for armed in list(self.armed.values()):
            if armed.next_due > now:
                continue
            due = armed.next_due
            try:
                armed.next_due = next_after(armed.schedule, due)
            except ScheduleError as exc:
                self.invalid[armed.procedure] = str(exc)
                del self.armed[armed.procedure]
            late = now - due
            if late > LATE_LIMIT:  # the clock jumped, or the loop stalled: no late runs
                await self._report_missed(armed.procedure, armed.schedule, due - 1e-6, due)
                # skip everything else that is as old
                while armed.next_due < now - LATE_LIMIT:
                    armed.next_due = next_after(armed.schedule, armed.next_due)
                continue
            await self._fire(armed.procedure, armed.schedule, due, late)

    async def _fire(self, name: str, schedule: Schedule, due: float, late: float) -> None:
        try:
            first = await anyio.to_thread.run_sync(
                self.records.claim, name, due, self.clock(), "starting"
            )
        except StoreError as exc:
            log.warning("procedure %s: schedule not fired (the store): %s", name, exc)
            return
        if not first:
            log.info("procedure %s: the time %s fired before", name, due)
            return
        run_id: int | None = None
        try:
            run_id = await self.runner.start(name, "schedule", f"schedule {schedule.expression}")
            outcome = "started"
        except ProcedureBusy as exc:
            outcome = f"busy: {exc}"
        except (ProcedureRefused, StoreError) as exc:
            outcome = f"failed: {exc}"
        try:
            await anyio.to_thread.run_sync(self.records.fire_outcome, name, due, outcome, run_id)
        except StoreError as exc:
            log.warning("procedure %s: %s", name, exc)
        self.events.publish(
            Kind.SCHEDULE_FIRED,
            f"procedure:{name}",
            ScheduleFired(
                procedure=name, due=due, late=round(late, 3), outcome=outcome, run=run_id
            ),
        )
        log.info("procedure %s: schedule fired %.3fs after its time: %s", name, late, outcome)

    # ------------------------------------------------------------------------------ views

    def status(self, name: str, count: int = 3) -> dict[str, object]:
        armed = self.armed.get(name)
        if armed is None:
            return {"armed": False, "error": self.invalid.get(name, "")}
        times = [armed.next_due]
        for _ in range(count - 1):
            times.append(next_after(armed.schedule, times[-1]))
        return {
            "armed": True,
            "cron": armed.schedule.cron,
            "format": armed.schedule.format,
            "timezone": armed.schedule.timezone,
            "next": times,
            "note": armed.schedule.note,
        }
