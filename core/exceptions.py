"""Errors raised by the core.

::

    CoreError
    ├── ConfigError            the core's TOML config is unusable (names file, key, problem)
    ├── PeripheryUnavailable   no authenticated channel to a server within the deadline
    └── (resources, store, plan and API errors are added below by their modules)

Each carries a message meant for a person: what went wrong and where.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(CoreError):
    """The config file is missing, malformed, or has a bad value."""


class PeripheryUnavailable(CoreError):
    """No authenticated channel to the named server could be had in time."""
