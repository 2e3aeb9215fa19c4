"""Browser sessions: an API token exchanged for a session cookie, kept server side.

A session is made at sign-in (``/auth/login``) from an operator token (``api_tokens``) or a
viewer token (``viewer_tokens``) and carries that role. The browser holds only the session's id,
in an HttpOnly, SameSite=Strict cookie; the core keeps the SHA-256 of it (never the id itself,
nor the token), its role, which token made it, and when it expires. The CSRF token of a session
is derived from its id (``csrf_token``): the page reads it once from ``/auth/session`` and sends
it in a header with every state-changing request; a cross-site page can neither read it nor the
cookie.

:class:`SessionTable` is the state (pure: the time and the ids are passed in): bounded to
``limit`` sessions (signing in past it ends the oldest) and each ends ``ttl`` seconds after
sign-in. :class:`SessionFile` keeps the table in its own SQLite file in the data directory, so a
core restart does not sign everyone out; at load, sessions whose token is no longer configured
(or changed role) are dropped. :class:`Sessions` is the two together, as the HTTP side uses it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.ratelimit import AuthFailureLimiter

log = logging.getLogger(__name__)

COOKIE = "stackward_session"
CSRF_HEADER = "X-Stackward-CSRF"
DEFAULT_TTL = 12 * 3600.0
DEFAULT_LIMIT = 1000
_CSRF_LABEL = b"stackward csrf v1"


class Role(enum.StrEnum):
    OPERATOR = "operator"  # an api_tokens token: everything
    VIEWER = "viewer"  # a viewer_tokens token: reads only


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def token_id(token: str) -> str:
    """Which token made a session, without keeping the token."""
    return hashlib.sha256(b"stackward token\0" + token.encode()).hexdigest()[:32]


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(session_id: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(session_id).encode(), given.encode())


@dataclass(frozen=True)
class Session:
    key: str  # sha256 of the id the browser holds
    role: Role
    token: str  # token_id() of the token that made it
    created: float
    expires: float


class SessionTable:
    """The live sessions, oldest first; pure (``now`` and the new ids are passed in)."""

    def __init__(self, ttl: float = DEFAULT_TTL, limit: int = DEFAULT_LIMIT) -> None:
        if ttl <= 0 or limit < 1:
            raise ValueError("ttl and limit must be positive")
        self.ttl = ttl
        self.limit = limit
        self._by_key: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_key)

    def sessions(self) -> list[Session]:
        return list(self._by_key.values())

    def open(
        self, session_id: str, role: Role, token: str, now: float
    ) -> tuple[Session, list[str]]:
        """A new session for ``session_id``; also the keys of the sessions it pushed out (the
        expired ones, then the oldest past ``limit``)."""
        gone = self.expire(now)
        session = Session(digest(session_id), role, token, now, now + self.ttl)
        self._by_key[session.key] = session
        while len(self._by_key) > self.limit:
            key, _ = self._by_key.popitem(last=False)
            gone.append(key)
        return session, gone

    def restore(self, session: Session, now: float) -> bool:
        """Take back a stored session (at load); False when it has expired or no room."""
        if session.expires <= now or len(self._by_key) >= self.limit:
            return False
        self._by_key[session.key] = session
        return True

    def find(self, session_id: str, now: float) -> Session | None:
        session = self._by_key.get(digest(session_id))
        if session is None:
            return None
        if session.expires <= now:
            del self._by_key[session.key]
            return None
        return session

    def close(self, session_id: str) -> Session | None:
        return self._by_key.pop(digest(session_id), None)

    def close_token(self, token: str) -> list[str]:
        """End every session a token made (it was revoked)."""
        keys = [k for k, s in self._by_key.items() if s.token == token]
        for k in keys:
            del self._by_key[k]
        return keys

    def expire(self, now: float) -> list[str]:
        keys = [k for k, s in self._by_key.items() if s.expires <= now]
        for k in keys:
            del self._by_key[k]
        return keys


class SessionFile:
    """The sessions in ``PATH`` (SQLite), written on sign-in and sign-out only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, role TEXT NOT NULL,"
            " token TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL)"
        )
        path.chmod(0o600)

    def load(self) -> list[Session]:
        rows = self._db.execute(
            "SELECT key, role, token, created, expires FROM sessions ORDER BY created"
        ).fetchall()
        out = []
        for key, role, token, created, expires in rows:
            if role in Role.__members__.values():
                out.append(
                    Session(str(key), Role(role), str(token), float(created), float(expires))
                )
        return out

    def save(self, session: Session, gone: Sequence[str]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._forget(gone)
            self._db.execute(
                "INSERT OR REPLACE INTO sessions (key, role, token, created, expires)"
                " VALUES (?, ?, ?, ?, ?)",
                (session.key, session.role.value, session.token, session.created, session.expires),
            )

    def forget(self, keys: Sequence[str]) -> None:
        if keys:
            with self._db:
                self._db.execute("BEGIN")
                self._forget(keys)

    def _forget(self, keys: Sequence[str]) -> None:
        self._db.executemany("DELETE FROM sessions WHERE key = ?", [(k,) for k in keys])

    def close(self) -> None:
        self._db.close()


class Sessions:
    """The table and its file, for the HTTP side. The table is only touched from the event
    loop (``find`` on every request, ``open``, ``close``); what they return for the file is
    written by ``save`` and ``forget``, which block (call them in a worker thread)."""

    def __init__(
        self,
        operator_tokens: Sequence[str],
        viewer_tokens: Sequence[str],
        file: SessionFile | None,
        ttl: float = DEFAULT_TTL,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.table = SessionTable(ttl, limit)
        self.file = file
        self.failures = AuthFailureLimiter()  # wrong tokens at sign-in, per address
        self.roles = {token_id(t): Role.OPERATOR for t in operator_tokens}
        self.roles.update({token_id(t): Role.VIEWER for t in viewer_tokens})
        if file is not None:
            now = time.time()
            stale = []
            for session in file.load():
                if self.roles.get(session.token) is not session.role or not self.table.restore(
                    session, now
                ):
                    stale.append(session.key)
            file.forget(stale)
            if stale:
                log.info("sessions: %s ended (expired or their token is gone)", len(stale))

    def find(self, session_id: str, now: float | None = None) -> Session | None:
        if not session_id or len(session_id) > 200:
            return None
        return self.table.find(session_id, time.time() if now is None else now)

    def open(self, session_id: str, role: Role, token: str) -> tuple[Session, list[str]]:
        """A new session, and the keys of those it ended (for ``save``)."""
        return self.table.open(session_id, role, token_id(token), time.time())

    def save(self, session: Session, gone: Sequence[str]) -> None:
        if self.file is not None:
            self.file.save(session, gone)

    def close(self, session_id: str) -> list[str]:
        """End a session; the keys to ``forget``."""
        session = self.table.close(session_id)
        return [session.key] if session is not None else []

    def forget(self, keys: Sequence[str]) -> None:
        if self.file is not None:
            self.file.forget(keys)
