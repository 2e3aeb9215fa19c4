"""``stackward demo --once``: the example homelab end to end, real processes, real engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.processes import REPO, stackward_argv

pytestmark = pytest.mark.docker


def test_the_demo_deploys_the_homelab_and_cleans_up(docker_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        stackward_argv("demo", "--once", "--color", "never", "--workdir", str(tmp_path)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "succeeded: 10/10 healthy" in out
    for stack in ("op-connect", "caddy", "authentik", "observability", "homepage"):
        assert f"✔ {stack}" in out
    # Tier order: every infrastructure stack was healthy before a platform stack started.
    lines = out.splitlines()
    last_infra = max(i for i, line in enumerate(lines) if line.startswith(("✔ caddy", "✔ op-")))
    first_platform = min(i for i, line in enumerate(lines) if line.startswith("  postgres"))
    assert last_infra < first_platform
    # The stacks are removed on exit (without --keep).
    stacks = subprocess.run(
        ["docker", "stack", "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "caddy" not in stacks and "homepage" not in stacks
