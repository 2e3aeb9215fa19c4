"""A git-backed, self-referencing sync: the resource file lives in the repository it deploys
from; a push that touches one stack's directory redeploys that stack only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.deploys.test_core_deploys import Core, core, resource_file, stack_files
from tests.support.homelab import Repo

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

__all__ = ["core"]


def self_sync() -> str:
    return (
        '\n[[resource_sync]]\nname = "lab"\n[resource_sync.config]\nlinked_repo = "lab"\n'
        'resource_path = ["resources.toml"]\n'
    )


TWO = [
    {"name": "one", "tier": "infrastructure", "mode": "compose"},
    {"name": "two", "tier": "infrastructure", "mode": "compose"},
]


async def start_lab(
    core: Core, prefix: str, tmp_path: Path, stacks: list[dict[str, str]], sync_text: str = ""
) -> tuple[Repo, str, str, str]:
    """A repository holding the stacks and a resource file that names its own sync ``lab``;
    the core applies it from a local copy and the first deploys end healthy.
    Returns the repo, the periphery's key line, the resource file and its commit."""
    repo = Repo(tmp_path / "repo")
    key = core.periphery.keys.public.openssh_line()
    text = resource_file(prefix, repo, key, stacks) + (sync_text or self_sync())
    commit = repo.commit({**stack_files(stacks), "resources.toml": text})
    # The core starts from a local file naming the sync; the sync takes over from there.
    core.resources.write_text(text)
    applied = await core.sync()
    assert (await core.wait_run(applied["run"]))["status"] == "succeeded"
    return repo, key, text, commit


async def test_a_push_redeploys_only_the_stack_it_touches(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    p = docker_env.prefix
    stacks = TWO
    repo, key, text, first = await start_lab(core, p, tmp_path, stacks)

    status, plan = await core.call("POST", "/api/syncs/lab/plan")
    assert status == 201, plan
    assert plan["commit"] == first
    # Everything is already there: the sync applies nothing new and deploys nothing.
    assert plan["counts"]["create"] == 0 and plan["deploys"] == []
    status, applied = await core.call("POST", "/api/syncs/lab/apply", {"plan_id": plan["id"]})
    assert status == 200 and applied["run"] is None

    second = repo.commit(
        {"stacks/two/compose.yaml": stack_files(stacks)["stacks/two/compose.yaml"] + "# touched\n"}
    )
    status, plan = await core.call("POST", "/api/syncs/lab/plan")
    assert plan["commit"] == second
    assert [d["stack"] for d in plan["deploys"]] == [f"{p}-two"]
    assert plan["deploys"][0]["reasons"] == ["files changed: stacks/two/compose.yaml"]
    status, applied = await core.call("POST", "/api/syncs/lab/apply", {"plan_id": plan["id"]})
    run = await core.wait_run(applied["run"])
    assert run["status"] == "succeeded"
    assert [(d["stack"], d["commit"]) for d in run["deploys"]] == [(f"{p}-two", second)]

    # A change to the sync's own config takes effect on the next run, not in this one.
    moved = text.replace('resource_path = ["resources.toml"]', 'resource_path = ["moved.toml"]')
    repo.commit({"resources.toml": moved, "moved.toml": moved})
    status, plan = await core.call("POST", "/api/syncs/lab/plan")
    assert status == 201, plan
    assert any(c["kind"] == "resource_sync" for c in plan["changes"])


async def test_a_stack_deleted_by_a_deleting_sync_is_taken_down(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import anyio

    from tests.support.waiting import eventually

    p = docker_env.prefix
    stacks = [
        {"name": "keep", "tier": "infrastructure", "mode": "compose"},
        {"name": "gone", "tier": "infrastructure", "mode": "compose"},
    ]
    deleting = self_sync().replace(
        'resource_path = ["resources.toml"]\n',
        'resource_path = ["resources.toml"]\ndelete = true\n',
    )
    repo, key, _, _ = await start_lab(core, p, tmp_path, stacks, deleting)
    status, plan = await core.call("POST", "/api/syncs/lab/plan")
    await core.call("POST", "/api/syncs/lab/apply", {"plan_id": plan["id"]})

    repo.commit({"resources.toml": resource_file(p, repo, key, stacks[:1]) + deleting})
    status, plan = await core.call("POST", "/api/syncs/lab/plan")
    assert [(c["kind"], c["name"], c["action"]) for c in plan["changes"]] == [
        ("stack", f"{p}-gone", "delete")
    ]
    status, applied = await core.call("POST", "/api/syncs/lab/apply", {"plan_id": plan["id"]})
    assert applied["removed"] == [f"{p}-gone"]

    def running(project: str) -> bool:
        return bool(
            docker_env.docker(
                "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
            )
        )

    await eventually(lambda: not running(f"{p}-gone"), within=60, interval=0.25)
    assert running(f"{p}-keep")
    await anyio.lowlevel.checkpoint()


async def test_a_webhook_push_redeploys_the_touched_stack_only(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import hmac
    import json
    import time

    import aiohttp

    from tests.integration.deploys.test_core_deploys import WEBHOOK_SECRET

    p = docker_env.prefix
    stacks = TWO
    repo, _, _, _ = await start_lab(core, p, tmp_path, stacks)
    status, plan = await core.call("POST", "/api/syncs/lab/plan")
    await core.call("POST", "/api/syncs/lab/apply", {"plan_id": plan["id"]})

    touched = "stacks/two/compose.yaml"
    head = repo.commit({touched: stack_files(stacks)[touched] + "# touched by a push\n"})
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": head,
            "commits": [{"added": [], "removed": [], "modified": [touched]}],
        }
    ).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()

    async def post(data: bytes, **headers: str) -> tuple[int, float]:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.post(
                f"{core.url}/listener/github/sync/lab/sync",
                data=data,
                headers={"Content-Type": "application/json", **headers},
            ) as response:
                await response.read()
                return response.status, time.monotonic() - started

    assert (await post(body, **{"X-GitHub-Event": "push"}))[0] == 401  # unsigned
    wrong = "sha256=" + "0" * 64
    assert (await post(body, **{"X-Hub-Signature-256": wrong, "X-GitHub-Event": "push"}))[0] == 401
    assert (await post(b"x" * (1024 * 1024 + 10), **{"X-GitHub-Event": "push"}))[0] == 413
    ping = b'{"zen": "hi"}'
    ping_sig = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), ping, hashlib.sha256).hexdigest()
    assert (await post(ping, **{"X-Hub-Signature-256": ping_sig, "X-GitHub-Event": "ping"}))[
        0
    ] == 200

    headers = {
        "X-Hub-Signature-256": signature,
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "delivery-1",
    }
    status, took = await post(body, **headers)
    assert status == 202 and took < 0.5, (status, took)  # answered at once, worked after
    assert (await post(body, **headers))[0] == 200  # the same delivery again: not acted on

    last = await core.wait_deployed(f"{p}-two", head)
    assert last[f"{p}-one"]["commit"] != head  # untouched: not redeployed

    async with aiohttp.ClientSession() as session:  # no token: Prometheus scrapes it plain
        async with session.get(f"{core.url}/metrics") as response:
            assert response.status == 200
            metrics = (await response.text()).splitlines()
    assert 'stackward_webhooks_total{verdict="unauthorized"} 2' in metrics
    assert 'stackward_webhooks_total{verdict="too_large"} 1' in metrics
    assert "stackward_peripheries_connected 1" in metrics
    healthy = next(m for m in metrics if m.startswith('stackward_deploys_total{result="healthy"}'))
    assert int(healthy.split()[-1]) >= 3

    # On the event stream (replayed from the store): the ping, the push, the duplicate, what
    # the push changed (with the fetch timed on its own), and nothing for the bad requests.
    from tests.support.events import watch

    async with watch(core.url, core.token, "since=0&kind=webhook,change") as w:
        await w.wait(lambda e: e["kind"] == "change.detected" and e["data"]["commit"] == head)
        hooks = [e["data"] for e in w.of("webhook.accepted")]
        assert [h["outcome"] for h in hooks] == ["ping", "sync", "duplicate"]
        assert hooks[1]["delivery"] == "delivery-1" and hooks[1]["commit"] == head
        change = w.of("change.detected", "sync:lab")[-1]["data"]
        assert change["source"] == "webhook" and change["fetch_ms"] > 0


@pytest.mark.parametrize("core", [{"poll_interval": 0.5}], indirect=True)
async def test_polling_picks_up_a_push_with_no_webhook(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]

    p = docker_env.prefix
    stacks = TWO
    repo, _, _, _ = await start_lab(core, p, tmp_path, stacks)

    touched = "stacks/one/compose.yaml"
    head = repo.commit({touched: stack_files(stacks)[touched] + "# polled\n"})
    last = await core.wait_deployed(f"{p}-one", head)
    assert last[f"{p}-two"]["commit"] != head


@pytest.mark.parametrize("core", [{"poll_interval": 0.5}], indirect=True)
async def test_polling_redeploys_a_stack_of_a_local_sync_when_its_repo_moves(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The stacks come from the local file, their compose files from a repo: polling the repo
    redeploys the touched stack (and only it), and moves a [[repo]] clone to the new head."""

    p = docker_env.prefix
    stacks = TWO
    repo = Repo(tmp_path / "repo")
    repo.commit(stack_files(stacks))
    clone = tmp_path / "clone"
    text = resource_file(p, repo, core.periphery.keys.public.openssh_line(), stacks)
    text = text.replace(
        '[[repo]]\nname = "lab"\n[repo.config]\n',
        f'[[repo]]\nname = "lab"\n[repo.config]\nserver = "manager"\npath = "{clone}"\n',
    )
    core.resources.write_text(text)
    applied = await core.sync()
    assert (await core.wait_run(applied["run"]))["status"] == "succeeded"

    touched = "stacks/two/compose.yaml"
    head = repo.commit({touched: stack_files(stacks)[touched] + "# polled\n"})
    last = await core.wait_deployed(f"{p}-two", head)
    assert last[f"{p}-one"]["commit"] != head  # untouched
    assert (clone / touched).read_text().endswith("# polled\n")  # the repo's clone moved too
