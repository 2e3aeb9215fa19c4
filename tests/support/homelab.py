"""Small git repositories of stacks for deploy tests: files in, a file:// URL and commits out."""

from __future__ import annotations

import subprocess
from pathlib import Path

IMAGE = "stackward-test/busybox:1"

SWARM_STACK = """version: "3.8"
services:
  web:
    image: {image}
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "{probe}", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 2s
      retries: 8
"""

COMPOSE_STACK = """services:
  web:
    image: {image}
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 2s
      retries: 8
"""


class Repo:
    def __init__(self, root: Path) -> None:
        self.work = root / "work"
        self.bare = root / "origin.git"
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "--bare", str(self.bare), cwd=root)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=root)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", self.url, "main")
        return self.git("rev-parse", "HEAD")
