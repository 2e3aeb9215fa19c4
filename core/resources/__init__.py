"""Komodo-format resource files: load, check, interpolate.

Typical use::

    rs = validate(["resources/"], known=None, strict=False)
    for f in rs.sorted_findings():
        print(f.format())

Modules: :mod:`.schema` (known keys and types), :mod:`.linemap` (positions), :mod:`.loader`
(typed models from TOML), :mod:`.checks` (cross-entry checks), :mod:`.graph` (dependency graph,
pure), :mod:`.variables` (``[[NAME]]``), :mod:`.models`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from core.resources.checks import Known, check
from core.resources.loader import load_paths, load_text
from core.resources.models import Finding, Resource, ResourceSet

__all__ = [
    "Finding",
    "Known",
    "Resource",
    "ResourceSet",
    "check",
    "load_paths",
    "load_text",
    "validate",
]


def validate(
    paths: Iterable[str | os.PathLike[str]], *, known: Known | None = None, strict: bool = False
) -> ResourceSet:
    """Load and check ``paths``. With ``strict``, every warning becomes an error."""
    rs = check(load_paths(paths), known)
    if strict:
        rs.findings = [f.as_error() for f in rs.findings]
    return rs
