"""What Komodo accepts and rejects, and the messages validate gives, each test with the Komodo
code it follows (moghtech/komodo 2.3.2: client/core/rs/src/...)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.resources import Known, check, validate
from core.resources.envtext import EnvLine, EnvProblem, from_pairs, parse_lines
from core.resources.linemap import LineMap
from core.resources.loader import load_paths, load_text, parse_string_list
from core.resources.suggest import closest, edit_distance


def _findings(text: str, known: Known | None = None) -> list[str]:
    return [f.format() for f in check(load_text(text, "F"), known).sorted_findings()]


def _line(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def _has(findings: list[str], line: int, severity: str, *needles: str) -> None:
    hits = [f for f in findings if f.startswith(f"F:{line}: {severity}: ")]
    assert any(all(n in f for n in needles) for f in hits), (
        f"want F:{line}: {severity}: {needles}; got:\n" + "\n".join(findings)
    )


STACK = '[[stack]]\nname = "web"\n[stack.config]\nserver = "h"\nrepo = "o/r"\n'


# -- false alarms no more ------------------------------------------------------------------


def test_a_stage_execution_is_komodos_alias_of_executions() -> None:
    """ProcedureStage: ``#[serde(default, alias = "execution")] pub executions``
    (client/core/rs/src/entities/procedure.rs)."""
    text = """[[procedure]]
name = "p"
[[procedure.config.stage]]
name = "one"
execution = [
  { execution.type = "DeployStack", execution.params.stack = "web", enabled = true },
  { execution.type = "DeployStack", execution.params.stack = "db" },
]
"""
    rs = check(load_text(text, "F"))
    # the procedure runs: what it names and the file does not define is said, nothing else
    assert [f.code for f in rs.findings] == ["reference", "reference"]
    [stage] = rs.resources[("procedure", "p")].config.stages
    assert [e.execution.target() for e in stage.executions] == ["web", "db"]
    both = text.replace('name = "one"\n', 'name = "one"\nexecutions = []\n')
    _has(_findings(both), _line(both, "execution = ["), "error", "are the same field")


def test_pre_deploy_shell_mode_is_a_komodo_field() -> None:
    """SystemCommand { path, command, shell_mode } (client/core/rs/src/entities/mod.rs)."""
    text = STACK + 'pre_deploy = { command = "a\\nb", shell_mode = true }\n'
    rs = check(load_text(text, "F"))
    assert not [f for f in rs.findings if f.code == "unknown_key"]
    assert rs.resources[("stack", "web")].config.pre_deploy[0].shell_mode is True


def test_environment_as_an_array_of_variable_value() -> None:
    """env_vars_deserializer's visit_seq: ``"  {variable} = {value}"`` lines joined by newlines,
    a final newline (client/core/rs/src/deserializers/environment.rs)."""
    text = STACK + (
        'environment = [{ variable = "TZ", value = "UTC" }, { variable = "URL",'
        ' value = "http://x:1" }]\n'
    )
    rs = check(load_text(text, "F"))
    assert rs.findings == [] or all(f.code == "reference" for f in rs.findings)
    env = rs.resources[("stack", "web")].config.environment
    assert env == "  TZ = UTC\n  URL = http://x:1\n"


def test_comment_lines_in_environment_are_skipped() -> None:
    """parse_key_value_list skips lines starting with ``#`` or ``//`` and cuts `` #`` comments
    (client/core/rs/src/parsers.rs)."""
    text = STACK + 'environment = """\n// a comment\n# another\nTZ = UTC # note\n\n"""\n'
    rs = check(load_text(text, "F"))
    assert not [f for f in rs.findings if f.severity == "error"]
    env = rs.resources[("stack", "web")].config.environment
    assert env == "// a comment\n# another\nTZ = UTC # note\n\n"  # kept as written


def test_komodos_own_parser_example() -> None:
    """The example in parse_key_value_list's doc comment, with its stated result."""
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
    assert [(e.variable, e.value) for e in parse_lines(text) if isinstance(e, EnvLine)] == [
        ("KEY_1", "value_1"),
        ("KEY_2", '"value_2"'),
        ("KEY_3", "value_3"),
        ("KEY_4", "'value_4'"),
        ("KEY_5", "value_5"),
        ("KEY_6", "'value_6'"),
    ]


_KEYS = st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True)
_VALUES = st.text(
    alphabet=st.characters(blacklist_characters="#\n\r'\"", blacklist_categories=("Cs", "Cc")),
    max_size=30,
).map(str.strip)


@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=8))
def test_the_array_form_reads_back_as_its_pairs(pairs: list[tuple[str, str]]) -> None:
    assert [
        (e.variable, e.value) for e in parse_lines(from_pairs(pairs)) if isinstance(e, EnvLine)
    ] == pairs


def test_string_lists_are_read_as_komodo_reads_them() -> None:
    """parse_string_list: lines, then commas; ``#`` lines and `` #`` comments dropped."""
    assert parse_string_list("# files\na.yaml # main\nb.yaml, c.yaml\n\n") == [
        "a.yaml",
        "b.yaml",
        "c.yaml",
    ]


# -- shapes Komodo rejects -----------------------------------------------------------------


def test_environment_as_a_table_is_rejected_as_komodo_does() -> None:
    """env_vars_deserializer has no visit_map: a table fails the whole sync file."""
    text = STACK + 'environment = { TZ = "UTC" }\n'
    _has(
        _findings(text),
        _line(text, "environment"),
        "error",
        'stack "web": config.environment: a table: Komodo does not accept this',
        'environment = """',
    )


def test_environment_as_an_array_of_strings_is_rejected() -> None:
    text = STACK + 'environment = ["TZ=UTC"]\n'
    _has(_findings(text), _line(text, "environment"), "error", "Komodo does not accept")


def test_pre_deploy_as_an_array_of_tables_is_rejected_as_komodo_does() -> None:
    """StackConfig.pre_deploy is one SystemCommand: an array fails the sync file."""
    text = STACK + '[[stack.config.pre_deploy]]\ncommand = "make"\nargs = ["x"]\n'
    findings = _findings(text)
    _has(
        findings,
        _line(text, "[[stack.config.pre_deploy]]"),
        "error",
        "pre_deploy: an array of commands: Komodo does not accept this",
        "one multi-line command",
    )


def test_an_environment_line_komodo_cannot_split_is_an_error_at_its_line() -> None:
    """parse_key_value_list fails on a line with neither '=' nor ':' (the deploy fails)."""
    text = STACK + 'environment = """\nTZ = UTC\nJUSTAWORD\n"""\n'
    _has(_findings(text), _line(text, "JUSTAWORD"), "error", "'JUSTAWORD' is not an assignment")


# -- messages --------------------------------------------------------------------------------


def test_deploy_under_config_belongs_on_the_entry() -> None:
    text = STACK + "deploy = true\n"
    findings = _findings(text)
    _has(
        findings,
        _line(text, "deploy = true"),
        "warning",
        'unknown key "deploy" (it belongs on the [[stack]] entry, not in its config)',
    )
    assert not any("pre_deploy" in f for f in findings)


def test_an_unterminated_string_is_reported_where_it_opened() -> None:
    text = STACK + 'environment = """\nA=1\nB=2\n\n[[stack]]\nname = "other"\n'
    [finding] = _findings(text)
    assert finding.startswith(f"F:{_line(text, 'environment')}: error: not valid TOML")
    assert "never closed" in finding


def test_an_unclosed_array_is_reported_where_it_opened() -> None:
    text = STACK + 'file_paths = [\n  "a.yaml",\n'
    [finding] = _findings(text)
    assert finding.startswith(f"F:{_line(text, 'file_paths')}: error: not valid TOML")


def test_a_binary_file_is_unreadable(tmp_path: Path) -> None:
    blob = tmp_path / "image.toml"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    latin = tmp_path / "latin.toml"
    latin.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    rs = load_paths([blob, latin])
    assert [(f.file, f.line, f.code) for f in rs.findings] == [
        (str(blob), 1, "unreadable"),
        (str(latin), 1, "unreadable"),
    ]
    assert all("not a text file" in f.message for f in rs.findings)


@pytest.mark.parametrize(
    ("body", "needle", "hint"),
    [
        ('[[stack]]\nname = "web"\n[stack.config]\nserver = "nsa"\n', 'server = "nsa"', "nas"),
        ('[[stack]]\nname = "web"\n[stack.config]\nswarm = "prdo"\n', 'swarm = "prdo"', "prod"),
        (
            '[[stack]]\nname = "web"\n[stack.config]\nserver = "nas"\nlinked_repo = "infar"\n',
            "linked_repo",
            "infra",
        ),
    ],
)
def test_did_you_mean_for_servers_swarms_repos(body: str, needle: str, hint: str) -> None:
    defs = (
        '[[server]]\nname = "nas"\n\n[[swarm]]\nname = "prod"\nconfig.servers = ["nas"]\n\n'
        '[[repo]]\nname = "infra"\n\n'
    )
    text = defs + body
    _has(_findings(text), _line(text, needle), "warning", f'(did you mean "{hint}"?)')
    _has(_findings(text, Known()), _line(text, needle), "error", f'(did you mean "{hint}"?)')


def test_did_you_mean_for_stacks_in_after() -> None:
    text = STACK + '\n[[stack]]\nname = "db"\nafter = ["wbe"]\n[stack.config]\nserver = "h"\n'
    _has(_findings(text), _line(text, "after"), "error", '"wbe", which is no stack (did you mean')


def test_a_misspelt_variable_is_named_at_the_line_that_uses_it() -> None:
    text = (
        '[[variable]]\nname = "DOMAIN"\nvalue = "example.com"\n\n'
        + STACK
        + 'environment = """\nTZ = UTC\nHOST = app.[[DOMIAN]]\n"""\n'
    )
    _has(
        _findings(text),
        _line(text, "[[DOMIAN]]"),
        "warning",
        'environment uses [[DOMIAN]], which is not defined (did you mean "DOMAIN"?)',
    )


def test_missing_variables_are_summarised_once_with_the_secrets_hint() -> None:
    names = [f"SECRET_{i}" for i in range(38)]
    lines = "\n".join(f"V{i} = [[{n}]]" for i, n in enumerate(names))
    text = STACK + f'environment = """\n{lines}\n"""\npre_deploy.command = "echo [[SECRET_0]]"\n'
    findings = [f for f in _findings(text) if "[[SECRET_" in f]
    assert len(findings) == 1, findings
    [summary] = findings
    first = _line(text, "[[SECRET_0]]")
    assert summary.startswith(f"F:{first}: warning: 38 variables used here are not defined")
    assert f"[[SECRET_0]] (lines {first}, {_line(text, 'pre_deploy')})" in summary
    assert f"[[SECRET_37]] (line {_line(text, '[[SECRET_37]]')})" in summary
    assert "core.toml's [secrets]" in summary
    planned = [
        f for f in _findings(text, Known(variables={"SECRET_1", "OTHER"})) if "[[SECRET_" in f
    ]
    assert len(planned) == 1 and ": error: 37 variables" in planned[0]
    assert "neither a [[variable]] nor a secret the core holds" in planned[0]


def test_skip_secret_interp_means_no_variable_is_looked_for() -> None:
    """Komodo interpolates nothing into a stack with skip_secret_interp."""
    text = STACK + 'skip_secret_interp = true\nenvironment = "A=[[LITERAL]]"\n'
    findings = _findings(text)
    assert not any("[[LITERAL]]" in f for f in findings)
    assert not any("skip_secret_interp" in f for f in findings)  # acted on: no warning


def test_strict_fails_on_unknown_keys_and_inert_fields_only(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text(
        STACK + 'run_build = true\nauto_pul = true\nenvironment = "A=[[NOPE]]"\n'
        '\n[[build]]\nname = "b"\n'
    )
    strict = validate([path], strict=True)
    assert sorted(f.code for f in strict.errors) == ["inert", "unknown_key", "unsupported"]
    assert sorted(f.code for f in strict.warnings) == ["reference", "variable"]


def test_plural_tables_are_komodos_aliases() -> None:
    """ResourcesToml: ``#[serde(alias = "stack")] pub stacks`` and so on."""
    text = '[[stacks]]\nname = "web"\n[stacks.config]\nserver = "h"\nrepo = "o/r"\n'
    rs = check(load_text(text, "F"))
    assert ("stack", "web") in rs.resources
    assert [f.code for f in rs.findings] == ["reference"]
    both = text + '\n[[stack]]\nname = "db"\n'
    assert any("the same table for Komodo" in f for f in _findings(both))


def test_config_files_requires_takes_komodos_lowercase_aliases() -> None:
    """StackFileRequires: variants with ``alias = "redeploy"`` etc.; the default is None."""
    text = STACK + 'config_files = [{ path = "a.conf", requires = "redeploy" }, "b.conf"]\n'
    rs = check(load_text(text, "F"))
    files = rs.resources[("stack", "web")].config.config_files
    assert [(f.path, f.requires) for f in files] == [("a.conf", "Redeploy"), ("b.conf", "None")]


def test_a_procedure_deploys_stacks_with_deploy_false_like_komodo() -> None:
    """Procedures run (core/automation): a stack with ``deploy = false`` that a procedure
    deploys (BatchDeployStackIfChanged "*": Komodo's list_full_for_user_using_pattern) deploys
    as with Komodo, so it is no difference any more; a bad pattern is an error at its line."""
    text = (
        STACK.replace('name = "web"', 'name = "web"\ndeploy = false')
        + '\n[[stack]]\nname = "db"\ndeploy = true\n[stack.config]\nserver = "h"\nrepo = "o/r"\n'
        + '\n[[procedure]]\nname = "push"\n[[procedure.config.stage]]\nname = "all"\n'
        + 'executions = [{ execution.type = "BatchDeployStackIfChanged",'
        + ' execution.params.pattern = "*" }]\n'
    )
    rs = check(load_text(text, "F"))
    assert not [f for f in rs.findings if "procedure" in f.message], rs.findings
    assert ("stack", "web") not in rs.inert
    bad = text.replace('pattern = "*"', 'pattern = "\\\\(\\\\"')
    _has(_findings(bad), _line(bad, "executions = ["), "error", "regular expression")


# -- pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "known", "want"),
    [
        ("nsa", ["nas", "db"], "nas"),
        ("DOMIAN", ["DOMAIN", "TZ"], "DOMAIN"),
        ("Web", ["web"], "web"),
        ("auto_pul", ["auto_pull", "auto_update"], "auto_pull"),
        ("xyz", ["nas", "web"], None),
        ("db", ["dc"], None),  # one letter of two: too far to guess
        ("SECRET_0", ["SECRET_1"], None),  # siblings, not a misspelling
    ],
)
def test_closest(word: str, known: list[str], want: str | None) -> None:
    assert closest(word, known) == want


@given(st.text(max_size=8), st.text(max_size=8))
def test_edit_distance_is_symmetric_and_zero_only_for_equal(a: str, b: str) -> None:
    assert edit_distance(a, b, 20) == edit_distance(b, a, 20)
    assert (edit_distance(a, b, 20) == 0) == (a == b)
    assert edit_distance(a, b, 20) <= max(len(a), len(b))


@given(st.text(min_size=2, max_size=10), st.data())
def test_a_swap_of_neighbours_is_one_edit(word: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(word) - 2))
    swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    assert edit_distance(word, swapped) == (0 if swapped == word else 1)


def test_linemap_knows_where_an_open_value_began() -> None:
    assert LineMap('a = 1\nb = """\nx\n').unterminated() == 2
    assert LineMap("a = [\n  1,\n").unterminated() == 1
    assert LineMap('a = """\nx\n"""\n').unterminated() is None


def test_env_problems_carry_their_index() -> None:
    assert parse_lines("A=1\n\nnope\n") == [EnvLine(0, "A", "1"), EnvProblem(2, "nope")]
