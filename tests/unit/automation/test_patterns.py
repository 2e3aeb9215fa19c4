"""Batch patterns select as Komodo's ``list_full_for_user_using_pattern`` does
(bin/core/src/resource/mod.rs): ``parse_string_list`` (client/core/rs/src/parsers.rs) splits the
pattern; ``\\...\\`` entries are regular expressions (``Regex::is_match``: anywhere in the name),
the others wildcards of the ``wildcard`` crate (``*``, ``?``, ``\\`` escapes; whole name)."""

from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.automation.patterns import PatternError, matching, parse_string_list

NAMES = ["foo-a", "foo-b", "bar-x", "bar-y", "baz", "f[1]", "star*", "Foo-c"]


def test_parse_string_list_is_komodos() -> None:
    source = "# supports comments\npath/to/file1 # comment1\npath/to/file2\n\n  file3,file4 , \n"
    assert parse_string_list(source) == ["path/to/file1", "path/to/file2", "file3", "file4"]


@pytest.mark.parametrize(
    ("pattern", "want"),
    [
        ("*", NAMES),
        ("foo-*", ["foo-a", "foo-b"]),  # case matters: Foo-c is not selected
        ("foo-* , \\^bar-.*$\\", ["foo-a", "foo-b", "bar-x", "bar-y"]),  # Komodo's docs example
        ("\\ba\\", ["bar-x", "bar-y", "baz"]),  # a regex matches anywhere
        ("ba?", ["baz"]),
        ("f[1]", ["f[1]"]),  # no character classes: [ is literal
        ("star\\*", ["star*"]),
        ("nothing", []),
        ("baz\nfoo-a # a comment, not-a-name", ["foo-a", "baz"]),  # the resources' own order
    ],
)
def test_patterns_select_as_komodo(pattern: str, want: list[str]) -> None:
    assert matching(pattern, NAMES) == want


@pytest.mark.parametrize("pattern", ["\\(unclosed\\", "trailing\\", "bad\\escape"])
def test_invalid_entries_are_errors(pattern: str) -> None:
    with pytest.raises(PatternError):
        matching(pattern, NAMES)


names = st.lists(st.text(alphabet="ab-_.x", min_size=1, max_size=6), max_size=8, unique=True)


@given(names, st.text(alphabet="ab-x*?", min_size=1, max_size=6))
def test_wildcards_agree_with_fnmatch_on_star_and_question(ns: list[str], pattern: str) -> None:
    """Without escapes or brackets the wildcard crate and fnmatch agree."""
    assert matching(pattern, ns) == [n for n in ns if fnmatch.fnmatchcase(n, pattern)]


@given(names, st.sampled_from(["^a", "b$", "x", "a.b", "-"]))
def test_regex_entries_search(ns: list[str], rx: str) -> None:
    assert matching(f"\\{rx}\\", ns) == [n for n in ns if re.search(rx, n)]
