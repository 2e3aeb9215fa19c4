"""``stackward validate`` as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.resources import support

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "komodo-corpus"
FILES = sorted(CORPUS.glob("*.toml"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "validate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


# What each corpus file's stacks do under stackward, read from the files against Komodo's code
# (client/core/rs/src/entities/stack.rs and bin/periphery/src/stack/write.rs for where files
# come from; procedure.rs for procedures): the stacks that deploy otherwise, with why. A reason
# is a key of core/resources/support.py without "stack."; a reason whose key has left the table
# (the agent acts on the field now) no longer makes a stack differ.
GIT = ("git_account",)
PRE = ("pre_deploy", "git_account")
REG = ("registry_provider", "registry_account")
DIFFER: dict[str, tuple[int, dict[str, tuple[str, ...]]]] = {
    "BigH3ater__kdk-lab-dkr.toml": (
        12,
        {
            "proxy": PRE,
            "op-connect": GIT,
            "docs": GIT,
            "media": GIT,
            "apps": PRE,
            "backup-dkr-01": (*GIT, "procedure"),  # deploy = false, a procedure deploys it
            "dmz-proxy": PRE,
            "identity": PRE,
            "dmz-apps": GIT,
            "jellyfin": GIT,
            "immich": PRE,
            "backup-dmz": (*PRE, "procedure"),
        },
    ),
    "BrockCSC__brockcsc.ca.toml": (2, {}),
    "DracoBlackBelt__homelab-infra__komodo__stacks.toml": (15, {}),
    "Evan-2007__lab__komodo__stacks.toml": (5, {}),
    "Geckuss__bigmt-mediaserver.toml": (5, {"mediastack": ("extra_args",)}),
    "HunInProgress__playbook__komodo__sync.toml": (19, {}),
    "Maaskk__industrial-equipment-health-platform.toml": (1, {}),
    "NiekKeijzer__homelab.toml": (0, {}),
    "Nospamas__unraid-ops__komodo__sync.toml": (0, {}),
    "RushilBasappa__homeserve__komodo__stacks.toml": (28, {}),
    "aabichou__ajiz-ctf-deployment__komodo__stacks.toml": (7, {}),
    "cwelsys__stacks__komodo.toml": (
        16,
        {
            "arr": PRE,
            "auth": PRE,
            "code": GIT,
            "dashboard": PRE,
            "discord": PRE,
            "dns": GIT,
            "downs": PRE,
            "external": PRE,
            "guac": PRE,
            "internal": PRE,
            "kop": GIT,
            "linkding": PRE,
            "media": PRE,
            "monitor": PRE,
            "system": PRE,
            "web": PRE,
        },
    ),
    "fabricesemti80__home-dc-proxmox-guests.toml": (1, {}),
    "fabricesemti80__home-dc-proxmox-quests.toml": (3, {}),
    "fabricesemti80__home-dc-service-hosts.toml": (2, {}),
    "flynncs__homelab-public.toml": (0, {}),
    "hec7orci7o__svc-hub.toml": (0, {}),
    "itay-raveh__infra__komodo__stacks.toml": (2, {}),
    "jamesfpate__homelab.toml": (
        7,  # every stack deploy = false: one procedure deploys them all
        {
            "proxy": ("procedure",),
            "core": ("procedure",),
            "home": ("procedure",),
            "media": ("procedure",),
            "ash": (*REG, "procedure"),
            "voice": ("procedure",),
            "chat": ("procedure",),
        },
    ),
    "jrudavicius__home-server__komodo__stacks.toml": (2, {}),
    # HF_TOKEN=${KOMODO_SECRET_HF_TOKEN}: Komodo writes it raw for compose to expand
    "mohamedassab1-etu-lgtm__fsbm-chatbot-mlops.toml": (
        1,
        {"assistant_conversationnel_universitaire": ("environment",)},
    ),
    "noraidouaouzal-etu-lab__autoimmune-mlops.toml": (
        1,
        {"autoimmune_disease_prediction": ("environment",)},
    ),
    "sanjin-ivankovic__proxmox-infra__komodo__stacks.toml": (11, {}),
    "siffreinsg__the-sea.toml": (
        3,
        {"whoami": PRE, "backrest-tb": PRE, "backrest-gm": PRE},
    ),
    "svnix-solutions__paperclip-build.toml": (1, {"paperclip": (*GIT, *REG, "procedure")}),
    "svnix-solutions__reacher_build.toml": (1, {"reacher": (*GIT, *REG, "procedure")}),
    "yanpitangui__homelab.toml": (
        5,
        {
            "dns": ("files_on_host",),
            "proxy": ("files_on_host",),
            "monitoring": ("files_on_host",),
            "immich": ("files_on_host",),
            "plex": ("files_on_host",),
        },
    ),
}


def _still_inert(reason: str) -> bool:
    key = reason if reason == "procedure" or "." in reason else f"stack.{reason}"
    return key in support.BY_KEY


def expected_summary(path: Path) -> str:
    total, differ = DIFFER[path.name]
    if total == 0:
        return f"{path}: no stacks"
    left = {s: tuple(r for r in why if _still_inert(r)) for s, why in differ.items()}
    left = {s: why for s, why in left.items() if why}
    n, m = total - len(left), len(left)
    line = (
        f"{path}: {n} stack{'' if n == 1 else 's'} deploy{'s' if n == 1 else ''} as Komodo"
        f" would, {m} differ{'s' if m == 1 else ''}"
    )
    if left:
        line += ": " + ", ".join(f"{s} ({', '.join(why)})" for s, why in left.items())
    return line


def test_the_table_covers_the_corpus() -> None:
    assert sorted(DIFFER) == [p.name for p in FILES] and len(FILES) == 27


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_corpus_file_exits_zero_with_warnings_and_its_summary(path: Path) -> None:
    proc = run(str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    *findings, summary = proc.stdout.splitlines()
    for line in findings:
        assert re.match(rf"{re.escape(str(path))}:\d+: warning: ", line), line
    assert summary == expected_summary(path)
    # nothing the issue named as a false alarm
    for line in findings:
        assert "unknown key" not in line or not re.search(
            r'"(execution|shell_mode|variable|value)"', line
        ), line


def test_procedures_are_checked_as_they_run(tmp_path: Path) -> None:
    """Procedures run (core/automation): validate reads their executions and schedules as the
    core will. Komodo's: schedule_format defaults to English (entities/mod.rs ScheduleFormat),
    whose reader would make "every minute" of BigH3ater's cron; builds and actions are read
    past; a bad schedule is an error at its line; --explain shows the next three times."""
    big = CORPUS / "BigH3ater__kdk-lab-dkr.toml"
    assert (
        f'{big}:173: warning: procedure "nightly-backups": schedule_format is not set, so Komodo'
        " reads this cron expression as English (and runs it every minute); stackward reads it"
        ' as cron: set schedule_format = "Cron" to say so'
    ) in run(str(big)).stdout.splitlines()
    maaskk = CORPUS / "Maaskk__industrial-equipment-health-platform.toml"
    out = run("--explain", str(maaskk)).stdout.splitlines()
    assert (
        f'{maaskk}:112: warning: procedure "industrial-health-delivery": RunBuild is read past:'
        " stackward builds nothing"
    ) in out
    [explained] = [line for line in out if line.startswith(f"{maaskk}:97: procedure")]
    assert "'at 03:00 every Sunday' (cron 0 0 3 ? * SUN) in Africa/Casablanca: next" in explained
    assert explained.count(" 03:00:00 ") == 3
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[procedure]]\nname = "p"\n[procedure.config]\nschedule_format = "Cron"\n'
        'schedule = "0 3 * * *"\n[[procedure.config.stage]]\nname = "s"\nexecutions = [\n'
        '  { execution.type = "DeployStak", execution.params.stack = "web" },\n]\n'
    )
    proc = run(str(bad))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert (
        f"{bad}:5: error: procedure \"p\": schedule: cron '0 3 * * *' has 5 fields: Komodo's"
        " cron has six, seconds first (second minute hour day-of-month month day-of-week); with"
        ' the seconds first: "0 0 3 * * *"'
    ) in lines
    assert any(
        line.startswith(f"{bad}:8: error:") and "'DeployStak' is not an execution type" in line
        for line in lines
    ), lines


def test_inert_fields_are_named_at_their_line_with_what_happens_instead() -> None:
    path = CORPUS / "itay-raveh__infra__komodo__stacks.toml"
    lines = run(str(path)).stdout.splitlines()
    for line, stack in ((13, "traefik"), (28, "gatus")):
        assert (
            f'{path}:{line}: warning: stack "{stack}": poll_for_updates is ignored: nothing'
            " checks for newer images; image updates are not in stackward yet (planned)"
        ) in lines
    geckuss = CORPUS / "Geckuss__bigmt-mediaserver.toml"
    out = run(str(geckuss)).stdout.splitlines()
    assert (
        f'{geckuss}:34: warning: [server.config] of "bigmt": unknown key "tags" (it belongs on'
        " the [[server]] entry, not in its config); it is ignored"
    ) in out
    if "stack.extra_args" in support.BY_KEY:
        assert (
            f'{geckuss}:59: warning: stack "mediastack": extra_args is not passed: the deploy'
            " command runs without them"
        ) in out


def test_missing_variables_are_one_line_with_the_secrets_hint() -> None:
    path = CORPUS / "Geckuss__bigmt-mediaserver.toml"
    variable_lines = [line for line in run(str(path)).stdout.splitlines() if "[[TZ]]" in line]
    assert variable_lines == [
        f"{path}:64: warning: 4 variables used here are not defined in the files checked:"
        " [[TZ]] (lines 64, 85, 102, 120), [[SEAFILE_DB_PASSWORD]] (line 68),"
        " [[SEAFILE_ADMIN_PASSWORD]] (line 69), [[IMMICH_DB_PASSWORD]] (line 139); put secrets"
        " in core.toml's [secrets] (the core interpolates them at deploy) and the rest in"
        " [[variable]] entries"
    ]


def test_strict_fails_on_inert_and_unknown_not_on_missing_variables() -> None:
    draco = CORPUS / "DracoBlackBelt__homelab-infra__komodo__stacks.toml"
    relaxed = run(str(draco))
    assert "variables used here are not defined" in relaxed.stdout
    assert run("--strict", str(draco)).returncode == 0
    geckuss = CORPUS / "Geckuss__bigmt-mediaserver.toml"
    strict = run("--strict", str(geckuss))
    assert strict.returncode == 1
    assert f'{geckuss}:60: error: stack "mediastack": poll_for_updates is ignored' in strict.stdout
    assert f"{geckuss}:64: warning: 4 variables used here" in strict.stdout


def test_errors_exit_one_with_file_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[stack]]\nname = "web"\n[stack.config]\nserver = "h"\nauto_pull = "yes"\n')
    proc = run(str(bad))
    assert proc.returncode == 1
    assert f'{bad}:5: error: stack "web": config.auto_pull: expected a boolean' in proc.stdout


def test_shapes_komodo_rejects_are_errors_that_say_so(tmp_path: Path) -> None:
    f = tmp_path / "shapes.toml"
    f.write_text(
        '[[stack]]\nname = "web"\n[stack.config]\nserver = "h"\nrepo = "o/r"\n'
        'environment = { TZ = "UTC" }\n'
        '[[stack.config.pre_deploy]]\ncommand = "make"\nargs = ["all"]\n'
    )
    proc = run(str(f))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert (
        f'{f}:6: error: stack "web": config.environment: a table: Komodo does not accept this'
        " (its sync fails to read the file); write the variables as a multi-line string:"
        ' environment = """ then one KEY = value a line, then """'
    ) in lines
    assert (
        f'{f}:7: error: stack "web": config.pre_deploy: an array of commands: Komodo does not'
        " accept this (its sync fails to read the file); write one table {path, command} and"
        " put the commands in one multi-line command, a line each"
    ) in lines
    assert lines[-1] == f"{f}: 0 stacks deploy as Komodo would, 1 differs: web (error)"


def test_messages_a_user_meets(tmp_path: Path) -> None:
    f = tmp_path / "typos.toml"
    f.write_text(
        '[[server]]\nname = "nas"\n\n[[variable]]\nname = "DOMAIN"\nvalue = "example.com"\n\n'
        '[[stack]]\nname = "web"\n[stack.config]\nserver = "nsa"\nrepo = "o/r"\ndeploy = true\n'
        'environment = """\nTZ = UTC\nHOST = app.[[DOMIAN]]\n"""\n'
    )
    lines = run(str(f)).stdout.splitlines()
    assert lines[:3] == [
        f'{f}:11: warning: stack "web": server "nsa" is not defined here (did you mean "nas"?);'
        " fix the name",
        f'{f}:13: warning: [stack.config] of "web": unknown key "deploy" (it belongs on the'
        " [[stack]] entry, not in its config); it is ignored",
        f'{f}:16: warning: stack "web": environment uses [[DOMIAN]], which is not defined'
        ' (did you mean "DOMAIN"?); fix the name',
    ]


def test_an_unterminated_string_is_reported_where_it_opened(tmp_path: Path) -> None:
    f = tmp_path / "open.toml"
    f.write_text(
        '[[stack]]\nname = "web"\n[stack.config]\nserver = "h"\n'
        + "\n" * 10
        + 'environment = """\nA=1\n\n[[stack]]\nname = "db"\n'
    )
    proc = run(str(f))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        f"{f}:15: error: not valid TOML: Unterminated string: it opens here and is never"
        " closed; fix the syntax"
    )


def test_binary_or_unreadable_input_exits_two(tmp_path: Path) -> None:
    blob = tmp_path / "blob.toml"
    blob.write_bytes(bytes(range(256)))
    proc = run(str(blob))
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[0] == (
        f"{blob}:1: error: not a text file (binary, or not UTF-8): give a Komodo resource file"
        " (TOML)"
    )
    # a file that exists and cannot be read, even by root: reading /proc/self/mem from its
    # start fails with EIO
    proc = run("/proc/self/mem")
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[0] == (
        "/proc/self/mem:1: error: cannot read the file: Input/output error"
    )


def test_strict_and_json(tmp_path: Path) -> None:
    f = tmp_path / "warn.toml"
    f.write_text(
        '[[stack]]\nname = "web"\n[stack.config]\nserver = "h"\nauto_pul = true\n'
        "send_alerts = true\n"
    )
    assert run(str(f)).returncode == 0
    strict = run("--strict", str(f))
    assert strict.returncode == 1 and f"{f}:5: error:" in strict.stdout
    assert 'did you mean "auto_pull"' in strict.stdout
    as_json = json.loads(run("--json", str(f)).stdout)
    assert {"file": str(f), "line": 5, "severity": "warning", "code": "unknown_key"} in [
        {k: x[k] for k in ("file", "line", "severity", "code")} for x in as_json
    ]
    assert [x["key"] for x in as_json if x["code"] == "inert"] == ["stack.send_alerts"]


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    assert run(str(tmp_path / "missing.toml")).returncode == 2
    assert run().returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run(str(empty))
    assert proc.returncode == 2 and "no .toml files" in proc.stderr
