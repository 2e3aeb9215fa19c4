"""The canonical form of a resource: what is stored, hashed, diffed. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from core.resources.models import Resource
from core.resources.variables import MASK

Fingerprint = Callable[[str], str]

_ENCODER = msgspec.json.Encoder(order="sorted")


def default_fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def canonical_form(res: Resource, fingerprint: Fingerprint = default_fingerprint) -> dict[str, Any]:
    """Like :func:`canonical` but keeps the typed config Struct inside: it encodes (and so
    hashes) to exactly the same bytes, without building the plain dict first."""
    out: dict[str, Any] = {"description": res.description, "tags": list(res.tags)}
    if res.kind == "stack":
        out.update(deploy=res.deploy, after=list(res.after), tier=res.tier, on_drift=res.on_drift)
        if res.wait_for:  # only when set: hashes of stacks without it stay what they were
            out["wait_for"] = list(res.wait_for)
    elif res.kind == "repo":
        out["after"] = list(res.after)
    if res.kind == "variable":
        cfg = res.config
        if cfg.is_secret:
            out["config"] = {
                "is_secret": True,
                "value": MASK,
                "fingerprint": fingerprint(cfg.value),
            }
        else:
            out["config"] = {"is_secret": False, "value": cfg.value}
    else:
        out["config"] = res.config
    return out


def canonical(res: Resource, fingerprint: Fingerprint = default_fingerprint) -> dict[str, Any]:
    """The resource as plain data, secrets replaced by ``***`` and a fingerprint."""
    plain: dict[str, Any] = msgspec.to_builtins(canonical_form(res, fingerprint))
    return plain


def content_hash(data: Any) -> str:
    """SHA-256 of the JSON with keys (and Struct fields) sorted: stable across runs."""
    return hashlib.sha256(_ENCODER.encode(data)).hexdigest()


def encode(data: Any) -> bytes:
    return _ENCODER.encode(data)
