"""What other parts call to raise an alert that no event carries (signature first)."""

from __future__ import annotations


class Alerts:
    def procedure_failed(self, procedure: str, reason: str) -> None:
        """Komodo's ``ProcedureFailed`` (a procedure with ``failure_alert``): queued, never
        blocks."""
        raise NotImplementedError

    def schedule_missed(self, procedure: str, due: float, reason: str = "") -> None:
        """stackward's ``ScheduleMissed``: a scheduled run at ``due`` (epoch seconds) did not
        happen (the core was down); queued, never blocks."""
        raise NotImplementedError

    def schedule_run(self, procedure: str) -> None:
        """Komodo's ``ScheduleRun`` (a procedure with ``schedule_alert``): a scheduled run
        started; queued, never blocks."""
        raise NotImplementedError
