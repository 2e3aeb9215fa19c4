"""Errors raised by the core.

::

    CoreError
    ├── ConfigError            the core's TOML config is unusable (names file, key, problem)
    ├── PeripheryUnavailable   no authenticated channel to a server within the deadline
    ├── ResourceError          resource files are unusable (carries FILE:LINE findings)
    │   └── UnknownVariable    [[NAME]] is neither a variable nor a core-held secret
    ├── StoreError             the state database cannot be opened, migrated or written
    ├── HostInstallError       ``stackward host install`` failed (bad target, SSH, the host)
    │   └── HostUnreachable    no trusted, authenticated SSH session to the host
    ├── PlanError              a plan cannot be made or applied
    │   ├── PlanNotFound       no plan has that id
    │   ├── PlanStale          the state moved since the plan was made; plan again
    │   └── SyncNotFound       no resource sync has that name
    ├── BootstrapFailed        a bootstrap step failed (names it, says how to resume)
    ├── SecretsUnavailable     a periphery could not list, create or remove a swarm secret
    ├── RegistryError          an image registry did not tell a tag's digest (never a token)
    │   └── ImageReferenceError  not an image reference Docker accepts
    └── AlertDeliveryError     an alerter's endpoint did not take an alert (never its URL)

Each carries a message meant for a person: what went wrong and where.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(CoreError):
    """The config file is missing, malformed, or has a bad value."""


class PeripheryUnavailable(CoreError):
    """No authenticated channel to the named server could be had in time."""


class ResourceError(CoreError):
    """Resource files are unusable; carries the findings (FILE:LINE: messages)."""

    def __init__(self, message: str, findings: list[object] | None = None) -> None:
        super().__init__(message)
        self.findings = findings or []


class UnknownVariable(ResourceError):
    """``[[NAME]]`` refers to neither a variable nor a secret held by the core."""


class StoreError(CoreError):
    """The state database cannot be opened, migrated or written."""


class PlanError(CoreError):
    """A plan cannot be made or applied."""


class PlanNotFound(PlanError):
    """No plan has that id."""


class PlanStale(PlanError):
    """The state moved since the plan was made (another apply won); plan again."""


class SyncNotFound(PlanError):
    """No resource sync has that name."""


class HostInstallError(CoreError):
    """``stackward host install`` cannot proceed: a bad argument or a failure on the host."""


class HostUnreachable(HostInstallError):
    """No trusted, authenticated SSH session: connection, host key or authentication failed."""


class BootstrapFailed(CoreError):
    """A step of the bootstrap failed: ``step`` names it, ``hint`` says what to do before running
    the same command again (steps already done are skipped)."""

    def __init__(self, step: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.hint = hint


class SecretsUnavailable(CoreError):
    """A periphery could not list, create or remove a swarm secret (its reason; never a value)."""


class RegistryError(CoreError):
    """An image registry did not tell a tag's digest: unreachable, refused, no such tag. The
    message names the registry and the image, never a credential."""


class ImageReferenceError(RegistryError):
    """Not an image reference Docker accepts (the message says which part and why)."""


class AlertDeliveryError(CoreError):
    """An alerter's endpoint did not take an alert (its status or the network error). The
    message never holds the endpoint's URL: webhook URLs carry their tokens."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry  # False: a refusal that the same request will meet again (4xx)
