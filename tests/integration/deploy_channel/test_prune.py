"""auto_prune through a real periphery process: the command Komodo's PruneImages runs reaches
``docker`` on the host (a stand-in ``docker`` that records what it is asked: pruning the shared
test engine is not ours to do)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.deploy.prune import prune_once
from core.pool import PeripheryPool, ServerEndpoint
from core.resources.models import ServerConfig
from tests.support.processes import KeyPair

pytestmark = pytest.mark.anyio


async def test_prune_runs_docker_image_prune_on_enabled_servers(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls"
    fake = bin_dir / "docker"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {record}\necho "Total reclaimed space: 0B"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    periphery = periphery_factory.make()
    periphery.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    periphery.start_and_wait()
    servers = {
        "p1": ServerConfig(enabled=True),
        "off": ServerConfig(enabled=True, auto_prune=False),
        "disabled": ServerConfig(),
    }

    async with PeripheryPool(core_keys.key) as pool:
        pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])

        async def configs() -> dict[str, ServerConfig]:
            return servers

        async def channel(name: str):  # type: ignore[no-untyped-def]
            return await pool.channel(name)

        assert await prune_once(configs, channel) == {"p1": True}
    calls = [c for c in record.read_text().splitlines() if "version" not in c]  # the agent's probe
    assert calls == ["image prune -a -f"]
