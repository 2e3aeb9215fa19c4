"""The agent's command handlers, one module each; ``Dispatcher`` routes by command type."""

from __future__ import annotations

from periphery.handlers.dispatch import Dispatcher

__all__ = ["Dispatcher"]
