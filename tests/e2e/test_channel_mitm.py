"""A man in the middle of the agent channel, both ways and in both dial modes.

A real TCP relay forwards the upgrade and the handshake untouched, then injects, modifies,
replays, reorders or drops one message, toward the agent or toward the core. Every time the
channel closes, nothing the relay touched is acted on, and both ends log why.

- the core dials the agent: a real ``stackward exec`` process and a real agent process;
- the agent dials the core (``core_address``): a real agent process and the core's pool
  served in this process on a guarded listener, as ``stackward core`` serves it.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from aiohttp import web

from core.pool import PeripheryPool, PoolSettings, ServerEndpoint
from protocol import codec
from protocol.admission import AdmissionLimits
from protocol.exceptions import ChannelError
from protocol.guard import ConnectionGuard, GuardedRunner
from protocol.messages import Output, Request, Run, Stream
from protocol.transport import ChannelSettings
from tests.support.processes import KeyPair, Periphery, stackward_argv
from tests.support.relay import ACTIONS, Plan, Relay

pytestmark = pytest.mark.anyio

LINE = "output-long-enough-for-the-relay-to-pick-this-message-0123456789"
AGENT_SIDE_REASON = {
    "inject": r"message \d+ from the core does not open: forged, modified or injected",
    "modify": r"message \d+ from the core does not open: forged, modified or injected",
    "replay": r"message \d+ from the core does not open: it is a replay of message \d+",
    "reorder": r"message \d+ from the core does not open: it is message \d+ \(1 dropped or re",
    "drop": r"message \d+ from the core does not open: it is message \d+ \(1 dropped or re",
}


def forged_for(to_agent: bool, proof: Path) -> bytes:
    if to_agent:
        return codec.encode(Request(id=1, command=Run(argv=["touch", str(proof)])))
    return codec.encode(Output(id=1, seq=0, stream=Stream.STDOUT, data=b"FORGED " * 16))


def command(count: Path) -> list[str]:
    return ["sh", "-c", f"echo x >> {count}; echo {LINE}"]


def check_agent_side(
    periphery: Periphery, to_agent: bool, action: str, count: Path, proof: Path
) -> None:
    if to_agent:
        periphery.wait_for(AGENT_SIDE_REASON[action], timeout=10)
        periphery.wait_for("nothing in it was acted on", timeout=5)
        assert not proof.exists()
        ran = count.read_text().count("x") if count.exists() else 0
        # The genuine request may have run once before its replay closed the channel; the
        # tampered, replayed, held back or dropped one never did.
        assert ran == (ran if action == "replay" else 0) <= 1, (action, ran)
    else:
        expected = AGENT_SIDE_REASON[action].replace("from the core", "from the periphery")
        periphery.wait_for(r"closed by the core \(code 1002: " + expected[:60], timeout=10)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("to_agent", [True, False], ids=["to-agent", "to-core"])
async def test_core_dials_the_agent_through_a_tampering_relay(
    core_keys: KeyPair, periphery_factory, tmp_path: Path, to_agent: bool, action: str
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start(heartbeat_interval=0.5)
    port = int(periphery.url.rsplit(":", 1)[1].split("/")[0])
    count, proof = tmp_path / "count", tmp_path / "PROOF"
    plan = Plan(to_server=to_agent, action=action, forged=forged_for(to_agent, proof))
    async with Relay(port, plan) as relay:
        done = await anyio.run_process(
            stackward_argv(
                "exec",
                "--periphery",
                f"ws://127.0.0.1:{relay.port}/ws",
                "--key",
                str(core_keys.path),
                "--periphery-key",
                str(periphery.keys.pub_path),
                "--",
                *command(count),
            ),
            check=False,
        )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert plan.done.is_set()
    assert done.returncode == 255, (done.returncode, stdout, stderr)
    assert "FORGED" not in stdout
    if to_agent:
        assert "connection lost: closed by the periphery (code 1002: message" in stderr, stderr
    else:
        # The core's own log (exec logs errors to stderr) says which message and why.
        core_reason = AGENT_SIDE_REASON[action].replace("from the core", "from the periphery")
        assert re.search(core_reason, stderr), stderr
        assert "nothing in it was acted on" in stderr
    await anyio.to_thread.run_sync(check_agent_side, periphery, to_agent, action, count, proof)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("to_agent", [True, False], ids=["to-agent", "to-core"])
async def test_the_agent_dials_the_core_through_a_tampering_relay(
    core_keys: KeyPair,
    periphery_factory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    to_agent: bool,
    action: str,
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    count, proof = tmp_path / "count", tmp_path / "PROOF"
    plan = Plan(to_server=not to_agent, action=action, forged=forged_for(to_agent, proof))
    settings = PoolSettings(channel=ChannelSettings(heartbeat_interval=0.5))
    async with PeripheryPool(core_keys.key, settings) as pool:
        app = web.Application()
        app.router.add_get("/ws/periphery", pool.handle_dial_in)
        guard = ConnectionGuard(AdmissionLimits(), {"/ws/periphery"})
        runner = GuardedRunner(app, guard, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        core_port = runner.addresses[0][1]
        try:
            async with Relay(core_port, plan) as relay:
                periphery = periphery_factory.make(
                    listen="",
                    core_address=f"ws://127.0.0.1:{relay.port}",
                    server_name="nas",
                    heartbeat_interval=0.5,
                    reconnect_initial_delay=5.0,
                )
                pool.set_servers([ServerEndpoint("nas", periphery.keys.public)])
                await anyio.to_thread.run_sync(periphery.start_and_wait)
                channel = await pool.channel("nas", 10)
                with anyio.fail_after(10), pytest.raises(ChannelError) as failed:
                    result, output = await channel.request(Run(argv=command(count)))
                    print(result, output, file=sys.stderr)
                await channel.wait_closed()
        finally:
            await runner.cleanup()
    assert plan.done.is_set()
    if to_agent:
        assert "closed by the periphery (code 1002: message" in str(failed.value)
    else:
        core_reason = AGENT_SIDE_REASON[action].replace("from the core", "from the periphery")
        assert re.search(core_reason, str(failed.value)), failed.value
        assert any(
            re.search(core_reason, r.getMessage())
            and "nothing in it was acted on" in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
    await anyio.to_thread.run_sync(check_agent_side, periphery, to_agent, action, count, proof)
