"""``stackward core`` started for real, driven by ``stackward plan`` / ``apply`` subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def core(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    res = tmp_path / "resources.toml"
    res.write_text(
        '[[server]]\nname = "h1"\n\n[[stack]]\nname = "web"\ndeploy = true\n'
        '[stack.config]\nserver = "h1"\nrun_directory = "stacks/web"\n'
    )
    port = _free_port()
    cfg = tmp_path / "core.toml"
    cfg.write_text(
        f'listen = "127.0.0.1:{port}"\ndata_dir = "data"\n'
        f'api_tokens = ["{TOKEN}"]\nresources = ["resources.toml"]\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "core", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(
                    "core did not start:\n" + (proc.stdout.read() if proc.stdout else "")
                ) from None
            time.sleep(0.1)
    try:
        yield url, res
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=10) == 0, "core must stop cleanly on SIGTERM"
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stdout:
                proc.stdout.close()


def test_plan_and_apply_through_the_cli(core: tuple[str, Path]) -> None:
    url, res = core
    env = {**os.environ, "STACKWARD_URL": url, "STACKWARD_TOKEN": TOKEN, "NO_COLOR": "1"}
    plan = cli("plan", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "stack\n  + web  (create)" in plan.stdout
    assert "web: new stack" in plan.stdout
    assert "2 to create, 0 to update, 0 to delete, 1 to deploy." in plan.stdout
    plan_id = plan.stdout.split("--plan ")[1].split()[0]

    applied = cli("apply", "--plan", plan_id, env=env)
    assert applied.returncode == 0, applied.stderr
    assert "2 created" in applied.stdout

    stale = cli("apply", "--plan", plan_id, env=env)
    assert stale.returncode == 1 and "plan_stale" in stale.stderr

    res.write_text(res.read_text().replace("stacks/web", "stacks/www"))
    fresh = cli("apply", "--yes", "--color", "always", env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert "\033[33m~ web" in fresh.stdout
    assert (
        'config.run_directory: \033[31m"stacks/web"\033[0m -> \033[32m"stacks/www"' in fresh.stdout
    )
    assert "1 updated" in fresh.stdout


def test_wrong_token_and_unreachable_core_exit_255(core: tuple[str, Path]) -> None:
    url, _ = core
    bad = cli("plan", "--url", url, "--token", "not-the-token-at-all")
    assert bad.returncode == 255 and "unauthorized" in bad.stderr
    gone = cli("plan", "--url", f"http://127.0.0.1:{_free_port()}", "--token", TOKEN)
    assert gone.returncode == 255 and "cannot reach the core" in gone.stderr


def test_bad_config_names_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "core.toml"
    cfg.write_text('data_dir = "d"\napi_tokens = ["0123456789abcdef0"]\nlisten = 9120\n')
    proc = cli("core", "--config", str(cfg))
    assert proc.returncode == 2
    assert f'{cfg}: key "listen"' in proc.stderr


def test_events_replays_follows_live_and_exits_after_count(core: tuple[str, Path]) -> None:
    import json

    url, _ = core
    env = {**os.environ, "STACKWARD_URL": url, "STACKWARD_TOKEN": TOKEN, "NO_COLOR": "1"}
    # Live: waits for two resource.applied events, printed as JSON lines.
    live = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core.cli",
            "events",
            "--kind",
            "resource",
            "--count",
            "2",
            "--json",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # connected (a late start would still see them: --since is not needed)
        assert cli("apply", "--yes", env=env).returncode == 0
        out, err = live.communicate(timeout=30)
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["kind"] for e in events] == ["resource.applied", "resource.applied"]
    assert {e["data"]["name"] for e in events} == {"h1", "web"}

    # Replay from the start, readable lines: the core started, the files loaded, the plan.
    replay = cli("events", "--since", "0", "--count", "4", env=env)
    assert replay.returncode == 0, replay.stderr
    lines = replay.stdout.splitlines()
    assert "core.started" in lines[0] and "#1 " in lines[0]
    assert "resources.loaded" in lines[1] and "2 resource(s) from 1 file(s)" in lines[1]
    assert "plan.made" in lines[2] and "sync:local" in lines[2]
    assert "resource.applied" in lines[3] and "create" in lines[3]

    bad = cli("events", "--token", "not-the-token-at-all", env=env)
    assert bad.returncode == 255 and "refused (401)" in bad.stderr


def _core_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "core.toml"
    cfg.write_text(
        f'listen = "127.0.0.1:{_free_port()}"\ndata_dir = "data"\napi_tokens = ["{TOKEN}"]\n'
    )
    return cfg


def test_a_corrupted_or_empty_database_is_refused_at_start_with_what_to_do(
    tmp_path: Path,
) -> None:
    from core.store import Store

    cfg = _core_config(tmp_path)
    data = tmp_path / "data"
    store = Store.open(data)  # a real database, with its tables
    with store.write() as db:
        db.executemany(
            "INSERT INTO events (id, time, kind, resource, data) VALUES (?, 0, 'x', '', ?)",
            [(i, b"x" * 3000) for i in range(1, 200)],
        )
    store.close()
    db_file = data / "stackward.db"
    raw = bytearray(db_file.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 4096] = b"\xff" * 4096  # a page in the middle is garbage
    db_file.write_bytes(bytes(raw))
    done = cli("core", "--config", str(cfg))
    assert done.returncode == 1, done.stderr  # it ran, and found the state unusable
    assert "stackward.db" in done.stderr and "restore" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

    db_file.write_bytes(b"")  # a start that failed while creating it
    for extra in data.glob("stackward.db-*"):
        extra.unlink()
    done = cli("core", "--config", str(cfg))
    assert done.returncode == 1, done.stderr
    assert "is empty (0 bytes)" in done.stderr and "delete it" in done.stderr
    assert db_file.read_bytes() == b""  # nothing was made of it


def test_status_into_a_pipe_that_closes_early_ends_quietly(core: tuple[str, Path]) -> None:
    url, _ = core
    env = {**os.environ, "STACKWARD_URL": url, "STACKWARD_TOKEN": TOKEN}
    assert cli("apply", "--yes", env=env).returncode == 0
    done = subprocess.run(
        f"{sys.executable} -m core.cli status | head -c 1",
        shell=True,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_a_core_stops_in_a_second_on_sigterm(tmp_path: Path) -> None:
    cfg = _core_config(tmp_path)
    port = int(cfg.read_text().split(":")[1].split('"')[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "core", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        started = time.monotonic()
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 1.5
    finally:
        if proc.poll() is None:
            proc.kill()
