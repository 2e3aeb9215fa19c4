"""``stackward validate FILE... [--strict] [--json]``: check resource files offline.

One finding a line, ``FILE:LINE: error|warning: message``, then one summary line per file,
``FILE: N of T stacks deploy as Komodo would, M differ: NAME (why), ...``. Exit 0 when there are
no errors (warnings allowed), 1 when there are, 2 for a usage error or input that is no resource
file at all (a path that does not exist, a directory without ``.toml`` files, a binary or
unreadable file). ``--strict`` makes unknown keys, Komodo fields stackward does not act on, and
unsupported resource types errors; variables the files do not define stay warnings (the core
may hold them in its ``[secrets]``).
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
