"""Every file of the Komodo corpus loads: warnings for the unsupported and unknown, no errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.resources import validate

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "komodo-corpus"
FILES = sorted(CORPUS.glob("*.toml"))


def test_corpus_is_there() -> None:
    assert len(FILES) == 27, f"expected the 27 corpus files in {CORPUS}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_file_loads_without_errors(path: Path) -> None:
    rs = validate([path])
    assert rs.errors == [], "\n".join(f.format() for f in rs.errors)
    assert rs.resources, "every corpus file defines at least one supported resource"
    for f in rs.findings:
        assert f.file == str(path)
        assert 1 <= f.line <= len(path.read_text().splitlines())


def _finding(path: Path, line: int, needle: str) -> None:
    rs = validate([path])
    hits = [f for f in rs.findings if f.line == line and needle in f.message]
    assert hits, f"no finding at {path.name}:{line} with {needle!r}:\n" + "\n".join(
        f.format() for f in rs.findings
    )


def test_unsupported_tables_are_warnings_at_their_line() -> None:
    _finding(CORPUS / "BrockCSC__brockcsc.ca.toml", 8, "build resources are not supported")
    _finding(
        CORPUS / "Maaskk__industrial-equipment-health-platform.toml",
        168,
        "user_group resources are not supported",
    )


def test_misplaced_keys_say_where_they_belong() -> None:
    path = CORPUS / "Geckuss__bigmt-mediaserver.toml"
    _finding(path, 27, 'unknown key "enabled" (it belongs in [server.config])')
    _finding(path, 34, 'unknown key "tags" (it belongs on the [[server]] entry, not in its config)')
    _finding(path, 159, 'unknown key "delete_unmatched"')


def test_aliases_and_shapes_are_normalised() -> None:
    rs = validate([CORPUS / "BigH3ater__kdk-lab-dkr.toml"])
    proxy = rs.resources[("stack", "proxy")].config
    assert proxy.server == "kdk-dkr-01"
    assert proxy.pre_deploy[0].command.startswith("sh -c")
    proc = rs.resources[("procedure", "nightly-backups")].config
    assert [s.name for s in proc.stages] == ["dkr-01", "dmz"]
    assert proc.stages[0].executions[0].execution.type == "DeployStack"
    assert proc.stages[0].executions[0].execution.params == {"stack": "backup-dkr-01"}


def test_environment_is_kept_as_komodo_keeps_it() -> None:
    """Komodo's env_vars_deserializer keeps the string as written (a final newline added);
    the lines are split only at deploy (client/core/rs/src/deserializers/environment.rs)."""
    rs = validate([CORPUS / "DracoBlackBelt__homelab-infra__komodo__stacks.toml"])
    env = rs.resources[("stack", "traefik-edge")].config.environment
    assert env == "CF_DNS_API_TOKEN = [[CF_DNS_API_TOKEN]]\n"


def test_strict_fails_on_unknown_keys_and_inert_fields_not_on_variables() -> None:
    path = CORPUS / "Geckuss__bigmt-mediaserver.toml"
    assert validate([path]).errors == []
    strict = validate([path], strict=True)
    codes = {f.code for f in strict.errors}
    # its stacks' poll_for_updates are acted on since issue 14 (image updates): not inert
    assert codes == {"unknown_key"}, codes
    # the file's missing variables (core secrets) stay warnings
    assert [f.code for f in strict.warnings] == ["variable"]


def test_a_directory_loads_recursively_and_duplicates_across_files_are_errors() -> None:
    rs = validate([CORPUS])
    assert len(rs.files) == 27
    dups = [f for f in rs.errors if f.code == "duplicate"]
    assert dups and all("already defined at" in f.message for f in dups)


def test_fast_and_standard_parsers_agree_on_the_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    from core.resources import loader

    fast = {path: [f.format() for f in validate([path]).findings] for path in FILES}
    for path in FILES:
        text = path.read_text()
        assert loader.parse_toml(text) == tomllib.loads(text), path.name
    monkeypatch.setattr(loader, "rtoml", None)  # without rtoml: the same findings
    for path in FILES:
        assert [f.format() for f in validate([path]).findings] == fast[path], path.name
