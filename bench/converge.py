"""Convergence benchmark: how long until every stack is converged, against the docker CLI.

Three figures, each with its baseline from the same run:

1. **From nothing**: a homelab of N one-service Swarm stacks (busybox httpd, health-checked) in
   3 tiers, applied to a real core and periphery; time from the apply until every stack is
   converged (``GET /api/reconcile``). Baseline (the floor): ``docker stack deploy`` of each tier's
   stacks at once, 16 at a time, then waiting for every service to be healthy, tier after tier.
   Target: <= 1.15x the floor.
2. **After a kill**: the same, from nothing, but the core is killed (SIGKILL) once the first tier
   is healthy, and started again; time from the restart until every stack is converged. Baseline:
   the floor of the stacks that were left (the later tiers). Target: <= that floor + 5 s.
3. **A no-op reconcile** of 1,000 applied stacks, all deployed and nothing changed: the core's
   CPU time for a reconcile pass (every stack's verdict) and for a plan that finds nothing to do.
   Target: <= 1 s of CPU.

    .venv/bin/python bench/converge.py              # N = 100
    .venv/bin/python bench/converge.py --stacks 45  # a smaller homelab
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import anyio  # noqa: E402

from core.client import CoreClient  # noqa: E402
from tests.support.homelab import IMAGE, Repo  # noqa: E402
from tests.support.processes import CoreProcess, Periphery, make_key  # noqa: E402

TIERS = ("infrastructure", "platform", "application")
PARALLEL = 16  # the floor's docker stack deploys at once
STACK = """version: "3.8"
services:
  web:
    image: {image}
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 2s
      timeout: 2s
      retries: 10
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


def tier_of(i: int, n: int) -> str:
    return TIERS[min(2, i * 3 // n)]


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-s{i:03d}" for i in range(n)]


def write_stack_file(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "compose.yaml").write_text(STACK.format(image=IMAGE))


# ------------------------------------------------------------------------------------ floor


def healthy_services(prefix: str) -> set[str]:
    out = sh(
        "docker", "service", "ls", "--format", "{{.Name}} {{.Replicas}}", check=False
    ).stdout.split("\n")
    ready = set()
    for line in out:
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith(prefix):
            done, want = parts[1].split("/")[:2]
            if done == want:
                ready.add(parts[0].removesuffix("_web"))
    return ready


def wait_healthy(prefix: str, wanted: set[str], time_limit: float = 900) -> None:
    deadline = time.monotonic() + time_limit
    while not wanted <= healthy_services(prefix):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not healthy: {sorted(wanted - healthy_services(prefix))}")
        time.sleep(0.25)


def floor(stacks: dict[str, str], directory: Path, prefix: str) -> float:
    """``docker stack deploy`` of each tier at once (16 at a time), then health, tier by tier."""
    started = time.monotonic()
    for tier in TIERS:
        members = [n for n, t in stacks.items() if t == tier]
        if not members:
            continue
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(
                pool.map(
                    lambda n: sh(
                        "docker",
                        "stack",
                        "deploy",
                        "--resolve-image",
                        "never",
                        "-c",
                        str(directory / "compose.yaml"),
                        n,
                    ),
                    members,
                )
            )
        wait_healthy(prefix, set(members))
    return time.monotonic() - started


def remove(prefix: str, only: set[str] | None = None) -> None:
    """Remove the stacks named ``prefix``... (of those, ``only`` these) and wait until their
    services and networks are gone."""

    def mine(name: str) -> bool:
        return name.startswith(prefix) and (only is None or name.split("_")[0] in only)

    stacks = sh("docker", "stack", "ls", "--format", "{{.Name}}", check=False).stdout.split()
    gone = [s for s in stacks if mine(s)]
    for i in range(0, len(gone), 50):
        sh("docker", "stack", "rm", *gone[i : i + 50], check=False)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # services, their containers and networks all gone
        left = sh("docker", "service", "ls", "--format", "{{.Name}}", check=False).stdout.split()
        nets = sh("docker", "network", "ls", "--format", "{{.Name}}", check=False).stdout.split()
        boxes = sh("docker", "ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
        if not any(mine(x) for x in left + nets + boxes):
            return
        if not any(mine(x) for x in left + boxes):  # `stack rm` gave up on a network in use
            sh("docker", "network", "rm", *[x for x in nets if mine(x)], check=False)
        time.sleep(0.5)


# -------------------------------------------------------------------------------- stackward


def resource_file(prefix: str, n: int, repo: Repo, agent_line: str) -> str:
    out = [
        'tiers = ["infrastructure", "platform", "application"]',
        f'[[server]]\nname = "manager"\n[server.config]\npublic_key = "{agent_line}"',
        '[[swarm]]\nname = "lab"\n[swarm.config]\nservers = ["manager"]',
        f'[[repo]]\nname = "lab"\n[repo.config]\nurl = "{repo.url}"',
    ]
    for i, name in enumerate(names(prefix, n)):
        out.append(
            f'[[stack]]\nname = "{name}"\ndeploy = true\ntier = "{tier_of(i, n)}"\n'
            '[stack.config]\nswarm = "lab"\nlinked_repo = "lab"\nrun_directory = "stack"\n'
            "[stack.config.health]\ntimeout = 600"
        )
    return "\n\n".join(out) + "\n"


class Lab:
    def __init__(self, work: Path, prefix: str, n: int) -> None:
        self.work = work
        self.prefix = prefix
        self.n = n
        work.mkdir(parents=True, exist_ok=True)
        keys = make_key(work / "core.key")
        self.core = CoreProcess(
            work / "core", keys, secrets.token_hex(12), reconcile_interval=3600
        )
        self.agent = Periphery(
            work / "agent",
            keys,
            listen="",
            core_address=f"ws://127.0.0.1:{self.core.port}",
            server_name="manager",
            reconnect_initial_delay=0.05,
            reconnect_max_delay=0.3,
        )
        self.repo = Repo(work / "repo")
        self.repo.commit({"stack/compose.yaml": STACK.format(image=IMAGE)})
        self.core.resources.write_text(
            resource_file(prefix, n, self.repo, self.agent.keys.public.openssh_line())
        )

    def client(self) -> CoreClient:
        return CoreClient(self.core.url, self.core.token, timeout=60)

    def stop(self) -> None:
        self.agent.stop()
        self.core.stop()


async def converged_count(client: CoreClient) -> int:
    view = await client.reconcile()
    return int(view["summary"]["converged"])


async def wait_converged(client: CoreClient, n: int, time_limit: float = 1200) -> None:
    with anyio.fail_after(time_limit):
        while await converged_count(client) < n:  # noqa: ASYNC110 (polling the API)
            await anyio.sleep(0.25)


async def from_nothing(lab: Lab) -> float:
    lab.core.start_and_wait()
    lab.agent.start_and_wait()
    async with lab.client() as client:
        started = time.monotonic()
        await client.sync()
        await wait_converged(client, lab.n)
        return time.monotonic() - started


async def after_a_kill(lab: Lab) -> tuple[float, list[str]]:
    """Kill the core once the first tier is healthy; the time from the restart to converged,
    and the stacks that were not converged when it was killed."""
    lab.core.start_and_wait()
    lab.agent.start_and_wait()
    first = [n for i, n in enumerate(names(lab.prefix, lab.n)) if tier_of(i, lab.n) == TIERS[0]]
    async with lab.client() as client:
        await client.sync()
        with anyio.fail_after(900):
            while True:
                view = await client.reconcile()
                if all(view["stacks"][n]["converged"] for n in first):
                    break
                await anyio.sleep(0.1)
    assert lab.core.proc is not None
    os.kill(lab.core.proc.pid, signal.SIGKILL)
    lab.core.proc.wait(10)
    restarted = time.monotonic()
    lab.core.start_and_wait()
    async with lab.client() as client:
        view = await client.reconcile()
        left = [n for n, v in view["stacks"].items() if not v["converged"]]
        await wait_converged(client, lab.n)
        return time.monotonic() - restarted, left


# ------------------------------------------------------------------------------ a no-op pass


def noop_reconcile(n: int) -> tuple[float, float, int]:
    """CPU seconds of a reconcile pass and of a plan over ``n`` applied stacks, every one
    deployed healthy at its spec; and how many the pass found to do (0)."""
    from core.config import CoreConfig
    from core.events.bus import EventBus
    from core.reconcile.convergence import due
    from core.store import Store
    from core.wiring import build

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = Repo(work / "repo")
        repo.commit({"stack/compose.yaml": STACK.format(image=IMAGE)})
        resources = work / "resources.toml"
        resources.write_text(resource_file("noop", n, repo, "ssh-ed25519 AAAA"))
        config = CoreConfig(
            data_dir=str(work / "data"), api_tokens=["x" * 32], resources=[str(resources)]
        )
        store = Store.open(config.data_dir)
        core = build(config, store, EventBus(None), None)
        plan = core.syncs.plan("local")
        core.syncs.apply("local", plan.id)
        # Every stack deployed healthy at what is desired, as a real deploy records it.
        state = core.desired
        _, rs, hashes = state._state()
        run_id, ids = core.records.start_run("bench", [(s.name, "manager") for s in rs.stacks()])
        for stack in rs.stacks():
            spec, form = state._spec(rs, stack, hashes)
            core.records.deploy_finished(
                ids[stack.name], "healthy", "", "c0ffee" * 6 + "c0ff", spec=spec, spec_form=form
            )
        core.records.finish_run(run_id, "succeeded")
        state._cache = None  # nothing cached from the setup
        t0 = time.process_time()
        verdicts = state.verdicts()
        to_do = [v for v in verdicts.values() if due(v, time.time())]
        pass_cpu = time.process_time() - t0
        t0 = time.process_time()
        again = core.syncs.plan("local")
        plan_cpu = time.process_time() - t0
        assert not again.deploys and not again.changes, again.deploys[:3]
        store.close()
        return pass_cpu, plan_cpu, len(to_do)


# ------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description="convergence benchmark")
    parser.add_argument("--stacks", type=int, default=100)
    parser.add_argument("--noop", type=int, default=1000, help="stacks of the no-op pass")
    parser.add_argument(
        "--only", choices=("noop", "nothing", "kill"), help="one part (default: all three)"
    )
    args = parser.parse_args()
    parts = {args.only} if args.only else {"noop", "nothing", "kill"}
    n = args.stacks
    tag = secrets.token_hex(2)
    ok = True
    print(f"# {n} one-service Swarm stacks in 3 tiers, busybox httpd, health-checked")
    remove("cv")  # what an interrupted earlier run left would load the engine during this one

    if "noop" in parts:
        ok &= noop_part(args.noop)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_stack_file(work / "floor")
        stacks = {name: tier_of(i, n) for i, name in enumerate(names(f"cvf{tag}", n))}
        if "nothing" in parts:
            ok &= nothing_part(work, tag, n, stacks)
        if "kill" in parts:
            ok &= kill_part(work, tag, n, stacks)
    return 0 if ok else 1


def noop_part(noop: int) -> bool:
    pass_cpu, plan_cpu, to_do = noop_reconcile(noop)
    ok = max(pass_cpu, plan_cpu) <= 1.0 and to_do == 0
    print(
        f"no-op reconcile of {noop} stacks: {pass_cpu:.2f} s CPU (pass), {plan_cpu:.2f} s"
        f" CPU (plan); {to_do} to deploy (target ≤ 1 s) {'ok' if ok else 'MISSED'}"
    )
    return ok


def nothing_part(work: Path, tag: str, n: int, stacks: dict[str, str]) -> bool:
    prefix = f"cvf{tag}"
    try:
        base = floor(stacks, work / "floor", prefix)
    finally:
        remove(prefix)
    print(f"floor (docker CLI, each tier at once, {PARALLEL} at a time)  {base:7.1f} s")

    prefix = f"cvs{tag}"
    lab = Lab(work / "ours", prefix, n)
    try:
        ours = anyio.run(from_nothing, lab)
    finally:
        lab.stop()
        remove(prefix)
    ratio = ours / base
    print(f"stackward from nothing                           {ours:7.1f} s")
    print(f"  ratio {ratio:.2f} (target ≤ 1.15) {'ok' if ratio <= 1.15 else 'MISSED'}")
    return ratio <= 1.15


def kill_part(work: Path, tag: str, n: int, stacks: dict[str, str]) -> bool:
    """The floor of the stacks left after the kill is measured as the restart found the
    engine: the first tier still running (its health checks load the engine, which slows every
    later tier as much for the docker CLI as for us), the rest removed and gone."""
    prefix, rest_prefix = f"cvk{tag}", f"cvr{tag}"
    lab = Lab(work / "kill", prefix, n)
    try:
        try:
            after, left = anyio.run(after_a_kill, lab)
        finally:
            lab.stop()
        remove(prefix, only=set(left))
        rest = {
            name.replace(prefix, rest_prefix, 1): stacks[name.replace(prefix, f"cvf{tag}", 1)]
            for name in left
        }
        rest_floor = floor(rest, work / "floor", rest_prefix) if rest else 0.0
    finally:
        remove(rest_prefix)
        remove(prefix)
    ok = after <= rest_floor + 5
    print(
        f"after kill -9 mid-run: {len(left)} stacks left, converged in {after:.1f} s;"
        f" their floor {rest_floor:.1f} s (target ≤ floor + 5 s) {'ok' if ok else 'MISSED'}"
    )
    return ok


if __name__ == "__main__":
    sys.exit(main())
