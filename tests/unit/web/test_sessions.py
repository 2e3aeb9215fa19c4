"""The dashboard's session table (pure) against a model, and its file across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.web.sessions import (
    Role,
    SessionFile,
    Sessions,
    SessionTable,
    csrf_ok,
    csrf_token,
    digest,
)

TTL = 100.0
LIMIT = 5


class SessionMachine(RuleBasedStateMachine):
    """Bounded and expiring: never more than LIMIT, none past its TTL, the oldest go first."""

    def __init__(self) -> None:
        super().__init__()
        self.table = SessionTable(ttl=TTL, limit=LIMIT)
        self.now = 0.0
        self.model: dict[str, tuple[Role, float]] = {}  # id -> role, created
        self.order: list[str] = []
        self.next = 0

    @rule(role=st.sampled_from(list(Role)))
    def sign_in(self, role: Role) -> None:
        self.next += 1
        sid = f"session-{self.next}"
        session, gone = self.table.open(sid, role, "tok", self.now)
        assert session.key == digest(sid) and sid not in session.key
        self.model[sid] = (role, self.now)
        self.order.append(sid)
        for old in [s for s in self.order if self.model[s][1] + TTL <= self.now]:
            self.order.remove(old)
            del self.model[old]
        while len(self.order) > LIMIT:
            del self.model[self.order.pop(0)]
        assert set(gone) <= {digest(f"session-{i}") for i in range(1, self.next)}

    @rule(seconds=st.floats(min_value=0, max_value=60))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(data=st.data())
    def look_up(self, data: st.DataObject) -> None:
        if not self.next:
            return
        sid = f"session-{data.draw(st.integers(1, self.next))}"
        found = self.table.find(sid, self.now)
        expected = self.model.get(sid)
        if expected is not None and expected[1] + TTL <= self.now:
            expected = None
            self.order.remove(sid)
            del self.model[sid]
        if expected is None:
            assert found is None
        else:
            assert found is not None and found.role is expected[0]

    @rule(data=st.data())
    def sign_out(self, data: st.DataObject) -> None:
        if not self.order:
            return
        sid = data.draw(st.sampled_from(self.order))
        assert self.table.close(sid) is not None
        self.order.remove(sid)
        del self.model[sid]
        assert self.table.find(sid, self.now) is None

    @rule(guess=st.text(max_size=60))
    def a_guessed_id_finds_nothing(self, guess: str) -> None:
        if guess not in self.model:
            assert self.table.find(guess, self.now) is None

    @invariant()
    def bounded(self) -> None:
        assert len(self.table) <= LIMIT


TestSessionMachine = SessionMachine.TestCase


def test_the_csrf_token_is_the_sessions_own() -> None:
    assert csrf_ok("a", csrf_token("a"))
    assert not csrf_ok("a", csrf_token("b"))
    assert not csrf_ok("a", "")
    assert csrf_token("a") != csrf_token("b")


def test_sessions_outlive_a_restart_but_not_their_token(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    first = Sessions(["operator-token-0123456789"], ["viewer-token-0123456789"], SessionFile(path))
    first.save(*first.open("sid-op", Role.OPERATOR, "operator-token-0123456789"))
    first.save(*first.open("sid-view", Role.VIEWER, "viewer-token-0123456789"))
    assert "sid-op" not in path.read_bytes().decode("latin-1")  # only digests are kept
    assert "operator-token" not in path.read_bytes().decode("latin-1")
    assert path.stat().st_mode & 0o077 == 0

    again = Sessions(["operator-token-0123456789"], ["viewer-token-0123456789"], SessionFile(path))
    op = again.find("sid-op")
    assert op is not None and op.role is Role.OPERATOR
    assert again.find("sid-view") is not None

    # The operator token is gone from the config (and the viewer's became an operator's):
    # their sessions end at the next start.
    revoked = Sessions(["viewer-token-0123456789"], [], SessionFile(path))
    assert revoked.find("sid-op") is None
    assert revoked.find("sid-view") is None
    assert SessionFile(path).load() == []


def test_signing_out_removes_it_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    sessions = Sessions(["operator-token-0123456789"], [], SessionFile(path), ttl=60, limit=2)
    for n in range(3):
        sessions.save(*sessions.open(f"sid-{n}", Role.OPERATOR, "operator-token-0123456789"))
    assert sessions.find("sid-0") is None  # past the limit, the oldest went
    sessions.forget(sessions.close("sid-1"))
    assert [s.key for s in SessionFile(path).load()] == [digest("sid-2")]


@pytest.mark.parametrize("bad", [{"ttl": 0}, {"limit": 0}])
def test_a_table_needs_a_positive_ttl_and_limit(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SessionTable(**bad)  # type: ignore[arg-type]
