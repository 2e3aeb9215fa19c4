"""Fencing tokens: the highest token seen per stack, kept on disk under the agent's root.

The core takes a lock on a stack (in its SQLite store) with a token that only grows. Every deploy
command carries it; a command with a lower token than one already seen for its key is refused,
so a deploy begun by a core that has since restarted can never interleave with a newer one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from protocol.messages import Fence

log = logging.getLogger(__name__)


def fence_file(root: Path) -> Path:
    return root / ".stackward" / "fences.json"


def highest_token(path: Path) -> int:
    """The highest token in a fence file (0 when there is none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    if not isinstance(data, dict):
        return 0
    return max((int(v) for v in data.values() if isinstance(v, int)), default=0)


class FenceBook:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: dict[str, int] = {}
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                self._seen = {str(k): int(v) for k, v in data.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable fence file %s: %s", path, exc)

    def admit(self, fence: Fence | None) -> bool:
        """Record ``fence``; False when a newer token for its key was seen already."""
        if fence is None:
            return True
        highest = self._seen.get(fence.key, -1)
        if fence.token < highest:
            return False
        if fence.token > highest:
            self._seen[fence.key] = fence.token
            self._save()
        return True

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._seen, sort_keys=True))
        os.replace(tmp, self.path)
