"""Deploy benchmark: the example homelab's ten health-checked stacks in three tiers, three ways,
in one run, on the local engine:

- **stackward**: a real core and periphery (processes), the sync applied, timed from the apply to
  the end of the run (every stack healthy);
- **shell loop**: stack by stack in tier order, each waited on until healthy before the next;
- **floor**: tier by tier with the docker CLI alone, all stacks of a tier at once, waiting until
  the whole tier is healthy: the floor for any health-gated, tier-ordered deployer here.

Health is polled every 0.25 s in the two baselines, as stackward's gates do. The example's two
``after`` edges inside tiers are dropped for all three ways, since the floor deploys a tier at
once: the order is the tiers alone. Each way deploys
its own copies of the stacks (names prefixed), created from nothing. Targets: stackward ≤ 1.15×
the floor and ≤ 0.6× the shell loop. Run: ``python bench/deploy.py`` (needs the engine of
``tests/engine/setup.sh``).
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import anyio  # noqa: E402

from core.cli.demo_cmd import (  # noqa: E402
    _healthz,
    _Process,
    git_repository,
    write_local_setup,
)
from core.client import CoreClient  # noqa: E402

EXAMPLE = REPO / "examples" / "homelab"
POLL = 0.25
COMPOSE = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]


@dataclass(frozen=True)
class Stack:
    name: str
    tier: str
    swarm: bool
    directory: str
    file: str


def load_stacks() -> tuple[list[str], list[Stack]]:
    data = tomllib.loads((EXAMPLE / "stackward.toml").read_text())
    stacks = [
        Stack(
            s["name"],
            s["tier"],
            bool(s["config"].get("swarm")),
            s["config"]["run_directory"],
            s["config"]["file_paths"][0],
        )
        for s in data["stack"]
    ]
    return data["tiers"], stacks


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


def start_deploy(stack: Stack, name: str) -> subprocess.Popen[str]:
    workdir = EXAMPLE / stack.directory
    if stack.swarm:
        argv = ["docker", "stack", "deploy", "--resolve-image", "never", "-c", stack.file, name]
    else:
        argv = [*COMPOSE, "-p", name, "-f", stack.file, "up", "-d", "--remove-orphans"]
    return subprocess.Popen(
        argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def healthy(stack: Stack, name: str) -> bool:
    if stack.swarm:
        out = sh(
            "docker",
            "service",
            "ls",
            "--filter",
            f"label=com.docker.stack.namespace={name}",
            "--format",
            "{{.Replicas}}",
        ).stdout.split()
        return bool(out) and all(r.split("/")[0] == r.split("/")[1] for r in out)
    out = sh(
        "docker",
        "ps",
        "--filter",
        f"label=com.docker.compose.project={name}",
        "--format",
        "{{.Names}} {{.Status}}",
    ).stdout.splitlines()
    serving = [line for line in out if "_init_" not in line and "-init-" not in line]
    return bool(serving) and all("(healthy)" in line for line in serving)


def wait_healthy(pairs: list[tuple[Stack, str]], time_limit: float = 300) -> None:
    deadline = time.monotonic() + time_limit
    left = list(pairs)
    while left:
        left = [(s, n) for s, n in left if not healthy(s, n)]
        if left:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not healthy: {', '.join(n for _, n in left)}")
            time.sleep(POLL)


def deployed(proc: subprocess.Popen[str], name: str) -> None:
    _, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"deploying {name} failed: {err.strip()}")


def run_floor(tiers: list[str], stacks: list[Stack], prefix: str) -> float:
    started = time.monotonic()
    for tier in tiers:
        members = [(s, f"{prefix}-{s.name}") for s in stacks if s.tier == tier]
        procs = [(start_deploy(s, n), n) for s, n in members]
        for proc, name in procs:
            deployed(proc, name)
        wait_healthy(members)
    return time.monotonic() - started


def run_shell_loop(tiers: list[str], stacks: list[Stack], prefix: str) -> float:
    started = time.monotonic()
    for tier in tiers:
        for stack in (s for s in stacks if s.tier == tier):
            name = f"{prefix}-{stack.name}"
            deployed(start_deploy(stack, name), name)
            wait_healthy([(stack, name)])
    return time.monotonic() - started


def run_stackward(stacks: list[Stack], prefix: str, work: Path) -> float:
    source, bare = work / "homelab", work / "homelab.git"
    shutil.copytree(EXAMPLE, source)
    resources = (source / "stackward.toml").read_text()
    # The same work as the baselines: tiers only (no `after`), no pre-deploy checks, no clone.
    resources = re.sub(r"(?m)^after = .*\n", "", resources)
    resources = re.sub(r"(?m)^pre_deploy = .*\n", "", resources)
    resources = "\n[[".join(
        re.sub(r"(?m)^(server|path) = .*\n", "", block) if block.startswith("repo]]") else block
        for block in resources.split("\n[[")
    )
    for stack in stacks:  # the stacks' names (and the `after` lists naming them), prefixed
        resources = re.sub(rf'"{re.escape(stack.name)}"', f'"{prefix}-{stack.name}"', resources)
    (source / "stackward.toml").write_text(resources)
    git_repository(source, bare, "bench")
    setup = write_local_setup(
        work,
        source / "stackward.toml",
        bare,
        token="bench-token-" + "x" * 16,
        data_dir=work / "data",
        reconnect=(0.1, 0.5),
    )
    url, token = setup.url, setup.token
    me = [sys.executable, "-m", "core.cli"]
    core = _Process("core", [*me, "core", "--config", str(setup.core_config)], work / "core.log")
    agent = None
    try:
        deadline = time.monotonic() + 30
        while not _ok(lambda: _healthz(url)):
            if time.monotonic() > deadline:
                raise RuntimeError("core did not start:\n" + core.tail())
            time.sleep(0.05)
        agent = _Process(
            "periphery",
            [*me, "periphery", "--config", str(setup.periphery_config)],
            work / "periphery.log",
        )
        return float(anyio.run(_timed_sync, url, token, source, agent))
    finally:
        if agent is not None:
            agent.stop()
        core.stop()


def _ok(check) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(check())
    except OSError:
        return False


async def _timed_sync(url: str, token: str, source: Path, agent: _Process) -> float:
    async with CoreClient(url, token) as client:
        # A core runs all along with its peripheries connected: apply the servers first (the
        # file without its stacks), let the periphery connect, then time the real sync.
        full = (source / "stackward.toml").read_text()
        (source / "stackward.toml").write_text(full[: full.index("[[stack]]")])
        await client.sync("local")
        await wait_connected(client, agent)
        (source / "stackward.toml").write_text(full)
        plan = await client.plan("local")
        started = time.time()
        applied = await client.apply("local", plan["id"])
        finished = 0.0
        for run_id in sorted(set(applied["runs"].values())):
            run = await client.wait_run(run_id)
            if run["status"] != "succeeded":
                raise RuntimeError(f"stackward run failed: {run}")
            finished = max(finished, float(run["finished_at"]))
        return finished - started


async def wait_connected(client: CoreClient, agent: _Process) -> None:
    with anyio.fail_after(30):
        while not any(s["connected"] for s in (await client.servers())["servers"]):
            if not agent.alive():
                raise RuntimeError("the periphery exited:\n" + agent.tail())
            await anyio.sleep(0.05)


def cleanup(stacks: list[Stack], prefixes: list[str]) -> None:
    remove(stacks, prefixes)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # stack rm returns before its networks are gone
        remove(stacks, prefixes)  # compose networks go once their containers are gone
        names = sh("docker", "network", "ls", "--format", "{{.Name}}", check=False).stdout.split()
        names += sh("docker", "service", "ls", "--format", "{{.Name}}", check=False).stdout.split()
        if not any(n.startswith(tuple(f"{p}-" for p in prefixes)) for n in names):
            return
        time.sleep(0.5)


def remove(stacks: list[Stack], prefixes: list[str]) -> None:
    for prefix in prefixes:
        for stack in stacks:
            name = f"{prefix}-{stack.name}"
            if stack.swarm:
                sh("docker", "stack", "rm", name, check=False)
            else:
                ids = sh(
                    "docker",
                    "ps",
                    "-aq",
                    "--filter",
                    f"label=com.docker.compose.project={name}",
                    check=False,
                ).stdout.split()
                if ids:
                    sh("docker", "rm", "-f", *ids, check=False)
                sh("docker", "network", "rm", f"{name}_default", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description="deploy benchmark")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the three (default 1)")
    rounds = parser.parse_args().rounds
    tiers, stacks = load_stacks()
    run_tag = secrets.token_hex(2)  # fresh names each run: nothing waits for old removals
    prefixes: list[str] = []
    print(
        f"# {len(stacks)} health-checked stacks in {len(tiers)} tiers "
        f"({sum(s.swarm for s in stacks)} Swarm, {sum(not s.swarm for s in stacks)} Compose); "
        f"median of {rounds} rounds, order rotated, each from an engine without them"
    )
    times: dict[str, list[float]] = {"floor": [], "stackward": [], "shell": []}
    ways = [
        ("floor", "bfl", lambda p, tmp: run_floor(tiers, stacks, p)),
        ("stackward", "bsw", lambda p, tmp: run_stackward(stacks, p, tmp)),
        ("shell", "bsh", lambda p, tmp: run_shell_loop(tiers, stacks, p)),
    ]
    try:
        for r in range(rounds):
            for name, short, way in ways[r % 3 :] + ways[: r % 3]:
                prefix = f"{short}{run_tag}{r}"
                prefixes.append(prefix)
                with tempfile.TemporaryDirectory() as tmp:
                    times[name].append(way(prefix, Path(tmp)))
                cleanup(stacks, [prefix])
            print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()))
    finally:
        remove(stacks, prefixes)
    floor, ours, shell = (statistics.median(times[k]) for k in ("floor", "stackward", "shell"))
    print(f"floor (docker CLI, tier at once)  {floor:6.1f} s")
    print(f"stackward                         {ours:6.1f} s")
    print(f"shell loop (stack by stack)       {shell:6.1f} s")
    r_floor, r_shell = ours / floor, ours / shell
    ok = r_floor <= 1.15 and r_shell <= 0.6
    verdict_floor = "ok" if r_floor <= 1.15 else "MISSED"
    verdict_shell = "ok" if r_shell <= 0.6 else "MISSED"
    print(f"stackward / floor      {r_floor:.2f}  (target ≤ 1.15) {verdict_floor}")
    print(f"stackward / shell loop {r_shell:.2f}  (target ≤ 0.60) {verdict_shell}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
