"""RotateAllServerKeys across real core and periphery processes (Komodo's
bin/core/src/api/execute/maintenance.rs ``RotateAllServerKeys`` and periphery
bin/periphery/src/api/keys.rs ``RotatePrivateKey``: the agent makes the new key, the core keeps
it as the server's key in its state). The agent stays reachable throughout: its channel is not
cut, it reconnects with the new key after a restart of either side, the old key is refused
after the rotation, and an agent killed in the middle of one comes back on a key the core
accepts."""

from __future__ import annotations

import random
import secrets
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from core.client import CoreClient
from protocol.keys import parse_private_key, parse_public_key
from tests.support.processes import CoreProcess, Periphery, free_port, make_key, toml_value

pytestmark = pytest.mark.anyio


def resources(agent: Periphery) -> str:
    return (
        '[[server]]\nname = "agent"\n[server.config]\n'
        f"address = {toml_value(agent.url)}\n"
        f"public_key = {toml_value(agent.keys.key.public_key.openssh_line())}\n\n"
        '[[procedure]]\nname = "rotate"\n[[procedure.config.stage]]\nname = "Keys"\n'
        'executions = [{ execution.type = "RotateAllServerKeys", execution.params = {} }]\n'
    )


async def connected(client: CoreClient) -> tuple[bool, str | None]:
    body = await client.servers()
    [server] = [s for s in body["servers"] if s["name"] == "agent"]
    return bool(server["connected"]), server["key"]


async def wait_connected(client: CoreClient, within: float = 15.0) -> str:
    with anyio.fail_after(within):
        while True:
            up, key = await connected(client)
            if up and key:
                return key
            await anyio.sleep(0.1)


async def test_rotation_keeps_the_agent_reachable(tmp_path: Path) -> None:
    token = secrets.token_hex(16)
    core_key = make_key(tmp_path / "core.key")
    agent = Periphery(
        tmp_path / "agent", core_key, listen=f"127.0.0.1:{free_port()}", reconnect_max_delay=0.5
    )
    agent.start_and_wait()
    core = CoreProcess(tmp_path / "core", core_key, token, reconcile="manual")
    core.resources.write_text(resources(agent))
    key_file = agent.keys.path
    original = key_file.read_bytes()
    core.start_and_wait()
    try:
        async with CoreClient(core.url, token, timeout=30) as client:
            await client.sync("local")
            first = await wait_connected(client)
            assert first == agent.keys.key.public_key.fingerprint()

            # the channel stays up while it rotates: sampled every 20 ms
            drops: list[float] = []
            done = anyio.Event()

            async def watch() -> None:
                while not done.is_set():
                    up, _ = await connected(client)
                    if not up:
                        drops.append(time.monotonic())
                    await anyio.sleep(0.02)

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                run = await client.wait_procedure(await client.run_procedure("rotate"), 60)
                done.set()
            assert run["status"] == "succeeded", (run["message"], run["output"])
            assert drops == [], "the agent's channel was never down during the rotation"
            new_key = parse_private_key(key_file.read_bytes())
            assert (
                key_file.read_bytes() != original
                and not (key_file.parent / "periphery.key.next").exists()
            )
            assert (key_file.stat().st_mode & 0o777) == 0o600
            assert key_file.with_name("periphery.key.pub").read_text().strip() == (
                new_key.public_key.openssh_line()
            )
            text = "\n".join(line["text"] for line in run["output"])
            assert f"Rotated keys for agent: {first} -> {new_key.public_key.fingerprint()}" in text
            with sqlite3.connect(core.workdir / "data" / "stackward.db") as db:
                [(active, nxt)] = db.execute("SELECT active, next FROM server_keys").fetchall()
            assert parse_public_key(active) == new_key.public_key and nxt == ""

            # the agent restarts: it is reached with the new key
            agent.stop()
            agent.start()
            assert await wait_connected(client) == new_key.public_key.fingerprint()
        # the core restarts: the rotated key is its state
        core.stop()
        core.start_and_wait()
        async with CoreClient(core.url, token, timeout=30) as client:
            assert await wait_connected(client) == new_key.public_key.fingerprint()
            # the old key is refused now
            agent.stop()
            key_file.write_bytes(original)
            agent.start()
            core.wait_for("is not the pinned key", 15)
            assert not (await connected(client))[0]
            agent.stop()
            key_file.write_bytes(new_key.openssh_pem())
            agent.start()
            await wait_connected(client, 45)  # the core's dialer may be in a long backoff

            # killed in the middle of rotations, the agent always comes back
            rng = random.Random(7)
            for _ in range(4):
                run_id = await client.run_procedure("rotate")
                await anyio.sleep(rng.uniform(0.0, 0.05))
                assert agent.proc is not None
                agent.proc.kill()  # kill -9
                agent.proc.wait(10)
                await client.wait_procedure(run_id, 60)
                agent.start()
                await wait_connected(client, 20)
            run = await client.wait_procedure(await client.run_procedure("rotate"), 60)
            assert run["status"] == "succeeded", run["message"]
            await wait_connected(client)
    finally:
        core.stop()
        agent.stop()
