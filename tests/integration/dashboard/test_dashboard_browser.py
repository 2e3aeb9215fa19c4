"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) on a real
core, agent and engine: sign-in, live deploy output, a failure in red with its reason, apply
from the page, a core restart mid-page, a viewer, 360 px and the keyboard.

Waits are locators (the page's strict CSP refuses ``wait_for_function`` with a string)."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.integration.dashboard.conftest import Lab

pytestmark = [pytest.mark.docker]


def sign_in(page: Any, lab: Lab, token: str | None = None) -> None:
    page.goto(lab.url + "/")
    page.locator("#token").fill(token or lab.core.token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#nav").wait_for()
    try:
        page.locator("#conn.live").wait_for()
    except Exception as exc:
        raise AssertionError(f"not live: {page.locator('main').inner_text()[:300]!r}, "
                             f"{page.locator('#conn').inner_text()!r}") from exc


def card(page: Any, lab: Lab, short: str) -> Any:
    return page.locator(f'article.card[data-stack="{lab.name(short)}"]')


def test_sign_in_exchanges_the_token_for_an_httponly_strict_cookie(
    page: Any, lab: Lab, shots: Path
) -> None:
    page.goto(lab.url + "/")
    page.locator("#token").fill("not-a-token-of-this-core")
    page.get_by_role("button", name="Sign in").click()
    page.locator("#login-error").filter(has_text="not one of the core's tokens").wait_for()
    assert page.context.cookies() == []

    sign_in(page, lab)
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("stackward_session", True, "Strict")
    ]
    token = lab.core.token
    assert token not in page.url
    assert token not in json.dumps(page.evaluate("() => ({...localStorage, ...sessionStorage})"))
    assert token not in page.content()
    # The page is not readable by script: document.cookie does not show the HttpOnly cookie.
    assert "stackward_session" not in page.evaluate("() => document.cookie")

    # Overview: the agent (connected, its version), the stacks by tier with their state.
    agent_row = page.locator("table tr", has_text="manager")
    agent_row.locator(".badge.s-connected").wait_for()
    assert "stackward" in agent_row.inner_text()
    card(page, lab, "web").locator(".head .badge", has_text="converged").wait_for()
    card(page, lab, "broken").locator(".head .badge", has_text="failed").wait_for()
    tiers = page.locator("section.tier h3").all_inner_texts()
    assert [t.split()[0] for t in tiers] == ["platform", "application"]
    page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

    # Sign out: the session is gone on the core too (the old cookie no longer works).
    old = page.context.cookies()[0]["value"]
    page.get_by_role("button", name="Sign out").click()
    page.locator("#token").wait_for()
    answer = page.request.get(
        lab.url + "/api/stacks", headers={"Cookie": f"stackward_session={old}"}
    )
    assert answer.status == 401


def test_a_deploy_started_from_the_page_shows_its_output_live(
    page: Any, lab: Lab, shots: Path
) -> None:
    sign_in(page, lab)
    page.goto(lab.url + f"/#/stack/{lab.name('web')}")
    page.evaluate("() => { window.__notReloaded = true; }")
    page.locator("h1 .badge", has_text="converged").wait_for()
    before = lab.record("web")["id"]

    page.locator("h1 button.deploy").click()
    page.locator(".deploy-head .badge.s-running").wait_for()  # the new deploy, shown at once
    log = page.locator(".log")
    log.locator(".line", has_text="step 1 of 6").wait_for()
    # The first line is on the page while the deploy still runs (it prints for 3 s more).
    assert log.locator(".line", has_text="step 6 of 6").count() == 0
    assert lab.record("web")["status"] in ("running", "pending")
    page.locator(".steps li.s-running", has_text="pre_deploy").wait_for()
    # ANSI colours rendered as classes, not shown as escape codes.
    assert log.locator(".line span.fg-2", has_text="step 1 of 6").count() == 1
    assert log.locator(".line span.a-b", has_text="bold").count() >= 1, log.inner_html()[:3000]
    assert "\x1b" not in log.inner_text()

    log.locator(".line", has_text="step 6 of 6").wait_for()
    page.locator("h1 .badge", has_text="converged").wait_for(timeout=60_000)
    page.locator(".steps li.s-ok", has_text="health").wait_for()
    steps = page.locator(".steps li").all_inner_texts()
    assert [s.split()[0] for s in steps] == ["checkout", "pre_deploy", "deploy", "health"]
    assert all(re.search(r"\d+(\.\d+)? (ms|s)", s) for s in steps), steps  # step timings
    assert page.evaluate("() => window.__notReloaded") is True

    after = lab.record("web")
    assert after["id"] > before and after["status"] == "healthy"
    texts = log.locator(".line").all_inner_texts()
    numbered = [t for t in texts if t.startswith("step ")]
    assert numbered == [f"step {i} of 6:bold" for i in range(1, 7)]  # in order, once each
    page.locator(".history li button", has_text=f"#{after['id']}").wait_for()
    page.screenshot(path=str(shots / "dashboard-stack.png"), full_page=True)


def test_a_failing_pre_deploy_shows_red_with_its_reason(page: Any, lab: Lab) -> None:
    sign_in(page, lab)
    before = lab.record("broken")["id"]
    broken = card(page, lab, "broken")
    broken.get_by_role("button", name=f"Deploy {lab.name('broken')}").click()
    page.locator("#toast", has_text="deploy in run").wait_for()
    name = lab.name("broken")
    page.locator(f'article.card.st-deploying[data-stack="{name}"]').wait_for()
    deadline = time.monotonic() + 60
    while (record := lab.record("broken"))["id"] == before or record["status"] != "failed":
        assert time.monotonic() < deadline, record
        time.sleep(0.2)
    assert record["failed_step"] == "pre_deploy"
    # Red, with this deploy's reason, without a reload.
    broken = page.locator(f'article.card.st-failed[data-stack="{name}"]', has_text=record["reason"])
    broken.wait_for()
    colour = broken.locator(".head .badge").evaluate("(el) => getComputedStyle(el).color")
    assert colour == "rgb(248, 81, 73)"  # the page's red

    broken.get_by_role("link", name=lab.name("broken")).click()
    banner = page.locator(".banner.bad[role=alert]")
    banner.wait_for()
    text = banner.inner_text()
    assert f"Deploy #{record['id']} failed at pre_deploy" in text
    assert record["reason"] in text, (record["reason"], text)
    assert "about to fail" in text  # the failure's last output lines
    # The banner is the first thing under the title.
    first = page.locator("main > *").nth(1)
    assert "banner" in (first.locator("> *").first.get_attribute("class") or "")


def test_apply_from_the_page_deploys_the_changed_stack_and_a_changed_plan_is_shown_again(
    page: Any, lab: Lab, shots: Path
) -> None:
    web = lab.stacks[0]
    web["pre"] = "echo deployed by the dashboard"
    lab.write()
    sign_in(page, lab)
    page.goto(lab.url + "/#/sync/local")
    change = page.locator(f'.change[data-resource="stack:{lab.name("web")}"]')
    change.wait_for()
    diff = change.locator("tr", has_text="config.pre_deploy")
    assert "deployed by the dashboard" in diff.locator("td.new").inner_text()
    assert "step %s of 6" in diff.locator("td.old").inner_text()
    page.screenshot(path=str(shots / "dashboard-sync.png"), full_page=True)
    apply = page.locator("button.apply")
    shown = apply.get_attribute("data-plan")

    # The files change again after the plan was shown: Apply is refused, the new plan shown.
    web["pre"] = "echo deployed by the dashboard, second thoughts"
    lab.write()
    before = lab.record("web")["id"]
    apply.click()
    refused = page.locator(".banner.warn[role=alert]", has_text="changed since it was shown")
    refused.wait_for()
    assert lab.record("web")["id"] == before  # nothing applied, nothing deployed
    change.locator("td.new", has_text="second thoughts").wait_for()
    again = page.locator("button.apply")
    assert again.get_attribute("data-plan") != shown

    again.click()
    done = page.locator(".banner.ok[role=status]", has_text="Applied plan")
    done.wait_for(timeout=60_000)
    line = done.locator("li", has_text=lab.name("web")).inner_text()
    run = int(re.search(r"deploys in run #(\d+)", line).group(1))  # type: ignore[union-attr]
    finished = {d["stack"]: d for d in lab.wait_run(run)["deploys"]}
    assert finished[lab.name("web")]["status"] == "healthy"
    _, log = lab.api("GET", f"/api/deploys/{finished[lab.name('web')]['id']}/log")
    assert "second thoughts" in "".join(line["text"] for line in log["lines"])


async def _event_ids(lab: Lab, after: int) -> list[int]:
    ids = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"{lab.url}/ws/events?since={after}",
            headers={"Authorization": f"Bearer {lab.core.token}"},
        ) as ws:
            with anyio.fail_after(20):
                async for msg in ws:
                    data = msg.json()
                    if data.get("control") == "live":
                        break
                    if "id" in data:
                        ids.append(int(data["id"]))
    return ids


def test_a_core_restart_mid_page_reconnects_and_catches_up_with_no_gap(
    page: Any, lab: Lab, shots: Path
) -> None:
    sign_in(page, lab)
    page.goto(lab.url + "/#/events")
    rows = page.locator("ol.events li")
    rows.last.wait_for()
    first = int(rows.first.get_attribute("data-id") or 0)

    lab.core.stop()
    page.locator("#conn.reconnecting").wait_for()
    lab.core.start_and_wait()
    # While the page waits to reconnect, the core publishes (started, resources, the agent).
    status, run = lab.api("POST", f"/api/stacks/{lab.name('cache')}/deploy")
    assert status == 202, run
    page.locator("#conn.live", has_text="reconnected").wait_for(timeout=30_000)
    lab.wait_run(run["id"])
    page.locator("ol.events li[data-kind='deploy.finished']", has_text="healthy").last.wait_for()
    time.sleep(0.5)

    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this thread
        expected = thread.submit(anyio.run, _event_ids, lab, first - 1).result()
    shown = [int(x) for x in rows.evaluate_all("(els) => els.map((e) => e.dataset.id)")]
    assert shown == sorted(shown)  # in order, no duplicate
    assert set(expected) <= set(shown), sorted(set(expected) - set(shown))  # no gap
    kinds = rows.evaluate_all("(els) => els.map((e) => e.dataset.kind)")
    assert "core.started" in kinds and "periphery.connected" in kinds
    page.screenshot(path=str(shots / "dashboard-events.png"), full_page=True)

    # The filters of the command line: kind and stack.
    page.locator("#f-kind").fill("deploy")
    page.locator("#f-stack").fill(lab.name("cache"))
    page.locator("#f-stack").press("Enter")
    # The filtered list replaces the whole one: wait for it, not for a row of the old list.
    page.wait_for_function(
        """() => {
            const rows = [...document.querySelectorAll("ol.events li")];
            return rows.some((e) => e.dataset.kind === "deploy.finished")
                && rows.every((e) => e.dataset.kind.startsWith("deploy"));
        }"""
    )
    assert urllib.parse.unquote(page.url).endswith(f"kind=deploy&stack={lab.name('cache')}")
    kinds = set(rows.evaluate_all("(els) => els.map((e) => e.dataset.kind)"))
    resources = set(rows.locator(".res").all_inner_texts())
    assert kinds <= {"deploy.started", "deploy.step", "deploy.output", "deploy.finished"}
    assert resources == {f"stack:{lab.name('cache')}"}


def test_a_viewer_sees_no_buttons_and_the_api_refuses_it(page: Any, lab: Lab) -> None:
    sign_in(page, lab, lab.viewer)
    assert page.locator("#who").inner_text() == "viewer (read-only)"
    card(page, lab, "web").wait_for()
    assert page.locator("button.deploy").count() == 0
    assert page.get_by_role("button", name=re.compile("Deploy")).count() == 0
    page.goto(lab.url + f"/#/stack/{lab.name('web')}")
    page.locator(".history li").first.wait_for()
    assert page.get_by_role("button", name=re.compile("^Deploy")).count() == 0
    page.goto(lab.url + "/#/sync/local")
    page.locator("main", has_text="Viewers see the plans operators make").wait_for()
    assert page.locator("button.apply").count() == 0
    assert page.get_by_role("button", name=re.compile("Apply|Plan")).count() == 0

    # The session's own CSRF token does not make a viewer an operator: every POST is 403.
    csrf = page.request.get(lab.url + "/auth/session").json()["csrf"]
    before = lab.record("web")["id"]
    for path in (
        f"/api/stacks/{lab.name('web')}/deploy",
        "/api/syncs/local/plan",
        "/api/syncs/local/apply",
        "/api/reconcile",
    ):
        answer = page.request.post(
            lab.url + path, headers={"X-Stackward-CSRF": csrf}, data={"plan_id": "x"}
        )
        assert answer.status == 403, (path, answer.text())
        assert answer.json()["error"]["code"] == "read_only"
    assert lab.record("web")["id"] == before


def test_360_px_wide_and_the_keyboard_alone(phone: Any, lab: Lab, shots: Path) -> None:
    page = phone
    page.goto(lab.url + "/")
    assert page.locator(":focus").get_attribute("id") == "token"  # focused on arrival
    page.keyboard.type(lab.core.token)
    page.keyboard.press("Enter")
    page.locator("#conn.live").wait_for()
    card(page, lab, "cache").wait_for()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide at a 360 px viewport"
    page.screenshot(path=str(shots / "dashboard-mobile.png"), full_page=True)

    # Tab to the cache stack's Deploy button and press Enter: no mouse.
    target = f"Deploy {lab.name('cache')}"
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.locator(":focus").get_attribute("aria-label") == target:
            break
    else:
        raise AssertionError("the Deploy button cannot be reached with Tab")
    outline = page.locator(":focus").evaluate("(el) => getComputedStyle(el).outlineStyle")
    assert outline == "solid"  # focus is visible
    card(page, lab, "cache").evaluate("(el) => { el.dataset.drawn = 'before'; }")
    page.keyboard.press("Enter")
    page.locator("#toast", has_text="deploy in run").wait_for()
    run = int(re.search(r"run #(\d+)", page.locator("#toast").inner_text()).group(1))  # type: ignore[union-attr]
    assert lab.wait_run(run)["status"] == "succeeded"
    # The deploy's events redrew the list (the card is a new element) and the keyboard's place
    # was kept: focus is still on that Deploy button, not lost to the page.
    page.locator(f'article.card[data-stack="{lab.name("cache")}"]:not([data-drawn])').wait_for()
    assert page.locator(":focus").get_attribute("aria-label") == target

    # Into the stack's page with the keyboard: its link, then Enter.
    card(page, lab, "cache").get_by_role("link", name=lab.name("cache")).focus()
    page.keyboard.press("Enter")
    page.locator("h1", has_text=lab.name("cache")).wait_for()
    page.locator(".history li").first.wait_for()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360, f"the stack page is {width} px wide at a 360 px viewport"
