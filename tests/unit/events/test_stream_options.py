"""/ws/events query parsing and token checks (no sockets)."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from core.events.stream import BadQuery, parse_query, token_ok


def q(**kw: str) -> MultiDict[str]:
    return MultiDict(kw)


def test_defaults_are_json_live_everything() -> None:
    o = parse_query(q())
    assert o.since is None and not o.msgpack and not o.close_on_lag
    assert o.filter.kinds == () and o.filter.resources == ()


def test_filters_formats_and_lag_policy() -> None:
    md: MultiDict[str] = MultiDict(
        [("kind", "deploy,drift"), ("kind", "health"), ("stack", "web"), ("resource", "server:a")]
    )
    md.add("format", "msgpack")
    md.add("lag", "close")
    md.add("since", "41")
    o = parse_query(md)
    assert o.filter.kinds == ("deploy", "drift", "health")
    assert set(o.filter.resources) == {"stack:web", "server:a"}
    assert o.msgpack and o.close_on_lag and o.since == 41


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("since", "x", "since='x'"),
        ("since", "-1", ">= 0"),
        ("format", "xml", "json or msgpack"),
        ("lag", "drop", "report or close"),
    ],
)
def test_bad_parameters_name_themselves(key: str, value: str, says: str) -> None:
    with pytest.raises(BadQuery, match=says.replace("(", r"\(")):
        parse_query(MultiDict({key: value}))


def test_tokens_compare_against_every_token() -> None:
    tokens = ["a" * 20, "b" * 20]
    assert token_ok("b" * 20, tokens)
    assert token_ok(" " + "a" * 20 + "\n", tokens)
    assert not token_ok("c" * 20, tokens)
    assert not token_ok("", tokens)
