"""Komodo-format resource files: load, check, interpolate.

Typical use::

    rs = validate(["resources/"], known=None, strict=False)
    for f in rs.sorted_findings():
        print(f.format())

Modules: :mod:`.schema` (known keys and types), :mod:`.linemap` (positions), :mod:`.loader`
(typed models from TOML), :mod:`.checks` (cross-entry checks), :mod:`.graph` (dependency graph,
pure), :mod:`.variables` (``[[NAME]]``), :mod:`.models`, :mod:`.support` (the fields read and
not acted on), :mod:`.envtext` (``environment`` as Komodo reads it), :mod:`.suggest` ("did you
mean"), :mod:`.summary` (which stacks deploy as Komodo would).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final

from core.resources.checks import Known, check
from core.resources.loader import load_paths, load_text
from core.resources.models import Finding, Resource, ResourceSet

__all__ = [
    "Finding",
    "Known",
    "Resource",
    "ResourceSet",
    "STRICT_CODES",
    "check",
    "load_paths",
    "load_text",
    "validate",
]


# What ``strict`` turns into errors: what stackward reads and does not act on (unknown keys,
# fields of core.resources.support, unsupported resource types). Variables the files do not
# define stay warnings: the core may hold them in its [secrets].
STRICT_CODES: Final = frozenset({"unknown_key", "inert", "unsupported"})


def validate(
    paths: Iterable[str | os.PathLike[str]], *, known: Known | None = None, strict: bool = False
) -> ResourceSet:
    """Load and check ``paths``. With ``strict``, the findings of :data:`STRICT_CODES` are
    errors."""
    rs = check(load_paths(paths), known)
    if strict:
        rs.findings = [f.as_error() if f.code in STRICT_CODES else f for f in rs.findings]
    return rs
