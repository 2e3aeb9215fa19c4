"""Which peripheries the core talks to: ``[[server]]`` resources of the applied state.

A server with ``address`` is dialed (``ws(s)://HOST:8120/ws``); one without dials the core at
``/ws/periphery``. Either way its ``public_key`` (after ``[[NAME]]`` interpolation) is the only key
accepted for it. A server without a usable key is left out, with a warning that says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.automation.records import KeyRow, ProcedureRecords
from core.config import CoreConfig
from core.exceptions import CoreError
from core.keyfiles import read_public_key
from core.pool import ServerEndpoint
from core.resources.variables import Values
from core.store import Store
from protocol.exceptions import BadKey
from protocol.keys import PublicKey, parse_public_key

log = logging.getLogger(__name__)


def endpoints_from_store(
    config: CoreConfig, store: Store
) -> tuple[list[ServerEndpoint], list[str]]:
    """The servers to keep channels to, and a problem message for each one left out."""
    resources = store.resources()
    variables: dict[str, str] = {}
    for (kind, name), res in resources.items():
        cfg: dict[str, Any] = res.config.get("config", {})
        if kind == "variable" and not cfg.get("is_secret"):
            variables[name] = str(cfg.get("value", ""))
    values = Values(variables, config.secrets)
    base = Path(config.source).resolve().parent if config.source else Path.cwd()
    rotated = ProcedureRecords(store).keys()
    endpoints: list[ServerEndpoint] = []
    problems: list[str] = []
    for (kind, name), res in sorted(resources.items()):
        if kind != "server":
            continue
        cfg = res.config.get("config", {})
        spec = str(cfg.get("public_key", "")).strip()
        if not spec:
            problems.append(
                f"server {name!r} has no public_key: pin its periphery's key in"
                " [server.config] public_key (stackward keys new; the .pub line)"
            )
            continue
        try:
            key = read_public_key(values.interpolate(spec, where=f"server {name!r}"), base)
        except (BadKey, CoreError) as exc:  # a malformed key, or [[NAME]] unknown
            problems.append(f"server {name!r}: public_key unusable: {exc}")
            continue
        address = dial_url(str(cfg.get("address", "")))
        key, also = rotated_keys(rotated.get(name), key)
        endpoints.append(ServerEndpoint(name=name, public_key=key, address=address, also_keys=also))
    for problem in problems:
        log.warning("%s", problem)
    return endpoints, problems


def dial_url(address: str) -> str:
    """The websocket URL for a server's ``address``: Komodo's ``https://HOST:8120`` becomes
    ``wss://HOST:8120/ws`` (``http://`` becomes ``ws://``), a bare ``HOST[:PORT]`` is
    ``wss://`` on port 8120 by default, and ``/ws`` is added when the path is missing."""
    address = address.strip()
    if not address:
        return ""
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if address.startswith(http):
            address = ws + address[len(http) :]
    if not address.startswith(("ws://", "wss://")):
        host_port = address.split("/", 1)[0]
        has_port = host_port.rpartition(":")[2].isdigit() and not host_port.endswith("]")
        address = f"wss://{address}" if has_port else f"wss://{address}:8120"
    if not address.rstrip("/").endswith("/ws"):
        address = address.rstrip("/") + "/ws"
    return address


def endpoint_of(
    name: str, key_spec: str, address: str, values: Values, base: Path
) -> ServerEndpoint:
    """One server's endpoint from its ``public_key`` (interpolated) and ``address`` (as
    ``dial_url`` makes it), for a caller that has the resource rather than the store (the
    bootstrap). Raises ``BadKey`` or ``CoreError``."""
    key = read_public_key(values.interpolate(key_spec, where=f"server {name!r}"), base)
    return ServerEndpoint(name=name, public_key=key, address=dial_url(address))


def rotated_keys(row: KeyRow | None, pinned: PublicKey) -> tuple[PublicKey, tuple[PublicKey, ...]]:
    """The keys accepted for a server whose resource pins ``pinned``: those of its rotation
    (RotateAllServerKeys, core/automation/keys.py) while the resource still pins the key the
    rotation started from; else the pinned key alone (a key written into the resources since
    wins)."""
    if row is None or not row.base:
        return pinned, ()
    try:
        if parse_public_key(row.base) != pinned:
            return pinned, ()
        active = parse_public_key(row.active)
        return active, ((parse_public_key(row.next),) if row.next else ())
    except BadKey:
        log.warning("a rotated key in the state is unreadable; using the pinned one")
        return pinned, ()
