"""``stackward demo [--once]``: the example homelab, end to end, on the local Docker engine.

Makes a git repository of ``examples/homelab``, generates keys, starts a periphery and a core
(real processes, logs in the work directory), runs the sync, and shows the tiered deploy live,
then a summary. Without ``--once`` it keeps running and prints where the API is; with it, it
exits when the deploy ends: 0 only when every stack is healthy. The demo's stacks are removed on
exit unless ``--keep``.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from core.client import ClientError, CoreClient

IMAGE = "stackward-test/busybox:1"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="deploy the example homelab on the local Docker engine",
        description="Deploy the example homelab (examples/homelab) on the local Docker engine.",
    )
    p.add_argument("--once", action="store_true", help="exit when the deploy ends (0: all healthy)")
    p.add_argument("--keep", action="store_true", help="leave the demo's stacks running on exit")
    p.add_argument("--workdir", type=Path, default=None, help="where to keep keys, repo, logs")
    p.add_argument("--example", type=Path, default=None, help="the example repository to deploy")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(handler=run, default_log_level="WARNING")


def _fail(message: str, code: int = 2) -> int:
    print(f"stackward demo: {message}", file=sys.stderr)
    return code


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command; scripts/demo sets up Docker on Debian (as root)"
    info = _docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
    if info.returncode != 0:
        return "no Docker engine answers; scripts/demo starts one on Debian (as root)"
    if info.stdout.split()[:2] != ["active", "true"]:
        return "this engine is not a swarm manager: docker swarm init --advertise-addr 127.0.0.1"
    if _docker("image", "inspect", IMAGE).returncode != 0:
        return f"the image {IMAGE} is missing: bash tests/engine/setup.sh builds it"
    return None


def _example_dir(given: Path | None) -> Path | None:
    if given is not None:
        return given if (given / "stackward.toml").is_file() else None
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path.cwd()):
        candidate = base / "examples" / "homelab"
        if (candidate / "stackward.toml").is_file():
            return candidate
    return None


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=stackward demo", "-c", "user.email=demo@stackward.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml(values: dict[str, Any]) -> str:
    import json

    lines = []
    tables = {k: v for k, v in values.items() if isinstance(v, dict)}
    for key, value in values.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, table in tables.items():
        lines.append(f"\n[{key}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _stack_names(resource_file: Path) -> list[tuple[str, bool]]:
    import tomllib

    data = tomllib.loads(resource_file.read_text())
    out = []
    for stack in data.get("stack", []):
        config = stack.get("config", {})
        out.append((config.get("project_name") or stack["name"], bool(config.get("swarm"))))
    return out


def _remove_stacks(stacks: list[tuple[str, bool]]) -> None:
    for name, swarm in stacks:
        if swarm:
            _docker("stack", "rm", name)
        else:
            ids = _docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={name}")
            if ids.stdout.split():
                _docker("rm", "-f", *ids.stdout.split())
            _docker("network", "rm", f"{name}_default")


@dataclass(frozen=True)
class LocalSetup:
    url: str
    token: str
    core_config: Path
    periphery_config: Path


def git_repository(source: Path, bare: Path, message: str) -> str:
    """``source`` committed as a new repository on ``main``, cloned bare to ``bare``; the commit."""
    work = source.parent
    _git("init", "-q", "-b", "main", str(source), cwd=work)
    _git("add", "-A", cwd=source)
    _git("commit", "-q", "-m", message, cwd=source)
    _git("clone", "-q", "--bare", str(source), str(bare), cwd=work)
    return _git("rev-parse", "HEAD", cwd=source)


def write_local_setup(
    work: Path,
    resources: Path,
    bare: Path,
    *,
    token: str,
    data_dir: Path,
    extra_secrets: dict[str, str] | None = None,
    reconnect: tuple[float, float] = (0.2, 1.0),
) -> LocalSetup:
    """Keys and configs in ``work`` for a core on a free loopback port and the manager's
    periphery dialing it, deploying ``resources`` from the repository ``bare``."""
    from protocol.keys import PrivateKey

    core_key, agent_key = PrivateKey.generate("demo-core"), PrivateKey.generate("demo-manager")
    for name, key in (("core.key", core_key), ("manager.key", agent_key)):
        path = work / name
        path.write_bytes(key.openssh_pem())
        path.chmod(0o600)
        path.with_name(name + ".pub").write_text(key.public_key.openssh_line() + "\n")
    port = _free_port()
    core_config, periphery_config = work / "core.toml", work / "periphery.toml"
    core_config.write_text(
        _toml(
            {
                "listen": f"127.0.0.1:{port}",
                "data_dir": str(data_dir),
                "private_key": str(work / "core.key"),
                "api_tokens": [token],
                "resources": [str(resources)],
                "secrets": {
                    "HOMELAB_REPO": f"file://{bare}",
                    "MANAGER_PUBLIC_KEY": agent_key.public_key.openssh_line(),
                    **(extra_secrets or {}),
                },
            }
        )
    )
    periphery_config.write_text(
        _toml(
            {
                "listen": "",
                "private_key": str(work / "manager.key"),
                "core_public_keys": [str(work / "core.key.pub")],
                "root_directory": str(work / "agent"),
                "core_address": f"ws://127.0.0.1:{port}",
                "server_name": "manager",
                "reconnect_initial_delay": reconnect[0],
                "reconnect_max_delay": reconnect[1],
            }
        )
    )
    return LocalSetup(f"http://127.0.0.1:{port}", token, core_config, periphery_config)


class _Process:
    """A child ``stackward`` process logging to a file in the work directory."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._handle = log.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._handle.close()


def _wait(what: str, check: Any, process: _Process, time_limit: float = 30.0) -> None:
    deadline = time.monotonic() + time_limit
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"the {process.name} exited while {what}:\n{process.tail()}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"the {process.name} took longer than {time_limit:g}s {what}:\n{process.tail()}"
    )


def run(args: argparse.Namespace) -> int:
    from core.cli.common import colors as _colors

    problem = _engine_problem()
    if problem:
        return _fail(problem)
    example = _example_dir(args.example)
    if example is None:
        return _fail("cannot find examples/homelab (run from the repository, or --example DIR)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="stackward-demo-"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    c = _colors(args)
    say = print

    # The example as a git repository: a working copy (the core reads its resource file) and
    # the bare repository the stacks are checked out from.
    source, bare = work / "homelab", work / "homelab.git"
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(example, source)
    commit = git_repository(source, bare, "homelab")
    setup = write_local_setup(
        work,
        source / "stackward.toml",
        bare,
        token=secrets.token_urlsafe(24),
        data_dir=work / "core-data",
        extra_secrets={"HOMELAB_CLONE": str(work / "clone" / "homelab")},
    )
    url, token = setup.url, setup.token
    stacks = _stack_names(source / "stackward.toml")
    me = [sys.executable, "-m", "core.cli"]
    env_note = f"STACKWARD_URL={url} STACKWARD_TOKEN={token}"
    say(
        f"{c['bold']}stackward demo{c['reset']}: examples/homelab at {commit[:12]},"
        f" {len(stacks)} stacks; work directory {work}"
    )

    processes: list[_Process] = []
    code = 1
    try:
        core = _Process(
            "core", [*me, "core", "--config", str(setup.core_config)], work / "core.log"
        )
        processes.append(core)
        _wait("starting", lambda: _healthz(url), core)
        agent = _Process(
            "periphery",
            [*me, "periphery", "--config", str(setup.periphery_config)],
            work / "periphery.log",
        )
        processes.append(agent)
        say(f"core on {url}, periphery 'manager' dialing in; applying the sync…")

        code = anyio.run(_apply_and_follow, url, token, c)
        if args.once:
            return code
        say(f"\nThe core's API: {url}/api/ (bearer token {token})")
        say(f"  {env_note} stackward deploy caddy --follow")
        say(f"  logs: {work}/core.log, {work}/periphery.log; Ctrl-C stops the demo")
        while all(p.alive() for p in processes):
            time.sleep(0.5)
        return _fail("a demo process exited:\n" + "\n".join(p.tail() for p in processes), 1)
    except ClientError as exc:
        return _fail(str(exc), 1)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return code
    finally:
        for process in reversed(processes):
            process.stop()
        if not args.keep:
            _remove_stacks(stacks)


async def _apply_and_follow(url: str, token: str, c: dict[str, str]) -> int:
    """Plan and apply the local sync, follow its deploys; 0 when every stack is healthy."""
    from core.cli.follow import RunFollower

    say = print
    async with CoreClient(url, token) as client:
        plan = await client.plan("local")
        applied = await client.apply("local", plan["id"])
        n = plan["counts"]
        say(
            f"plan {plan['id']}: {n['create']} created, {n['update']} updated;"
            f" {len(plan['deploys'])} stacks to deploy, in this order:"
        )
        for wave in plan.get("deploy_waves", []):
            say(f"  {c['dim']}→{c['reset']} {', '.join(wave)}")
        if applied.get("deploy_error"):
            raise ClientError(f"deploys not started: {applied['deploy_error']}")
        follower = RunFollower(client, sys.stdout, c)
        done = await follower.follow_all(sorted(set(applied["runs"].values())), time_limit=900)
        follower.summary(done)
        return 0 if done["status"] == "succeeded" else 1


def _healthz(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
        return bool(response.status == 200)
