"""The env file Komodo would write for an ``environment``, rule by rule: the text read by
``core.resources.envtext``, written by ``core.deploy.environment``.

``client/core/rs/src/parsers.rs``, ``parse_key_value_list`` (its doc example is the first test);
``client/core/rs/src/deserializers/environment.rs``, ``env_vars_deserializer``;
``lib/environment/src/lib.rs``, ``write_env_file``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.deploy.environment import EnvironmentLineError, env_file_text, parse_environment
from core.resources.envtext import from_pairs, from_string


def pairs(text: str) -> list[tuple[str, str]]:
    return [(v.variable, v.value) for v in parse_environment(text)]


def test_komodo_doc_example() -> None:
    text = """
# Supports comments
KEY_1 = value_1 # end of line comments

# Supports string wrapped values
KEY_2="value_2"
'KEY_3 = value_3'

# Also supports yaml list formats
- KEY_4: 'value_4'
- "KEY_5=value_5"

# Wrapping outer quotes are removed while inner quotes are preserved
"KEY_6 = 'value_6'"
"""
    assert pairs(text) == [
        ("KEY_1", "value_1"),
        ("KEY_2", '"value_2"'),
        ("KEY_3", "value_3"),
        ("KEY_4", "'value_4'"),
        ("KEY_5", "value_5"),
        ("KEY_6", "'value_6'"),
    ]


@pytest.mark.parametrize(
    ("line", "written"),
    [
        ("PUID=${PUID}", "PUID=${PUID}"),  # Compose expands it, not Komodo
        ("HASH=$$2y$$10$$abc", "HASH=$$2y$$10$$abc"),  # $$ reaches Compose as $$
        ("MULTI=a\\nb", "MULTI=a\\nb"),
        ('QUOTED="a b"', 'QUOTED="a b"'),  # quotes stay: Compose removes them
        ("SINGLE='$literal'", "SINGLE='$literal'"),
        ("TZ=UTC # note", "TZ=UTC"),  # " #" starts a comment
        ("PASS=abc#def", "PASS=abc#def"),  # no space: part of the value
        ("URL = http://host:8080/x", "URL=http://host:8080/x"),  # '=' comes before ':'
        ("KEY: value", "KEY=value"),
        ("EMPTY=", "EMPTY="),
        ("  - LIST_ITEM=1", "LIST_ITEM=1"),
        ("export X=1", "export X=1"),  # kept as Komodo keeps it
    ],
)
def test_one_line(line: str, written: str) -> None:
    assert env_file_text(parse_environment(line)) == written + "\n"


def test_comment_and_blank_lines() -> None:
    text = "# hash comment\n// slash comment\n\n   \nA=1\n  // indented\n  # indented\nB=2\n"
    assert pairs(text) == [("A", "1"), ("B", "2")]


def test_duplicates_are_kept_in_order() -> None:
    assert env_file_text(parse_environment("A=1\nA=2\n")) == "A=1\nA=2\n"


def test_a_line_without_assignment_is_an_error_naming_it() -> None:
    with pytest.raises(EnvironmentLineError, match="line 3: 'just words' has no '=' or ':'"):
        parse_environment("A=1\n\njust words\n")


def test_the_file_is_empty_without_variables() -> None:
    assert env_file_text([]) == ""
    assert env_file_text(parse_environment("# only a comment\n")) == ""


def test_the_array_form() -> None:
    """``visit_seq``: ``[{variable, value}]`` becomes ``  variable = value`` lines."""
    text = from_pairs([("A", "1"), ("B", "x y")])
    assert text == "  A = 1\n  B = x y\n"
    assert env_file_text(parse_environment(text)) == "A=1\nB=x y\n"
    assert from_pairs([]) == ""
    assert from_string("A=1") == "A=1\n"
    assert from_string("") == ""


def test_cut_only_at_newlines() -> None:
    """Komodo splits at ``\\n`` only (a form feed or U+2028 in a value is not a new line)."""
    assert pairs("A=x\x0cy\nB=1\u2028z") == [("A", "x\x0cy"), ("B", "1\u2028z")]


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
            st.from_regex(r"[A-Za-z0-9${}/.,_@-]{0,12}", fullmatch=True),
        ),
        max_size=6,
    )
)
def test_simple_lines_round_trip(items: list[tuple[str, str]]) -> None:
    text = "".join(f"{k}={v}\n" for k, v in items)
    assert pairs(text) == items
    assert env_file_text(parse_environment(text)) == text
