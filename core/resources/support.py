"""The one table of what stackward reads from a Komodo file but does not act on (yet).

Each entry is a stable key (``kind.field``, ``kind.field.subfield``, or a whole ``kind``), when
the written value asks for something stackward does not do, and what happens instead. ``validate``
warns from this table only (one warning per field written, naming it and what happens instead;
``--strict`` makes them errors); the per-file summary counts a stack as deploying differently
from Komodo when one of its entries with ``deploy=True`` applies.

Rule for whoever makes stackward act on a field: remove its line here in the same commit. Keep
one entry per line (merges stay trivial). ``when``:

- ``SET``: any value other than Komodo's default (a true boolean, a non-empty string or list,
  ``env_file_path`` other than ``.env``);
- ``TRUE`` / ``FALSE``: only that boolean value (``send_alerts = false`` asks for no alerts,
  which is what stackward does anyway);
- ``ANY``: any value written at all (settings of features stackward does not have).

Fields that only decorate Komodo's UI (``description``, ``links``, ``region``,
``external_address``, ``template``) change nothing that Komodo or stackward does: they are kept
and not listed.

``only`` names a condition on the whole config (:data:`ONLY`) and ``pattern`` a regular
expression a string value must contain: both narrow an entry to the configs where the
difference shows.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec

from core.resources.models import StackConfig

When = Literal["set", "true", "false", "any"]
SET: Final = "set"
TRUE: Final = "true"
FALSE: Final = "false"
ANY: Final = "any"

_LATER = "not in stackward yet (planned)"


class Inert(msgspec.Struct, frozen=True):
    """A field that stackward reads and does not act on."""

    key: str  # "stack.post_deploy"; a whole kind is "procedure"
    when: When
    instead: str  # what happens instead: "stack \"web\": KEY.field " + this
    # True when a stack deploys otherwise than with Komodo because of it (the stack's own field,
    # or its server's, its linked repo's, a procedure's that deploys it)
    deploy: bool = True
    only: str = ""  # a name in ONLY: the entry applies only when that holds of the config
    pattern: str = ""  # a string value applies only when this regular expression is found in it

    @property
    def kind(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def path(self) -> tuple[str, ...]:
        """The field's path inside ``config`` (empty for a whole kind)."""
        return tuple(self.key.split(".")[1:])


# fmt: off
INERT: Final[tuple[Inert, ...]] = (
    Inert("stack.run_build", TRUE, "is ignored: nothing is built (docker compose build is not run)"),  # noqa: E501
    Inert("stack.build_extra_args", SET, "is ignored: nothing is built (docker compose build is not run)"),  # noqa: E501
    Inert("stack.compose_cmd_wrapper", SET, "is ignored: the compose command runs unwrapped"),
    Inert("stack.compose_cmd_wrapper_include", SET, "is ignored: the compose command runs unwrapped"),  # noqa: E501
    Inert("stack.clone_path", SET, "is ignored: the files are exported into the agent's data directory"),  # noqa: E501
    Inert("stack.poll_for_updates", TRUE, f"is ignored: nothing checks for newer images; image updates are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.auto_update", TRUE, f"is ignored: newer images are not deployed on their own; image updates are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.auto_update_all_services", TRUE, f"is ignored: image updates are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.auto_update_skip_services", SET, f"is ignored: image updates are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.send_alerts", TRUE, f"is ignored: no alerts are sent (state changes are in stackward events); alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.enabled", FALSE, "is ignored: a disabled server is still connected to and deployed on"),  # noqa: E501
    Inert("server.passkey", ANY, "is ignored: agents authenticate with stackward's keys (stackward keys)", deploy=False),  # noqa: E501
    Inert("server.insecure_tls", ANY, "is ignored: the agent channel is sealed with stackward's keys, not TLS", deploy=False),  # noqa: E501
    Inert("server.ignore_mounts", ANY, "is ignored: stackward collects no server stats", deploy=False),  # noqa: E501
    Inert("server.stats_monitoring", TRUE, "is ignored: stackward collects no server stats", deploy=False),  # noqa: E501
    Inert("server.send_unreachable_alerts", TRUE, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.send_cpu_alerts", TRUE, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.send_mem_alerts", TRUE, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.send_disk_alerts", TRUE, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.send_version_mismatch_alerts", TRUE, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.cpu_warning", ANY, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.cpu_critical", ANY, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.mem_warning", ANY, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.mem_critical", ANY, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.disk_warning", ANY, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.disk_critical", ANY, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.maintenance_windows", ANY, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("swarm.send_unhealthy_alerts", TRUE, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("swarm.maintenance_windows", ANY, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("repo.git_account", SET, "is used when the stacks that link the repo deploy, not yet when a webhook or the poll moves the repo's own clone (a private one fails to pull then)", deploy=False),  # noqa: E501
    Inert("repo.builder", SET, "is ignored: stackward builds nothing", deploy=False),
    Inert("repo.on_clone", SET, "never runs: nothing is run after the clone", deploy=False),
    Inert("repo.on_pull", SET, "never runs: nothing is run after a pull", deploy=False),
    Inert("repo.environment", SET, "is ignored: no env file is written into the clone", deploy=False),  # noqa: E501
    Inert("repo.env_file_path", SET, "is ignored: no env file is written into the clone", deploy=False),  # noqa: E501
    Inert("repo.skip_secret_interp", TRUE, "is ignored: on_clone and on_pull do not run anyway", deploy=False),  # noqa: E501
    Inert("resource_sync.git_account", SET, "is ignored: the repository is fetched without credentials (a private one fails)", deploy=False),  # noqa: E501
    Inert("resource_sync.file_contents", SET, "is ignored: a sync reads only the files in resource_path", deploy=False),  # noqa: E501
    Inert("resource_sync.include_user_groups", TRUE, "is ignored: stackward has no user groups", deploy=False),  # noqa: E501
    Inert("resource_sync.pending_alert", TRUE, f"is ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
)
# fmt: on

BY_KEY: Final[dict[str, Inert]] = {i.key: i for i in INERT}


def _pre_deploy_below_run_directory(cfg: StackConfig) -> bool:
    """Komodo runs pre_deploy in run_directory joined with its path: a different directory
    unless the path is absolute or run_directory is the repository's root."""
    run = posixpath.normpath(cfg.run_directory or ".")
    return run != "." and not any(posixpath.isabs(c.path) for c in cfg.pre_deploy)


def _own_repository(cfg: StackConfig) -> bool:
    """Komodo clones the stack's own repo only without linked_repo and files_on_host."""
    return not cfg.linked_repo and not cfg.files_on_host


def _no_repository(cfg: StackConfig) -> bool:
    """Komodo uses file_contents only when the stack has no other source."""
    return not (cfg.files_on_host or cfg.linked_repo or cfg.repo)


ONLY: Final[dict[str, Callable[[Any], bool]]] = {
    "pre_deploy_below_run_directory": _pre_deploy_below_run_directory,
    "own_repository": _own_repository,
    "no_repository": _no_repository,
}


_BY_KIND: dict[tuple[int, str], tuple[Inert, ...]] = {}


def by_kind(kind: str) -> tuple[Inert, ...]:
    """The entries about fields of ``kind``'s config (not the whole kind); computed once per
    table (a test may swap the table)."""
    key = (id(INERT), kind)
    found = _BY_KIND.get(key)
    if found is None:
        found = _BY_KIND[key] = tuple(i for i in INERT if i.kind == kind and i.path)
    return found


def applies(entry: Inert, value: object, default: object, config: object) -> bool:
    """Whether a written ``value`` of ``config`` (the typed config Struct) asks for what
    ``entry`` says stackward does not do."""
    if entry.only and not ONLY[entry.only](config):
        return False
    if entry.pattern and not (isinstance(value, str) and re.search(entry.pattern, value)):
        return False
    if entry.when == ANY:
        return True
    if entry.when == TRUE:
        return value is True
    if entry.when == FALSE:
        return value is False
    return value != default and value not in ("", [], {}, False, None)
