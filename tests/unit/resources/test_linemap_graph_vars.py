"""Pure pieces: the line map, the dependency graph, ``[[NAME]]`` interpolation and masking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.dependency_graph import Graph, stack_graph
from core.exceptions import UnknownVariable
from core.resources.linemap import LineMap
from core.resources.variables import Values, references

TRICKY = '''\
# a comment with "quotes" and [[stack]]
tiers = ["a", "b"]

[[stack]]
name = "one"
description = """
[[stack]]
name = "not-a-stack"
key = "inside a string"
"""
tags = [
  "x",   # a comment ]
  "y",
]
[stack.config]
environment = \'\'\'
FAKE = [[VALUE]]
\'\'\'
pre_deploy.command = "echo '[not a table]'"
"quoted.key" = 1

[[stack]]
name = "two"
after = ["one"]
[stack.config]
server = "h"
executions = [
  { execution.type = "A", name = "inline" },
]
[[stack.config.pre_deploy]]
command = "first"
[[stack.config.pre_deploy]]
command = "second"
  [stack.config.health]
  timeout = 30
'''


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("tiers",), 2),
        (("stack", 0), 4),
        (("stack", 0, "name"), 5),
        (("stack", 0, "description"), 6),
        (("stack", 0, "tags"), 11),
        (("stack", 0, "tags", 1), 11),  # inside a value: the key's line
        (("stack", 0, "config"), 15),
        (("stack", 0, "config", "environment"), 16),
        (("stack", 0, "config", "pre_deploy"), 19),
        (("stack", 0, "config", "pre_deploy", "command"), 19),
        (("stack", 0, "config", "quoted.key"), 20),
        (("stack", 1), 22),
        (("stack", 1, "name"), 23),
        (("stack", 1, "after", 0), 24),
        (("stack", 1, "config", "server"), 26),
        (("stack", 1, "config", "executions", 0, "execution"), 27),
        (("stack", 1, "config", "pre_deploy", 0, "command"), 31),
        (("stack", 1, "config", "pre_deploy", 1), 32),
        (("stack", 1, "config", "pre_deploy", 1, "command"), 33),
        (("stack", 1, "config", "health", "timeout"), 35),
        (("stack", 2), 4),  # no such entry: the nearest ancestor, never a crash
    ],
)
def test_line_of(path: tuple[str | int, ...], line: int) -> None:
    import tomllib

    tomllib.loads(TRICKY)  # the map assumes valid TOML; make sure the sample is
    assert LineMap(TRICKY).line_of(path) == line


def test_cycle_is_listed_in_order_and_deterministic() -> None:
    g = Graph({"c": ["a"], "a": ["b"], "b": ["c"], "d": []})
    assert g.find_cycle() == ["a", "b", "c", "a"]
    assert Graph({"x": ["x"]}).find_cycle() == ["x", "x"]
    assert Graph({"a": ["b"], "b": []}).find_cycle() is None


def test_waves_follow_tiers_and_after() -> None:
    g = stack_graph(
        [
            ("op", "infra", []),
            ("caddy", "infra", []),
            ("pg", "platform", []),
            ("app", "application", ["pg"]),
            ("free", "", []),
        ],
        ["infra", "platform", "application"],
    )
    waves = [[n for n in w if not n.startswith("tier:")] for w in g.waves()]
    waves = [w for w in waves if w]
    assert waves[0] == ["caddy", "free", "op"]
    assert waves.index(["pg"]) < waves.index(["app"])
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> a"):
        Graph({"a": ["b"], "b": ["a"]}).waves()


def test_deep_chain_does_not_hit_the_recursion_limit() -> None:
    n = 20_000
    g = Graph({f"s{i}": [f"s{i - 1}"] if i else [] for i in range(n)})
    assert g.find_cycle() is None
    assert len(g.dependents(["s0"])) == n - 1


def test_dependents_name_the_direct_reason() -> None:
    g = Graph({"web": ["db"], "worker": ["web"], "db": []})
    assert g.dependents(["db"]) == {"web": "db", "worker": "web"}


def test_references_and_interpolation() -> None:
    assert references("A=[[X]] B=[[ Y ]] C=[[X]] [[not a ref]]") == ["X", "Y"]
    values = Values({"TZ": "UTC"}, secrets={"TOKEN": "s3cr3t"}, secret_variables=())
    assert values.interpolate("TZ=[[TZ]] T=[[TOKEN]]") == "TZ=UTC T=s3cr3t"
    assert values.render_masked("TZ=[[TZ]] T=[[TOKEN]]") == "TZ=UTC T=***"
    assert values.mask("login with s3cr3t now") == "login with *** now"
    with pytest.raises(UnknownVariable, match=r"stack web: \[\[NOPE\]\] is neither"):
        values.interpolate("[[NOPE]]", where="stack web")


def test_secret_variables_are_masked_too() -> None:
    values = Values({"DB": "pw-123", "TZ": "UTC"}, secret_variables=["DB"])
    assert values.is_secret("DB") and not values.is_secret("TZ")
    assert values.render_masked("[[DB]]/[[TZ]]") == "***/UTC"
    assert values.mask("pw-123 leaked") == "*** leaked"


_TRICKY_TEXT = st.sampled_from(
    ["plain", "[[stack]]", 'name = "x"', "a = [1,", "}", "# not a comment", "'quoted'", "\\\\"]
)
_VALUE = st.one_of(
    st.just(('"simple"', 0)),
    st.just(("42", 0)),
    st.just(('["a", "b"]', 0)),
    st.just(('{ path = "p", command = "c" }', 0)),
    st.lists(_TRICKY_TEXT, min_size=1, max_size=3).map(
        lambda ls: ('"""\n' + "\n".join(x.replace('"', "'") for x in ls) + '\n"""', len(ls) + 1)
    ),
    st.lists(_TRICKY_TEXT, min_size=1, max_size=3).map(
        lambda ls: ("'''\n" + "\n".join(x.replace("'", '"') for x in ls) + "\n'''", len(ls) + 1)
    ),
    st.integers(1, 3).map(lambda n: ("[\n" + '  "x", # ] {\n' * n + "]", n + 1)),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d.e"]), _VALUE), max_size=5),
        min_size=1,
        max_size=4,
    )
)
def test_property_every_key_is_found_on_its_line(
    stacks: list[list[tuple[str, tuple[str, int]]]],
) -> None:
    import tomllib

    lines: list[str] = []
    expected: dict[tuple[str | int, ...], int] = {}
    for i, keys in enumerate(stacks):
        lines += ["[[stack]]", f'name = "s{i}"', "[stack.config]"]
        seen: set[str] = set()
        for key, (value, _lines) in keys:
            root = key.split(".")[0]
            if root in seen:
                continue
            seen.add(root)
            lines.append(f"{key} = {value}")
            expected[("stack", i, "config", *key.split("."))] = len(lines)
            lines[-1:] = lines[-1].split("\n")  # the value's own lines
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # the generator makes valid TOML
    lm = LineMap(text)
    for path, line in expected.items():
        assert lm.line_of(path) == line, (path, text)
