"""A crafted bad file for each error class, with the exact line asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.resources import Known, check
from core.resources.loader import load_text

HEADER = """\
tiers = ["infrastructure", "platform"]

[[server]]
name = "host1"
[server.config]
address = "wss://host1:8120"

"""


def _check(tmp_path: Path, body: str, known: Known | None = None) -> list[str]:
    """Findings of HEADER+body as "F:LINE: severity: message" (parsed from text, no files)."""
    rs = check(load_text(HEADER + body, "F"), known)
    return [f.format() for f in rs.sorted_findings()]


def _line(body: str, needle: str) -> int:
    """The 1-based line in HEADER+body holding ``needle`` (so tests state lines by content)."""
    for n, line in enumerate((HEADER + body).splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(needle)


def _assert_one(findings: list[str], line: int, severity: str, *needles: str) -> None:
    hits = [
        f
        for f in findings
        if f.startswith(f"F:{line}: {severity}:") and all(n in f for n in needles)
    ]
    assert hits, f"want F:{line}: {severity}: {needles}; got:\n" + "\n".join(findings)


def test_wrong_type_names_the_expected_type(tmp_path: Path) -> None:
    body = """[[stack]]
name = "web"
deploy = "yes"
[stack.config]
server = "host1"
auto_pull = 1
file_paths = [1, 2]
"""
    out = _check(tmp_path, body)
    _assert_one(out, _line(body, 'deploy = "yes"'), "error", "deploy: expected a boolean")
    _assert_one(
        out,
        _line(body, "auto_pull = 1"),
        "error",
        "auto_pull: expected a boolean",
        "found a number (1)",
    )
    _assert_one(out, _line(body, "file_paths"), "error", "file_paths: expected a list of strings")


def test_duplicate_names_within_a_type(tmp_path: Path) -> None:
    body = """[[stack]]
name = "web"
[stack.config]
server = "host1"

[[stack]]
name = "web"
[stack.config]
server = "host1"

[[repo]]
name = "web"
"""
    out = _check(tmp_path, body)
    second = [n for n, line in enumerate((HEADER + body).splitlines(), 1) if 'name = "web"' in line]
    _assert_one(
        out,
        second[1],
        "error",
        'duplicate stack name "web"',
        f"already defined at F:{second[0] - 1}",
    )
    assert not any("duplicate repo" in f for f in out)


def test_after_naming_nothing(tmp_path: Path) -> None:
    body = """[[stack]]
name = "web"
after = ["db"]
[stack.config]
server = "host1"
"""
    _assert_one(
        _check(tmp_path, body),
        _line(body, "after = "),
        "error",
        'after names "db", which is no stack',
    )


def test_tier_not_in_tiers(tmp_path: Path) -> None:
    body = """[[stack]]
name = "web"
tier = "application"
[stack.config]
server = "host1"
"""
    _assert_one(
        _check(tmp_path, body),
        _line(body, "tier = "),
        "error",
        'tier "application" is not one of the tiers (infrastructure, platform)',
    )


def test_cycle_through_after_lists_it_in_order(tmp_path: Path) -> None:
    body = """[[stack]]
name = "a"
after = ["b"]
[stack.config]
server = "host1"

[[stack]]
name = "b"
after = ["c"]
[stack.config]
server = "host1"

[[stack]]
name = "c"
after = ["a"]
[stack.config]
server = "host1"
"""
    _assert_one(
        _check(tmp_path, body),
        _line(body, 'after = ["b"]'),
        "error",
        "dependency cycle: a -> b -> c -> a",
    )


def test_cycle_through_tiers(tmp_path: Path) -> None:
    body = """[[stack]]
name = "proxy"
tier = "infrastructure"
after = ["db"]
[stack.config]
server = "host1"

[[stack]]
name = "db"
tier = "platform"
[stack.config]
server = "host1"
"""
    _assert_one(
        _check(tmp_path, body),
        _line(body, 'after = ["db"]'),
        "error",
        "dependency cycle: db -> tier infrastructure -> proxy -> db",
    )


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('run_directory = "../elsewhere"', 'run_directory "../elsewhere" leaves the repository'),
        ('run_directory = "/srv/app"', 'run_directory "/srv/app" is absolute'),
        ('file_paths = ["../../compose.yaml"]', 'file_paths "../../compose.yaml" leaves'),
        ('pre_deploy = { path = "../..", command = "true" }', 'pre_deploy.path "../.." leaves'),
        ('additional_env_files = ["../../x.env"]', 'additional_env_files "../../x.env" leaves'),
        ('config_files = [{ path = "/etc/passwd" }]', 'config_files "/etc/passwd" is absolute'),
    ],
)
def test_paths_escaping_the_repo(tmp_path: Path, line: str, needle: str) -> None:
    body = f"""[[stack]]
name = "web"
[stack.config]
server = "host1"
{line}
"""
    _assert_one(_check(tmp_path, body), _line(body, line), "error", needle, "inside the repository")


def test_paths_inside_the_repo_and_host_files_are_fine(tmp_path: Path) -> None:
    body = """[[stack]]
name = "web"
[stack.config]
server = "host1"
run_directory = "stacks/web"
additional_env_files = ["../global.env", { path = "/mnt/env/.env", track = false }]
pre_deploy.path = "/opt/hooks"

[[stack]]
name = "scripts"
[stack.config]
server = "host1"
run_directory = "stacks/scripts"
# Komodo runs it in run_directory/path: the repository's root here
pre_deploy = { path = "../..", command = "sh scripts/x.sh" }

[[stack]]
name = "host"
[stack.config]
server = "host1"
files_on_host = true
run_directory = "/srv/host"
"""
    assert [f for f in _check(tmp_path, body) if ": error:" in f] == []


def test_name_that_cannot_be_a_docker_project(tmp_path: Path) -> None:
    body = """[[stack]]
name = "My App"
[stack.config]
server = "host1"
"""
    _assert_one(
        _check(tmp_path, body),
        _line(body, 'name = "My App"'),
        "error",
        "lowercase letters, digits, dashes and underscores",
        "must start with a letter or digit",
    )


def test_missing_target_and_references_warn_alone_and_fail_in_a_plan(tmp_path: Path) -> None:
    body = """[[stack]]
name = "web"
[stack.config]
swarm = "prod"
environment = "A=[[SECRET_A]]"

[[stack]]
name = "bare"
"""
    alone = _check(tmp_path, body)
    _assert_one(alone, _line(body, 'swarm = "prod"'), "warning", 'swarm "prod" is not defined')
    _assert_one(alone, _line(body, "environment = "), "warning", "[[SECRET_A]]")
    _assert_one(alone, _line(body, 'name = "bare"') - 1, "warning", "neither server nor swarm")
    planned = _check(tmp_path, body, known=Known())
    _assert_one(planned, _line(body, 'swarm = "prod"'), "error", 'swarm "prod" is not defined')
    _assert_one(planned, _line(body, "environment = "), "error", "[[SECRET_A]]")
    core_knows = _check(tmp_path, body, known=Known(swarms={"prod"}, variables={"SECRET_A"}))
    assert not any('"prod"' in f or "SECRET_A" in f for f in core_knows)


def test_unknown_key_with_did_you_mean(tmp_path: Path) -> None:
    body = """[[stack]]
name = "web"
[stack.config]
server = "host1"
run_directroy = "x"
"""
    _assert_one(
        _check(tmp_path, body),
        _line(body, "run_directroy"),
        "warning",
        'unknown key "run_directroy" (did you mean "run_directory"?)',
    )


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    rs = load_text('[[stack]]\nname = "a"\nbroken = = 1\n', "F")
    assert [f.format() for f in rs.findings][0].startswith("F:3: error: not valid TOML")


def test_stackward_additions_load() -> None:
    text = (
        HEADER.replace(
            'address = "wss://host1:8120"',
            'address = "wss://host1:8120"\npublic_key = "ssh-ed25519 AAA"',
        )
        + """[[repo]]
name = "infra"
[repo.config]
url = "file:///srv/git/infra.git"

[[stack]]
name = "web"
tier = "platform"
on_drift = "redeploy"
[stack.config]
server = "host1"
linked_repo = "infra"
[stack.config.health]
timeout = "5m"
wait = false
"""
    )
    rs = check(load_text(text, "F"))
    assert rs.errors == [] and rs.warnings == [], [f.format() for f in rs.findings]
    web = rs.resources[("stack", "web")]
    assert (web.tier, web.on_drift) == ("platform", "redeploy")
    assert (web.config.health.timeout, web.config.health.wait) == (300, False)
    assert rs.resources[("repo", "infra")].config.url == "file:///srv/git/infra.git"
    assert rs.resources[("server", "host1")].config.public_key == "ssh-ed25519 AAA"


def test_bad_on_drift_value(tmp_path: Path) -> None:
    body = """[[stack]]
name = "web"
on_drift = "panic"
[stack.config]
server = "host1"
"""
    _assert_one(_check(tmp_path, body), _line(body, "on_drift"), "error", "alert, redeploy, ignore")
