"""Git webhooks on Komodo's paths: ``/listener/{forge}/{stack|sync|repo}/NAME/{action}``.

The raw body is read with a size cap (413 past it) and its signature checked on those exact
bytes, in constant time, before anything parses it; a missing or wrong signature is a 401 with
no detail. A signed ``ping`` answers 200. Only pushes to the resource's branch act; a delivery id
seen within a day is answered and not acted on again. The answer comes at once and the work
(plan and apply a sync, deploy a stack) runs after, in the core's task group.

Signatures (``../shared/vectors/README.md``): GitHub ``X-Hub-Signature-256: sha256=HEX``,
Gitea and Forgejo a bare hex HMAC-SHA256 in ``X-Gitea-Signature`` / ``X-Forgejo-Signature``,
GitLab the secret itself in ``X-Gitlab-Token``. Several secrets may be valid at once (rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FORGES = ("github", "gitea", "forgejo", "gitlab")
KINDS = ("stack", "sync", "repo")
ACTIONS = ("deploy", "sync", "refresh", "pull")
DELIVERY_TTL = 24 * 3600.0
MAX_DELIVERIES = 10_000


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(forge: str, headers: Mapping[str, str], body: bytes, secrets: Iterable[str]) -> bool:
    """Whether ``body`` carries a valid signature under any of ``secrets`` (constant time)."""
    candidates = [s for s in secrets if s]
    if not candidates:
        return False
    if forge == "gitlab":
        given = headers.get("X-Gitlab-Token", "").encode()
        ok = False
        for secret in candidates:
            ok |= hmac.compare_digest(given, secret.encode())
        return bool(given) and ok
    if forge == "github":
        header = headers.get("X-Hub-Signature-256", "")
        if not header.startswith("sha256="):
            return False
        given_hex = header[len("sha256=") :]
    else:
        name = "X-Gitea-Signature" if forge == "gitea" else "X-Forgejo-Signature"
        given_hex = headers.get(name, "") or headers.get("X-Hub-Signature-256", "").removeprefix(
            "sha256="
        )
    if not given_hex:
        return False
    ok = False
    for secret in candidates:
        ok |= hmac.compare_digest(given_hex.lower().encode(), _hmac_hex(secret, body).encode())
    return ok


def event_of(forge: str, headers: Mapping[str, str]) -> str:
    """``push``, ``ping`` or what the forge called it (lower case)."""
    name = {
        "github": "X-GitHub-Event",
        "gitea": "X-Gitea-Event",
        "forgejo": "X-Forgejo-Event",
        "gitlab": "X-Gitlab-Event",
    }[forge]
    event = headers.get(name, "").strip().lower()
    return "push" if event == "push hook" else event


def delivery_of(forge: str, headers: Mapping[str, str]) -> str:
    name = {
        "github": "X-GitHub-Delivery",
        "gitea": "X-Gitea-Delivery",
        "forgejo": "X-Forgejo-Delivery",
        "gitlab": "X-Gitlab-Event-UUID",
    }[forge]
    return headers.get(name, "").strip()


@dataclass(frozen=True)
class Push:
    branch: str  # "" when the push is not to a branch (a tag)
    after: str
    changed: tuple[str, ...]


def parse_push(body: bytes) -> Push:
    """The branch, the new head and the changed paths of a push (GitHub, Gitea, Forgejo and
    GitLab share these fields). Raises ``ValueError`` on a body that is not a push."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("a push event is a JSON object")
    ref = str(data.get("ref", ""))
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else ""
    changed: list[str] = []
    for commit in data.get("commits") or []:
        if isinstance(commit, dict):
            for key in ("added", "modified", "removed"):
                changed.extend(str(p) for p in commit.get(key) or [])
    return Push(branch, str(data.get("after", "")), tuple(dict.fromkeys(changed)))


class Deliveries:
    """Delivery ids seen within ``ttl`` seconds (bounded; the oldest are forgotten first)."""

    def __init__(self, ttl: float = DELIVERY_TTL, limit: int = MAX_DELIVERIES) -> None:
        self.ttl = ttl
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, delivery: str, now: float) -> bool:
        """Record ``delivery``; False when it was seen within the ttl."""
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at > now - self.ttl and len(self._seen) < self.limit:
                break
            del self._seen[oldest]
        if not delivery:
            return True
        if delivery in self._seen:
            return False
        self._seen[delivery] = now
        return True
