"""A user's Komodo file deploys the way Komodo deploys it: real core (in-process), real
periphery process, real git, real engine.

Each test cites the Komodo code it follows (moghtech/komodo, bin/periphery/src/...).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from core.config import load_config
from core.git import GitError, resolve_branch
from periphery.ops import dockercli
from protocol.messages import GitCredentials
from tests.support.core_server import CoreClient, start_core
from tests.support.homelab import IMAGE, Repo
from tests.support.processes import KeyPair, Periphery, toml_value, write_toml

pytestmark = [pytest.mark.docker, pytest.mark.anyio]


@dataclass
class Core(CoreClient):
    periphery: Periphery
    resources: Path

    @property
    def root(self) -> Path:
        return self.periphery.workdir / "root"

    def header(self) -> str:
        key = self.periphery.keys.public.openssh_line()
        return (
            '[[server]]\nname = "manager"\n[server.config]\npublic_key = '
            + toml_value(key)
            + '\n\n[[swarm]]\nname = "lab"\n[swarm.config]\nservers = ["manager"]\n'
        )

    async def deploy(self, stack: str, within: float = 90) -> dict[str, Any]:
        status, run = await self.call("POST", f"/api/stacks/{stack}/deploy")
        assert status == 202, run
        return await self.wait_run(run["id"], within=within)


async def started_core(
    tg: anyio.abc.TaskGroup,
    tmp_path: Path,
    core_keys: KeyPair,
    periphery_factory,  # type: ignore[no-untyped-def]
    extra: dict[str, Any],
) -> Core:
    token = secrets.token_hex(8)
    resources = tmp_path / "resources.toml"
    resources.write_text("")
    config_path = write_toml(
        tmp_path / "core.toml",
        {
            "listen": "127.0.0.1:0",
            "data_dir": str(tmp_path / "data"),
            "private_key": str(core_keys.path),
            "api_tokens": [token],
            "resources": [str(resources)],
            "poll_interval": 0,
        },
    )
    raw = extra.pop("raw", "")  # tables, after every top-level key
    with config_path.open("a") as fh:
        fh.write("".join(f"{k} = {toml_value(v)}\n" for k, v in extra.items()) + raw)
    config = load_config(config_path)
    port, _ = await start_core(tg, config)
    periphery = periphery_factory.make(
        "agent",
        listen="",
        core_address=f"ws://127.0.0.1:{port}",
        server_name="manager",
        reconnect_initial_delay=0.1,
        reconnect_max_delay=0.5,
    )
    await anyio.to_thread.run_sync(periphery.start_and_wait)
    return Core(f"http://127.0.0.1:{port}", token, periphery, resources)


@pytest.fixture
async def core(  # type: ignore[no-untyped-def]
    request: pytest.FixtureRequest, tmp_path: Path, core_keys: KeyPair, periphery_factory
) -> AsyncIterator[Core]:
    async with anyio.create_task_group() as tg:
        extra = dict(getattr(request, "param", {}))
        yield await started_core(tg, tmp_path, core_keys, periphery_factory, extra)
        tg.cancel_scope.cancel()


def web(probe: str = "/www/index.html", extra: str = "") -> str:
    """A service serving ./site (a relative bind mount) with a healthcheck that fetches the
    ``probe`` file through the server (not ``test -f``: an engine in a chroot, as
    shared/tools/fresh-debian runs it, execs health probes outside the container's files)."""
    url = "http://127.0.0.1:8080/" + probe.removeprefix("/www/")
    return f"""services:
  web:
    image: {IMAGE}
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    volumes: ["./site:/www:ro"]
{extra}    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "{url}"]
      interval: 250ms
      timeout: 2s
      retries: 20
"""


SWARM_WEB = f"""version: "3.8"
services:
  web:
    image: {IMAGE}
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    volumes: ["./site:/www:ro"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/index.html"]
      interval: 250ms
      timeout: 2s
      retries: 20
"""


def containers(docker_env, project: str) -> list[str]:  # type: ignore[no-untyped-def]
    return docker_env.docker(
        "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.compose.project={project}"
    ).split()


def service(docker_env, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return dict(docker_env.service_json(name))


def running_tasks(docker_env, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return docker_env.docker(
        "service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", name
    ).split()


async def test_an_untouched_stack_is_not_restarted_by_a_deploy_at_a_new_commit(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Komodo deploys from one clone at a fixed path (``stack/write.rs``,
    ``write_stack_inline_repo``: ``stack_dir/<name>``), so a relative bind mount's source
    keeps its path from commit to commit and an unchanged service keeps its container (Compose)
    and its task (Swarm). Here: the same, with a commit that touches only a third stack."""
    p = docker_env.prefix
    repo = Repo(tmp_path / "repo")
    repo.commit(
        {
            "stacks/web/compose.yaml": web(),
            "stacks/web/site/index.html": "web\n",
            "stacks/api/compose.yaml": SWARM_WEB,
            "stacks/api/site/index.html": "api\n",
            "stacks/other/compose.yaml": web(),
            "stacks/other/site/index.html": "v1\n",
        }
    )
    stacks = {"web": 'server = "manager"', "api": 'swarm = "lab"', "other": 'server = "manager"'}
    text = core.header() + f'\n[[repo]]\nname = "lab"\n[repo.config]\nurl = {toml_value(repo.url)}'
    for name, target in stacks.items():
        text += (
            f'\n[[stack]]\nname = "{p}-{name}"\ndeploy = true\n[stack.config]\n{target}\n'
            f'linked_repo = "lab"\nrun_directory = "stacks/{name}"\nauto_pull = false\n'
        )
    core.resources.write_text(text)
    applied = await core.sync()
    first = await core.wait_run(applied["run"], within=120)
    assert first["status"] == "succeeded", first

    [web_id] = containers(docker_env, f"{p}-web")
    [other_id] = containers(docker_env, f"{p}-other")
    api_before = service(docker_env, f"{p}-api_web")
    api_tasks = running_tasks(docker_env, f"{p}-api_web")
    mounts = json.loads(docker_env.docker("inspect", "--format", "{{json .Mounts}}", web_id))
    assert [m["Source"] for m in mounts] == [str(core.root / f"{p}-web" / "stacks/web/site")]

    second = repo.commit(
        {"stacks/other/compose.yaml": web(extra="    environment: {CHANGED: 'yes'}\n")}
    )
    for name in stacks:
        run = await core.deploy(f"{p}-{name}")
        assert run["status"] == "succeeded", run
        assert run["deploys"][0]["commit"] == second
    assert containers(docker_env, f"{p}-web") == [web_id]
    assert containers(docker_env, f"{p}-other") != [other_id]  # its definition changed
    api_after = service(docker_env, f"{p}-api_web")
    # docker stack deploy updates every service (its version moves), with the same spec: no
    # new task
    assert api_after["Spec"] == api_before["Spec"]
    assert running_tasks(docker_env, f"{p}-api_web") == api_tasks
    # the checkout moved in place: the old per-commit layout is gone
    assert not (core.root / f"{p}-web" / "commits").exists()


async def test_commands_env_file_and_fields_as_komodo_runs_them(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """``ComposeUp`` (``api/compose.rs``): the env file written raw to env_file_path in the run
    directory before pre_deploy (which runs there, joined with its path, lines joined with
    ``&&``); ``--env-file`` for the additional files then the written one; ``up -d`` with
    extra_args; post_deploy after the deploy; destroy_before_deploy takes the project down
    first. The values reach the containers as Compose reads Komodo's file."""
    p = docker_env.prefix
    repo = Repo(tmp_path / "repo")
    compose = web(
        extra="""    environment:
      FROM_VAR: ${FROM_VAR}
      QUOTED: ${QUOTED}
      COMMENTED: ${COMMENTED}
      COLON: ${COLON}
      SHARED: ${SHARED}
      OVERRIDDEN: ${OVERRIDDEN}
"""
    )
    first = repo.commit(
        {
            "stacks/app/compose.yaml": compose,
            "stacks/app/site/index.html": "app\n",
            "stacks/global.env": "SHARED=from-global\nOVERRIDDEN=global\n",
            "scripts/check.sh": 'test -f ../stacks/app/.env.production && echo "env file there"\n',
        }
    )
    environment = """
# a comment
// another comment
BASE=base
FROM_VAR=${BASE}-x
QUOTED="a b"
COMMENTED=kept # dropped
COLON: c:d
OVERRIDDEN=stack
DOLLARS=a$$b
"""
    text = (
        core.header()
        + f"""
[[stack]]
name = "{p}-app"
deploy = true
[stack.config]
server = "manager"
linked_repo = "lab"
run_directory = "stacks/app"
auto_pull = false
env_file_path = ".env.production"
additional_env_files = ["../global.env"]
extra_args = ["--scale web=2"]
environment = '''{environment}'''
pre_deploy = {{ path = "../../scripts", command = "sh check.sh\\n# skipped\\necho second line" }}
post_deploy = {{ command = "test -f .env.production && echo post ran in $(pwd)" }}
"""
    )
    text += f'\n[[repo]]\nname = "lab"\n[repo.config]\nurl = {toml_value(repo.url)}\n'
    core.resources.write_text(text)
    applied = await core.sync()
    run = await core.wait_run(applied["run"], within=120)
    [deploy] = run["deploys"]
    assert deploy["status"] == "healthy", deploy
    assert [s["step"] for s in deploy["steps"]] == [
        "checkout",
        "pre_deploy",
        "deploy",
        "post_deploy",
        "health",
    ]
    status, log = await core.call("GET", f"/api/deploys/{deploy['id']}/log")
    lines = "".join(line["text"] for line in log["lines"])
    assert "env file there" in lines and "second line" in lines
    run_dir = core.root / f"{p}-app" / "stacks/app"
    assert f"post ran in {run_dir}" in lines
    if (await dockercli.probe()).compose == ("docker-compose",):
        # v1 reads one --env-file: the two joined, in Komodo's order, into the agent's file
        joined = core.root / ".stackward" / "env" / f"{p}-app.env"
        assert f"--env-file {joined} up -d --scale web=2" in lines
        assert joined.read_text().startswith("SHARED=from-global\nOVERRIDDEN=global\nBASE=")
    else:
        assert "--env-file ../global.env --env-file .env.production up -d --scale web=2" in lines
    assert (run_dir / ".env.production").read_text() == (
        'BASE=base\nFROM_VAR=${BASE}-x\nQUOTED="a b"\nCOMMENTED=kept\nCOLON=c:d\n'
        "OVERRIDDEN=stack\nDOLLARS=a$$b\n"
    )
    ids = containers(docker_env, f"{p}-app")
    assert len(ids) == 2  # extra_args reached compose up
    env = json.loads(docker_env.docker("inspect", "--format", "{{json .Config.Env}}", ids[0]))
    assert {"FROM_VAR=base-x", "QUOTED=a b", "COMMENTED=kept", "COLON=c:d"} <= set(env)
    assert {"SHARED=from-global", "OVERRIDDEN=stack"} <= set(env)  # the written file is last

    # destroy_before_deploy: the same commit again, and still new containers
    core.resources.write_text(
        text.replace("auto_pull = false", "auto_pull = false\ndestroy_before_deploy = true")
    )
    applied = await core.sync()  # the changed config redeploys it
    again = await core.wait_run(applied["run"], within=120)
    assert again["status"] == "succeeded", again
    assert again["deploys"][0]["commit"] == first
    assert set(containers(docker_env, f"{p}-app")).isdisjoint(ids)


async def test_a_failing_post_deploy_fails_the_stack(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """``ComposeUp``: post_deploy runs once ``up`` succeeded; its log failing fails Komodo's
    update (``update.finalize``: all logs must succeed). The services are up all the same."""
    p = docker_env.prefix
    repo = Repo(tmp_path / "repo")
    repo.commit({"compose.yaml": web(), "site/index.html": "x\n"})
    core.resources.write_text(
        core.header()
        + f"""
[[repo]]
name = "lab"
[repo.config]
url = {toml_value(repo.url)}

[[stack]]
name = "{p}-reload"
deploy = true
[stack.config]
server = "manager"
linked_repo = "lab"
auto_pull = false
post_deploy.command = "echo reloading; exit 4"
"""
    )
    applied = await core.sync()
    run = await core.wait_run(applied["run"], within=90)
    [deploy] = run["deploys"]
    assert deploy["status"] == "failed"
    assert "post_deploy" in deploy["reason"] and "exited with code 4" in deploy["reason"]
    assert [s["step"] for s in deploy["steps"]] == ["checkout", "deploy", "post_deploy"]
    assert containers(docker_env, f"{p}-reload")


async def test_swarm_env_file_feeds_the_stack_deploy(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """``DeploySwarmStack`` (``api/swarm/stack.rs``): the additional env files then the written
    one are sourced by the shell with ``set -a``, and ``docker stack deploy`` interpolates the
    stack file with what that shell exported."""
    p = docker_env.prefix
    repo = Repo(tmp_path / "repo")
    stack_file = SWARM_WEB.replace(
        "    volumes:",
        "    environment:\n      FROM_VAR: ${FROM_VAR}\n      QUOTED: ${QUOTED}\n"
        "      SHARED: ${SHARED}\n    volumes:",
    )
    repo.commit(
        {
            "stacks/api/compose.yaml": stack_file,
            "stacks/api/site/index.html": "api\n",
            "stacks/shared.env": "SHARED=from-shared\n",
        }
    )
    environment = 'BASE=base\nFROM_VAR=${BASE}-x\nQUOTED="a b"\n'
    core.resources.write_text(
        core.header()
        + f"""
[[repo]]
name = "lab"
[repo.config]
url = {toml_value(repo.url)}

[[stack]]
name = "{p}-api"
deploy = true
[stack.config]
swarm = "lab"
linked_repo = "lab"
run_directory = "stacks/api"
additional_env_files = ["../shared.env"]
environment = '''{environment}'''
"""
    )
    applied = await core.sync()
    run = await core.wait_run(applied["run"], within=120)
    assert run["status"] == "succeeded", run
    spec = service(docker_env, f"{p}-api_web")["Spec"]
    env = set(spec["TaskTemplate"]["ContainerSpec"]["Env"])
    assert {"FROM_VAR=base-x", "QUOTED=a b", "SHARED=from-shared"} <= env


async def test_files_on_host_and_file_contents_stacks_deploy(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """``write_stack``: a files_on_host stack runs where its run_directory says (absolute:
    as given); a file_contents stack's compose file is written into ``stack_dir/<name>``."""
    p = docker_env.prefix
    host = tmp_path / "host" / "dns"
    (host / "site").mkdir(parents=True)
    (host / "site" / "index.html").write_text("dns\n")
    (host / "compose.yaml").write_text(web())
    (host / ".env").write_text("MINE=1\n")  # the author's own env file, passed on
    contents = f"""services:
  web:
    image: {IMAGE}
    init: true
    command: ["sh", "-c", "echo [[GREETING]] > /tmp/g; exec sleep 600"]
    stop_grace_period: 1s
"""
    core.resources.write_text(
        core.header()
        + f"""
[[variable]]
name = "GREETING"
value = "hello-from-variable"

[[stack]]
name = "{p}-dns"
deploy = true
[stack.config]
server = "manager"
files_on_host = true
run_directory = {toml_value(str(host))}
auto_pull = false
pre_deploy = {{ path = {toml_value(str(host))}, command = "echo pre in $(pwd)" }}

[[stack]]
name = "{p}-ui"
deploy = true
[stack.config]
server = "manager"
auto_pull = false
file_contents = '''{contents}'''
"""
    )
    applied = await core.sync()
    run = await core.wait_run(applied["run"], within=120)
    assert run["status"] == "succeeded", run
    by_stack = {d["stack"]: d for d in run["deploys"]}
    assert [s["step"] for s in by_stack[f"{p}-ui"]["steps"]] == ["write", "deploy", "health"]
    status, log = await core.call("GET", f"/api/deploys/{by_stack[f'{p}-dns']['id']}/log")
    text = "".join(line["text"] for line in log["lines"])
    assert f"pre in {host}" in text and "--env-file .env" in text
    assert containers(docker_env, f"{p}-dns")
    written = core.root / f"{p}-ui" / "compose.yaml"
    assert "hello-from-variable" in written.read_text()
    [ui] = containers(docker_env, f"{p}-ui")
    assert docker_env.read_file(ui, "/tmp/g") == "hello-from-variable"


EXTERNAL = f"swext{secrets.token_hex(4)}"  # removed by the test itself (not docker_env's prefix)


@pytest.mark.parametrize(
    "core",
    [
        {
            "secrets": {"EXT_VALUE": "ext-s3cret"},
            "external_secrets": {EXTERNAL: "EXT_VALUE"},
            "external_networks": [EXTERNAL],
        }
    ],
    indirect=True,
)
async def test_external_secrets_and_networks_are_made_under_their_plain_names(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The reference homelab makes fixed-name swarm secrets and shared overlay networks by
    hand; from core.toml (``[external_secrets]``, ``external_networks``) stackward makes the
    ones a stack declares external, before the stack's deploy."""
    p = docker_env.prefix
    repo = Repo(tmp_path / "repo")
    stack_file = f"""version: "3.8"
services:
  web:
    image: {IMAGE}
    init: true
    command: ["sh", "-c", "exec sleep 600"]
    stop_grace_period: 1s
    networks: [edge]
    secrets: [token]
    healthcheck:
      test: ["CMD", "grep", "-q", "ext-s3cret", "/run/secrets/token"]
      interval: 250ms
      retries: 20
networks:
  edge: {{external: true, name: {EXTERNAL}}}
secrets:
  token: {{external: true, name: {EXTERNAL}}}
"""
    repo.commit({"compose.yaml": stack_file})
    core.resources.write_text(
        core.header()
        + f"""
[[repo]]
name = "lab"
[repo.config]
url = {toml_value(repo.url)}

[[stack]]
name = "{p}-ext"
deploy = true
[stack.config]
swarm = "lab"
linked_repo = "lab"
"""
    )
    try:
        applied = await core.sync()
        run = await core.wait_run(applied["run"], within=120)
        assert run["status"] == "succeeded", run
        assert [s["step"] for s in run["deploys"][0]["steps"]][:2] == ["secrets", "checkout"]
        network = json.loads(docker_env.docker("network", "inspect", EXTERNAL))[0]
        assert (network["Driver"], network["Attachable"], network["Scope"]) == (
            "overlay",
            True,
            "swarm",
        )
        secret = json.loads(docker_env.docker("secret", "inspect", EXTERNAL))[0]
        assert secret["Spec"]["Labels"] == {"stackward.external": EXTERNAL}
        # a second deploy finds them there and makes nothing
        again = await core.deploy(f"{p}-ext")
        assert again["status"] == "succeeded", again
        status, log = await core.call("GET", f"/api/deploys/{again['deploys'][0]['id']}/log")
        text = "".join(line["text"] for line in log["lines"])
        assert "exists already" in text and "network create" not in text
        assert "ext-s3cret" not in text
    finally:
        await anyio.to_thread.run_sync(docker_env.cleanup)
        with anyio.move_on_after(30):
            while EXTERNAL in docker_env.docker("network", "ls", "--format", "{{.Name}}"):
                docker_env.docker("network", "rm", EXTERNAL, check=False)
                await anyio.sleep(0.5)
        docker_env.docker("secret", "rm", EXTERNAL, check=False)


async def test_a_stack_waits_for_the_stack_that_makes_its_network(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """No ``after`` written: the user of an external network waits for the stack that makes it
    (core.deploy.networks), where Komodo would run both at once and the user would fail."""
    p = docker_env.prefix
    repo = Repo(tmp_path / "repo")
    service = f"""  web:
    image: {IMAGE}
    init: true
    command: ["sh", "-c", "exec sleep 600"]
    stop_grace_period: 1s
    networks: [shared]
"""
    repo.commit(
        {
            "maker/compose.yaml": f'version: "3.8"\nservices:\n{service}networks:\n'
            f"  shared: {{name: {p}-shared, driver: overlay, attachable: true}}\n",
            "user/compose.yaml": f'version: "3.8"\nservices:\n{service}networks:\n'
            f"  shared: {{external: true, name: {p}-shared}}\n",
        }
    )
    text = core.header() + f'\n[[repo]]\nname = "lab"\n[repo.config]\nurl = {toml_value(repo.url)}'
    for name, pre in (("user", ""), ("maker", 'pre_deploy.command = "sleep 2"\n')):
        text += (
            f'\n\n[[stack]]\nname = "{p}-{name}"\ndeploy = true\n[stack.config]\n'
            f'swarm = "lab"\nlinked_repo = "lab"\nrun_directory = "{name}"\n{pre}'
        )
    core.resources.write_text(text)
    applied = await core.sync()
    run = await core.wait_run(applied["run"], within=120)
    by_stack = {d["stack"]: d for d in run["deploys"]}
    assert run["status"] == "succeeded", run
    assert by_stack[f"{p}-user"]["started_at"] >= by_stack[f"{p}-maker"]["finished_at"]


async def test_a_private_repository_with_a_git_account(
    tmp_path: Path, core_keys: KeyPair, periphery_factory, docker_env
) -> None:  # type: ignore[no-untyped-def]
    """``git_account``: Komodo looks the account's token up in its config (``[[git_provider]]``)
    and clones ``https://token:TOKEN@PROVIDER/REPO`` (``RepoExecutionArgs::remote_url``).
    stackward hands the token to the core's and the agent's git by a credential helper: the
    repository is read, and the token is in no argv, no URL, no log line and no output."""
    import threading

    p = docker_env.prefix
    token = f"tok-{secrets.token_hex(12)}"
    repo = Repo(tmp_path / "src")
    commit = repo.commit({"compose.yaml": web(), "site/index.html": "private\n"})
    served = tmp_path / "served"
    (served / "me").mkdir(parents=True)
    repo.git("clone", "-q", "--bare", str(repo.bare), str(served / "me" / "lab.git"))
    seen_in_argv: list[str] = []
    stop = threading.Event()

    def watch_argv() -> None:  # every process's command line, while the deploy runs
        while not stop.is_set():
            for proc in Path("/proc").iterdir():
                try:
                    line = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if token.encode() in line:
                    seen_in_argv.append(line.decode(errors="replace"))
            stop.wait(0.005)

    from tests.support.git_http import GitHttpServer

    with GitHttpServer(served, "token", token) as server:
        provider = server.url.removeprefix("http://")
        raw = (
            f'\n[[git_provider]]\ndomain = "{provider}"\nhttps = false\n'
            f'accounts = [{{ username = "me", token = "{token}" }}]\n'
        )
        watcher = threading.Thread(target=watch_argv, daemon=True)
        watcher.start()
        async with anyio.create_task_group() as tg:
            core = await started_core(tg, tmp_path, core_keys, periphery_factory, {"raw": raw})
            stack = f"""
[[stack]]
name = "{p}-private"
deploy = true
[stack.config]
server = "manager"
git_provider = "{provider}"
git_https = false
git_account = "me"
repo = "me/lab.git"
auto_pull = false
"""
            core.resources.write_text(core.header() + stack)
            applied = await core.sync()
            run = await core.wait_run(applied["run"], within=90)
            [deploy] = run["deploys"]
            assert deploy["status"] == "healthy", deploy
            assert deploy["commit"] == commit
            status, log = await core.call("GET", f"/api/deploys/{deploy['id']}/log")
            text = json.dumps(log)

            # a wrong token: git's reason, and no token in it
            with pytest.raises(GitError) as refused:
                await resolve_branch(
                    f"{server.url}/me/lab.git",
                    "main",
                    credentials=GitCredentials(username="token", token="wrong-" + token),
                )
            assert token not in str(refused.value)
            tg.cancel_scope.cancel()
        stop.set()
        watcher.join()
    assert (
        token not in text
        and "private" in (core.root / f"{p}-private" / "site/index.html").read_text()
    )
    assert seen_in_argv == []
    # every request that read the repository carried the token in its header, none in a URL
    assert any(a for a in server.authorizations) and all(token not in r for r in server.requests)
    for config in (core.root / ".mirrors").glob("*/config"):
        assert token not in config.read_text()
    for path in (tmp_path / "data").rglob("config"):
        assert token not in path.read_text(errors="replace")
    assert all(token not in line for line in core.periphery.lines)
    assert (
        not (Path.home() / ".git-credentials").exists()
        or token not in (Path.home() / ".git-credentials").read_text()
    )


async def test_registry_login_before_the_deploy(
    tmp_path: Path, core_keys: KeyPair, periphery_factory, docker_env
) -> None:  # type: ignore[no-untyped-def]
    """``maybe_login_registry`` / ``docker_login`` (``stack/mod.rs``, ``docker/mod.rs``): with
    registry_provider and registry_account, ``docker login --username ACCOUNT
    --password-stdin -- DOMAIN`` before anything runs, the token from the core's
    ``[[image_registry]]`` on stdin. A stand-in ``docker`` records the login (no registry
    here) and hands every other command to the real CLI."""
    import shutil
    import stat

    p = docker_env.prefix
    token = f"reg-{secrets.token_hex(12)}"
    real = shutil.which("docker")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "login"
    fake = bin_dir / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = login ]; then echo "$@" > {record}.argv; cat > {record}.stdin;'
        " echo Login Succeeded; exit 0; fi\n"
        f'exec {real} "$@"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    repo = Repo(tmp_path / "repo")
    repo.commit({"compose.yaml": web(), "site/index.html": "x\n"})
    raw = (
        '\n[[image_registry]]\ndomain = "registry.example.invalid"\n'
        f'accounts = [{{ username = "me", token = "{token}" }}]\n'
    )
    async with anyio.create_task_group() as tg:
        original = periphery_factory.make

        def make(*args: Any, **kwargs: Any) -> Periphery:
            made = original(*args, **kwargs)
            made.env["PATH"] = f"{bin_dir}:{made.env['PATH']}"
            return made

        periphery_factory.make = make
        core = await started_core(tg, tmp_path, core_keys, periphery_factory, {"raw": raw})
        core.resources.write_text(
            core.header()
            + f"""
[[repo]]
name = "lab"
[repo.config]
url = {toml_value(repo.url)}

[[stack]]
name = "{p}-private-image"
deploy = true
[stack.config]
server = "manager"
linked_repo = "lab"
auto_pull = false
registry_provider = "registry.example.invalid"
registry_account = "me"
"""
        )
        applied = await core.sync()
        run = await core.wait_run(applied["run"], within=90)
        [deploy] = run["deploys"]
        status, log = await core.call("GET", f"/api/deploys/{deploy['id']}/log")
        tg.cancel_scope.cancel()
    assert deploy["status"] == "healthy", deploy
    argv = (tmp_path / "login.argv").read_text()
    assert argv == "login --username me --password-stdin -- registry.example.invalid\n"
    assert (tmp_path / "login.stdin").read_text() == token
    text = json.dumps(log)
    assert "docker login --username me --password-stdin" in text and token not in text


@pytest.mark.parametrize("core", [{"pre_deploy_timeout": 1.5}], indirect=True)
async def test_the_pre_deploy_timeout_is_core_toml_s(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Komodo runs pre_deploy without a deadline; stackward gives it core.toml's
    ``pre_deploy_timeout`` (default 300 s), then kills the command's process group."""
    p = docker_env.prefix
    repo = Repo(tmp_path / "repo")
    repo.commit({"compose.yaml": web(), "site/index.html": "x\n"})
    core.resources.write_text(
        core.header()
        + f"""
[[repo]]
name = "lab"
[repo.config]
url = {toml_value(repo.url)}

[[stack]]
name = "{p}-slow"
deploy = true
[stack.config]
server = "manager"
linked_repo = "lab"
auto_pull = false
pre_deploy.command = "echo building; sleep 30"
"""
    )
    started = anyio.current_time()
    applied = await core.sync()
    run = await core.wait_run(applied["run"], within=60)
    [deploy] = run["deploys"]
    assert deploy["status"] == "failed"
    assert "pre_deploy timed out" in deploy["reason"] and "1.5s" in deploy["reason"]
    assert anyio.current_time() - started < 20
    assert not containers(docker_env, f"{p}-slow")
