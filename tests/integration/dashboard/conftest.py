"""A real core, agent and engine, and Debian's chromium driven by Playwright, shared by the
dashboard's browser tests of one module (one browser, one lab: the suite stays fast).

- ``lab`` (module): a ``stackward core`` process (its own port kept across restarts, an
  operator and a viewer token, ``reconcile = "manual"``), a ``stackward periphery`` process
  that dials it, a git repository of small Compose stacks, all applied once;
- ``browser`` (module): chromium, headless, launched from Debian's package (no download);
- ``page`` / ``phone``: a fresh browser context (its own cookies) at 1280 or 360 px wide; at
  the end of the test the page must have had no script error and no CSP violation.

Screenshots go to ``$STACKWARD_SCREENSHOTS`` (``docs`` for the README's) or a temp directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.engine.fixtures import DockerTestEnv, docker_engine
from tests.integration.deploys.test_core_deploys import resource_file, stack_files
from tests.support.homelab import Repo
from tests.support.processes import CoreProcess, Periphery, make_key

__all__ = ["docker_engine"]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Output in colour, slowly enough that a person (and the test) sees it arrive line by line.
COLOURED = (
    "for i in 1 2 3 4 5 6; do printf '\\033[32mstep %s of 6\\033[0m:\\033[1mbold\\033[0m\\n' $i;"
    " sleep 0.5; done"
)
STACKS: list[dict[str, Any]] = [
    {"name": "web", "tier": "application", "mode": "compose", "pre": COLOURED},
    {"name": "cache", "tier": "platform", "mode": "compose"},
    {"name": "broken", "tier": "application", "mode": "compose",
     "pre": "echo about to fail; sleep 1; exit 3"},
]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Lab:
    core: CoreProcess
    agent: Periphery
    repo: Repo
    env: DockerTestEnv
    viewer: str
    stacks: list[dict[str, Any]] = field(default_factory=lambda: [dict(s) for s in STACKS])

    @property
    def url(self) -> str:
        return self.core.url

    def name(self, short: str) -> str:
        return self.env.name(short)

    def api(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {token or self.core.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def write(self) -> None:
        self.repo.commit(stack_files(self.stacks))
        self.core.resources.write_text(
            resource_file(
                self.env.prefix, self.repo, self.agent.keys.public.openssh_line(), self.stacks
            )
        )

    def sync(self) -> dict[str, Any]:
        status, plan = self.api("POST", "/api/syncs/local/plan")
        assert status == 201, plan
        status, applied = self.api("POST", "/api/syncs/local/apply", {"plan_id": plan["id"]})
        assert status == 200, applied
        return dict(applied)

    def wait_run(self, run: int, within: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status, body = self.api("GET", f"/api/runs/{run}")
            if status == 200 and body["status"] != "running":
                return dict(body)
            time.sleep(0.25)
        raise AssertionError(f"run {run} still running after {within}s")

    def record(self, short: str) -> dict[str, Any]:
        _, body = self.api("GET", "/api/stacks")
        mine = {s["name"]: s for s in body["stacks"]}[self.name(short)]
        return dict(mine.get("recorded") or {})


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: Any
) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("dashboard")
    env = DockerTestEnv(docker_engine, f"swtest{secrets.token_hex(3)}")
    keys = make_key(tmp / "core.key")
    viewer = "viewer-" + secrets.token_hex(12)
    core = CoreProcess(
        tmp / "core",
        keys,
        "operator-" + secrets.token_hex(12),
        reconcile="manual",
        viewer_tokens=[viewer],
        drift_grace=600,
    )
    core.start_and_wait()
    agent = Periphery(
        tmp / "agent",
        keys,
        listen="",
        core_address=f"ws://127.0.0.1:{core.port}",
        server_name="manager",
        reconnect_initial_delay=0.1,
        reconnect_max_delay=0.5,
    )
    try:
        agent.start_and_wait()
        lab = Lab(core, agent, Repo(tmp / "repo"), env, viewer)
        lab.write()
        applied = lab.sync()
        run = lab.wait_run(applied["run"])
        by_stack = {d["stack"]: d["status"] for d in run["deploys"]}
        assert by_stack[lab.name("web")] == "healthy", run
        assert by_stack[lab.name("broken")] == "failed", run
        yield lab
    finally:
        agent.stop()
        core.stop()
        env.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """A page and what went wrong on it: script errors, CSP violations."""

    page: Any
    problems: list[str] = field(default_factory=list)


def _watch(page: Any) -> Watched:
    watched = Watched(page)

    def console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            watched.problems.append(f"CSP: {text}")

    page.on("console", console)
    page.on("pageerror", lambda error: watched.problems.append(f"script error: {error}"))
    page.set_default_timeout(20_000)
    return watched


def _page(browser: Any, width: int, height: int) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    watched = _watch(page)
    try:
        yield page
    finally:
        context.close()
    assert watched.problems == []


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield from _page(browser, 1280, 900)


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    yield from _page(browser, 360, 740)


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("STACKWARD_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
