"""Errors raised by the periphery agent.

::

    PeripheryError
    ├── ConfigError            the agent's TOML config is unusable (names file, key, problem)
    ├── ForbiddenPath          a path would leave root_directory (``..``, absolute, symlink)
    ├── InvalidName            a stack, project or target name, or a commit id, is unusable
    ├── CommandFailed          a command could not be started or ended badly
    │   └── CommandTimeout     a command ran past its timeout; its process group was killed
    ├── DeployError            a deploy step failed (checkout, pre-deploy, deploy, health)
    │   ├── CheckoutError
    │   ├── PreDeployFailed
    │   ├── StackDeployFailed  docker stack deploy / compose pull or up exited non-zero
    │   └── HealthGateFailed
    └── HostSetupError         the bootstrap's host commands: swarm init, swarm secrets
        ├── SwarmStateError    the engine is in no state to init or use a swarm here
        └── SecretError        a swarm secret could not be listed, created or removed

Each carries a message meant for a person: what went wrong and where.
"""

from __future__ import annotations


class PeripheryError(Exception):
    """Base of every error the periphery raises on purpose."""


class ConfigError(PeripheryError):
    """The config file is missing, malformed, or has a bad value."""


class ForbiddenPath(PeripheryError):
    """A path resolves outside the agent's root directory."""


class InvalidName(PeripheryError):
    """A name or commit id in a request does not match what it must look like."""


class CommandFailed(PeripheryError):
    """A command could not be started, or ended with a failure."""


class CommandTimeout(CommandFailed):
    """A command ran past its deadline and was killed."""


class DeployError(PeripheryError):
    """A step of a stack deploy failed."""


class CheckoutError(DeployError):
    """The repository could not be fetched or checked out at the commit."""


class PreDeployFailed(DeployError):
    """The stack's pre-deploy command exited non-zero or timed out."""


class StackDeployFailed(DeployError):
    """`docker stack deploy`, `compose pull` or `compose up` failed."""


class HealthGateFailed(DeployError):
    """The stack did not become healthy within its timeout."""


class HostSetupError(PeripheryError):
    """A host set-up command of the bootstrap failed (swarm init, swarm secrets)."""


class SwarmStateError(HostSetupError):
    """The engine's swarm state does not allow the request (a worker, a swarm in error)."""


class SecretError(HostSetupError):
    """A swarm secret could not be listed, created or removed (the message says why; it never
    contains the secret's value)."""
