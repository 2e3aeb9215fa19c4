"""``stackward validate FILE... [--strict] [--json]``: check resource files offline.

One finding a line, ``FILE:LINE: error|warning: message``. Exit 0 when there are no errors
(warnings allowed), 1 when there are, 2 for a usage error (a path that does not exist).
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
        description="Check Komodo-format resource files. Exit 0 valid, 1 errors, 2 usage.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a file or a directory")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    parser.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    from core.resources import validate  # heavy import kept out of register()

    missing = [f for f in args.files if not Path(f).exists()]
    if missing:
        for f in missing:
            print(f"stackward validate: {f}: no such file or directory", file=sys.stderr)
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
                    }
                    for f in findings
                ],
                indent=2,
            )
        )
    else:
        for f in findings:
            print(f.format())
        errors = sum(1 for f in findings if f.severity == "error")
        warnings = len(findings) - errors
        counts = (
            f"{len(rs.files)} file(s), {len(rs.resources)} resource(s): {errors} error(s),"
            f" {warnings} warning(s)"
        )
        print(counts, file=sys.stderr)
    return 1 if any(f.severity == "error" for f in findings) else 0
