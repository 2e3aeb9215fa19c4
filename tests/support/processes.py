"""Real ``stackward`` processes for tests and benchmarks: keys, configs, start, stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.keys import PrivateKey, PublicKey

REPO = Path(__file__).resolve().parents[2]


def stackward_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "core.cli", *args]


@dataclass
class KeyPair:
    path: Path
    key: PrivateKey

    @property
    def pub_path(self) -> Path:
        return self.path.with_name(self.path.name + ".pub")

    @property
    def public(self) -> PublicKey:
        return self.key.public_key


def make_key(path: Path) -> KeyPair:
    key = PrivateKey.generate("test")
    path.write_bytes(key.openssh_pem())
    path.chmod(0o600)
    path.with_name(path.name + ".pub").write_text(key.public_key.openssh_line() + "\n")
    return KeyPair(path, key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_toml(path: Path, values: dict[str, Any]) -> Path:
    path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))
    return path


class LoggedProcess:
    """A child process whose stderr is collected by a thread, so tests can wait for lines."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._cond = threading.Condition()
        self.preexec: Callable[[], None] | None = None  # e.g. a lower RLIMIT_NOFILE

    def start(self) -> None:
        self.lines = []
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=self.preexec,
        )
        threading.Thread(target=self._reader, args=(self.proc,), daemon=True).start()

    def _reader(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                assert self.proc is not None
                if remaining <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
                    if self.proc.poll() is not None:
                        time.sleep(0.05)  # let the reader drain
                        if any(regex.search(line) for line in self.lines[seen:]):
                            continue
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout}s; "
                        f"exit={self.proc.poll()} log:\n" + "\n".join(self.lines[-30:])
                    )
                self._cond.wait(min(remaining, 0.1))

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


class Periphery(LoggedProcess):
    """``stackward periphery`` with a config written from keyword arguments."""

    def __init__(self, workdir: Path, core: KeyPair, **config: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.keys = make_key(workdir / "periphery.key")
        values: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "private_key": str(self.keys.path),
            "core_public_keys": [str(core.pub_path)],
            "root_directory": str(workdir / "root"),
        }
        values.update(config)
        self.config_path = write_toml(workdir / "periphery.toml", values)
        super().__init__(stackward_argv("periphery", "--config", str(self.config_path)), workdir)
        self.url = ""

    def start_and_wait(self, timeout: float = 15.0) -> str:
        """Start and return the URL it listens on (or "" in dial-out-only mode)."""
        self.start()
        match = self.wait_for(r"periphery listening on (\S+)|periphery ready", timeout)
        if match.group(1):
            self.url = match.group(1)
            self.wait_for(r"periphery ready", timeout)
        return self.url

    def rewrite(self, **config: Any) -> None:
        import tomllib

        values = tomllib.loads(self.config_path.read_text())
        values.update(config)
        write_toml(self.config_path, values)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CoreProcess(LoggedProcess):
    """``stackward core`` on a fixed port (so a restart keeps its address for the agents that
    dial it), with a config written from keyword arguments."""

    def __init__(self, workdir: Path, key: KeyPair, token: str, **config: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.token = token
        self.resources = workdir / "resources.toml"
        if not self.resources.exists():
            self.resources.write_text("")
        values: dict[str, Any] = {
            "listen": f"127.0.0.1:{self.port}",
            "data_dir": str(workdir / "data"),
            "private_key": str(key.path),
            "api_tokens": [token],
            "resources": [str(self.resources)],
            "poll_interval": 0,
        }
        values.update(config)
        self.config_path = write_toml(workdir / "core.toml", values)
        super().__init__(stackward_argv("core", "--config", str(self.config_path)), workdir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_and_wait(self, timeout: float = 20.0) -> None:
        start = len(self.lines)
        self.start()
        self.wait_for(r"core listening on", timeout, start=start if start else 0)

    def kill(self) -> None:
        """kill -9, and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
