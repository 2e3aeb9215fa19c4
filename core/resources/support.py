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

``also`` names another field of the same config that must be set as well; ``pattern`` narrows a
string field to values where the difference shows.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

When = Literal["set", "true", "false", "any"]
SET: Final = "set"
TRUE: Final = "true"
FALSE: Final = "false"
ANY: Final = "any"

_LATER = "not run by stackward yet (planned)"


class Inert(msgspec.Struct, frozen=True):
    """A field that stackward reads and does not act on."""

    key: str  # "stack.post_deploy"; a whole kind is "procedure"
    when: When
    instead: str  # what happens instead, as the end of a sentence
    deploy: bool = True  # True when the stack (or what it runs on) deploys otherwise than Komodo
    also: str = ""  # another config field that must be set too for the entry to apply
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
    Inert("stack.post_deploy", SET, "never runs: nothing is run after the deploy"),
    Inert("stack.pre_deploy", SET, "runs in the repository's root joined with its path, not in run_directory joined with it", also="run_directory"),  # noqa: E501
    Inert("stack.environment", SET, "values are quoted and unquoted before compose sees them: ${VAR}, $$, \\n, quotes and ' #' comments are not what Komodo writes", pattern=r"[$\\'\"]| #"),  # noqa: E501
    Inert("stack.pre_deploy.shell_mode", TRUE, "ignored: the command runs as one sh -c script"),
    Inert("stack.extra_args", SET, "not passed: the deploy command runs without them"),
    Inert("stack.env_file_path", SET, "ignored: the environment is written to .env"),
    Inert("stack.destroy_before_deploy", TRUE, "ignored: services are updated in place, never taken down first"),  # noqa: E501
    Inert("stack.git_account", SET, "ignored: the repository is cloned without credentials (a private one fails to clone)"),  # noqa: E501
    Inert("stack.registry_provider", SET, "ignored: no docker login (pulls from a private registry fail)"),  # noqa: E501
    Inert("stack.registry_account", SET, "ignored: no docker login (pulls from a private registry fail)"),  # noqa: E501
    Inert("stack.files_on_host", TRUE, "not supported: the files are taken from the stack's repository, and without one the deploy fails"),  # noqa: E501
    Inert("stack.file_contents", SET, "not supported: the compose file is taken from the stack's repository, and without one the deploy fails"),  # noqa: E501
    Inert("stack.run_build", TRUE, "ignored: nothing is built (docker compose build is not run)"),
    Inert("stack.build_extra_args", SET, "ignored: nothing is built (docker compose build is not run)"),  # noqa: E501
    Inert("stack.compose_cmd_wrapper", SET, "ignored: the compose command runs unwrapped"),
    Inert("stack.compose_cmd_wrapper_include", SET, "ignored: the compose command runs unwrapped"),  # noqa: E501
    Inert("stack.skip_secret_interp", TRUE, "ignored: [[NAME]] is interpolated anyway"),
    Inert("stack.clone_path", SET, "ignored: the files are exported into the agent's data directory"),  # noqa: E501
    Inert("stack.poll_for_updates", TRUE, f"ignored: nothing checks for newer images; image updates are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.auto_update", TRUE, f"ignored: newer images are not deployed on their own; image updates are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.auto_update_all_services", TRUE, f"ignored: image updates are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.auto_update_skip_services", SET, f"ignored: image updates are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.send_alerts", TRUE, f"ignored: no alerts are sent (state changes are in stackward events); alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("stack.links", ANY, "kept but shown nowhere (stackward has no UI)", deploy=False),
    Inert("server.auto_prune", TRUE, "ignored: nothing is pruned on the server"),
    Inert("server.enabled", FALSE, "ignored: a disabled server is still connected to and deployed on"),  # noqa: E501
    Inert("server.passkey", ANY, "ignored: agents authenticate with stackward's keys (stackward keys)", deploy=False),  # noqa: E501
    Inert("server.insecure_tls", ANY, "ignored: the agent channel is sealed with stackward's keys, not TLS", deploy=False),  # noqa: E501
    Inert("server.auto_rotate_keys", ANY, "ignored: keys are rotated with stackward keys", deploy=False),  # noqa: E501
    Inert("server.external_address", ANY, "kept but shown nowhere (stackward has no UI)", deploy=False),  # noqa: E501
    Inert("server.region", ANY, "kept but shown nowhere (stackward has no UI)", deploy=False),
    Inert("server.links", ANY, "kept but shown nowhere (stackward has no UI)", deploy=False),
    Inert("server.ignore_mounts", ANY, "ignored: stackward collects no server stats", deploy=False),
    Inert("server.stats_monitoring", TRUE, "ignored: stackward collects no server stats", deploy=False),  # noqa: E501
    Inert("server.send_unreachable_alerts", TRUE, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.send_cpu_alerts", TRUE, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.send_mem_alerts", TRUE, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.send_disk_alerts", TRUE, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.send_version_mismatch_alerts", TRUE, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.cpu_warning", ANY, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.cpu_critical", ANY, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.mem_warning", ANY, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.mem_critical", ANY, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.disk_warning", ANY, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.disk_critical", ANY, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("server.maintenance_windows", ANY, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("swarm.send_unhealthy_alerts", TRUE, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("swarm.maintenance_windows", ANY, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("swarm.links", ANY, "kept but shown nowhere (stackward has no UI)", deploy=False),
    Inert("repo.git_account", SET, "ignored: the repository is cloned without credentials (a private one fails to clone)"),  # noqa: E501
    Inert("repo.builder", SET, "ignored: stackward builds nothing"),
    Inert("repo.on_clone", SET, "never runs: nothing is run after the clone"),
    Inert("repo.on_pull", SET, "never runs: nothing is run after a pull"),
    Inert("repo.environment", SET, "ignored: no env file is written into the clone"),
    Inert("repo.env_file_path", SET, "ignored: no env file is written into the clone"),
    Inert("repo.skip_secret_interp", TRUE, "ignored: on_clone and on_pull do not run anyway"),
    Inert("repo.links", ANY, "kept but shown nowhere (stackward has no UI)", deploy=False),
    Inert("resource_sync.git_account", SET, "ignored: the repository is fetched without credentials (a private one fails)"),  # noqa: E501
    Inert("resource_sync.file_contents", SET, "ignored: a sync reads only the files in resource_path"),  # noqa: E501
    Inert("resource_sync.include_user_groups", TRUE, "ignored: stackward has no user groups", deploy=False),  # noqa: E501
    Inert("resource_sync.pending_alert", TRUE, f"ignored: no alerts are sent; alerters are {_LATER}", deploy=False),  # noqa: E501
    Inert("procedure", ANY, f"procedures are {_LATER}: nothing it names is run (set deploy = true on the stacks to deploy them)"),  # noqa: E501
    Inert("entry.template", TRUE, "ignored: a template is an ordinary resource here", deploy=False),  # noqa: E501
)
# fmt: on

BY_KEY: Final[dict[str, Inert]] = {i.key: i for i in INERT}


def by_kind(kind: str) -> list[Inert]:
    """The entries about fields of ``kind``'s config (not the whole kind)."""
    return [i for i in INERT if i.kind == kind and i.path]


def applies(entry: Inert, value: object, default: object) -> bool:
    """Whether a written ``value`` asks for what ``entry`` says stackward does not do (``also``
    is the caller's to check)."""
    if entry.pattern and not (isinstance(value, str) and re.search(entry.pattern, value)):
        return False
    if entry.when == ANY:
        return True
    if entry.when == TRUE:
        return value is True
    if entry.when == FALSE:
        return value is False
    return value != default and value not in ("", [], {}, False, None)
