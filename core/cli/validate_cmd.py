"""``stackward validate FILE... [--strict] [--json]``: check resource files offline.

One finding a line, ``FILE:LINE: error|warning: message``, then one summary line per file,
``FILE: N of T stacks deploy as Komodo would, M differ: NAME (why), ...``. Exit 0 when there are
no errors (warnings allowed), 1 when there are, 2 for a usage error or input that is no resource
file at all (a path that does not exist, a directory without ``.toml`` files, a binary or
unreadable file). ``--strict`` makes unknown keys, Komodo fields stackward does not act on, and
unsupported resource types errors; variables the files do not define stay warnings (the core
may hold them in its ``[secrets]``). ``--explain`` also shows, for each procedure's schedule, the
cron it runs on and its next three times (in ``schedule_timezone``, else ``--timezone``, else
this host's zone, as the core would without its ``timezone``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check resource files offline",
        description=(
            "Check Komodo-format resource files: what stackward reads and does not act on,"
            " shapes Komodo rejects, references, variables. Exit 0 valid, 1 errors, 2 usage or"
            " unreadable input."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a file or a directory")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="unknown keys, fields stackward does not act on and unsupported types are errors",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="show each procedure schedule's cron and its next three times",
    )
    parser.add_argument(
        "--timezone",
        default="",
        help="the core's timezone for schedules without schedule_timezone (default: this host's)",
    )
    parser.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    # heavy imports kept out of register()
    from core.resources import validate
    from core.resources.loader import collect_files
    from core.resources.summary import summarise

    usage = False
    for f in args.files:
        path = Path(f)
        if not path.exists():
            print(f"stackward validate: {f}: no such file or directory", file=sys.stderr)
            usage = True
        elif path.is_dir() and not collect_files([path]):
            print(f"stackward validate: {f}: no .toml files in this directory", file=sys.stderr)
            usage = True
    if usage:
        return 2
    rs = validate(args.files, strict=args.strict)
    findings = rs.sorted_findings()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "file": f.file,
                        "line": f.line,
                        "severity": f.severity,
                        "code": f.code,
                        "message": f.message,
                        **({"key": f.key} if f.key else {}),
                    }
                    for f in findings
                ],
                indent=2,
            )
        )
    else:
        for f in findings:
            print(f.format())
        if args.explain:
            for line in explain(rs, args.timezone):
                print(line)
        for summary in summarise(rs):
            print(summary.format())
        errors = sum(1 for f in findings if f.severity == "error")
        warnings = len(findings) - errors
        counts = (
            f"{len(rs.files)} file(s), {len(rs.resources)} resource(s): {errors} error(s),"
            f" {warnings} warning(s)"
        )
        print(counts, file=sys.stderr)
    if any(f.code == "unreadable" for f in findings):
        return 2
    return 1 if any(f.severity == "error" for f in findings) else 0


def explain(rs: object, timezone: str = "", count: int = 3) -> list[str]:
    """``FILE:LINE: procedure "NAME": SCHEDULE (cron C) in ZONE: next T1, T2, T3`` per
    procedure with a readable schedule."""
    import datetime as dt
    import time

    from core.automation.schedule import ScheduleError, parse, times_after
    from core.automation.scheduler import local_zone
    from core.resources.models import ProcedureConfig, ResourceSet

    assert isinstance(rs, ResourceSet)
    zone = timezone or local_zone()
    now = time.time()
    out = []
    for res in rs.of_kind("procedure"):
        cfg = res.typed_config(ProcedureConfig)
        if not cfg.schedule.strip():
            continue
        where = f"{res.source.file}:{rs.line(res.source, 'config', 'schedule')}"
        try:
            schedule = parse(
                cfg.schedule,
                cfg.schedule_format or "English",
                cfg.schedule_timezone or zone,
                format_written=bool(cfg.schedule_format),
            )
            times = times_after(schedule, now, count)
        except ScheduleError:
            continue  # an error finding says why
        shown = ", ".join(
            dt.datetime.fromtimestamp(t, schedule.zone).strftime("%Y-%m-%d %H:%M:%S %Z")
            for t in times
        )
        off = "" if cfg.schedule_enabled else " (schedule_enabled = false: not armed)"
        out.append(
            f'{where}: procedure "{res.name}": {cfg.schedule!r} (cron {schedule.cron}) in'
            f" {schedule.timezone}{off}: next {shown}"
        )
    return out
