"""``stackward validate`` as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "komodo-corpus"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "validate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_whole_corpus_file_by_file_exits_zero() -> None:
    files = sorted(str(p) for p in CORPUS.glob("*.toml"))
    assert len(files) == 27
    for f in files:
        proc = run(f)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for line in proc.stdout.splitlines():
            assert line.startswith(f"{f}:") and ": warning: " in line, line


def test_errors_exit_one_with_file_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[stack]]\nname = "web"\n[stack.config]\nserver = "h"\nauto_pull = "yes"\n')
    proc = run(str(bad))
    assert proc.returncode == 1
    assert f'{bad}:5: error: stack "web": config.auto_pull: expected a boolean' in proc.stdout


def test_strict_and_json(tmp_path: Path) -> None:
    f = tmp_path / "warn.toml"
    f.write_text('[[stack]]\nname = "web"\n[stack.config]\nserver = "h"\nauto_pul = true\n')
    assert run(str(f)).returncode == 0
    strict = run("--strict", str(f))
    assert strict.returncode == 1 and f"{f}:5: error:" in strict.stdout
    assert 'did you mean "auto_pull"' in strict.stdout
    as_json = json.loads(run("--json", str(f)).stdout)
    assert {"file": str(f), "line": 5, "severity": "warning", "code": "unknown_key"} in [
        {k: x[k] for k in ("file", "line", "severity", "code")} for x in as_json
    ]


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    assert run(str(tmp_path / "missing.toml")).returncode == 2
    assert run().returncode == 2
