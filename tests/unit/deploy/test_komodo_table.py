"""The agent's jobs against komodo_table.toml, row by row.

The table says what Komodo's code runs for stacks of ../shared/komodo-corpus (and of
komodo_extra.toml): the argv, the working directory and the env file; it was written by reading
Komodo's code, not from stackward's output (its header cites the rules). For each row this test
plans the stack's job as the core does (``plan_job``), builds the commands the core sends for it
(``checkout_command``, ``command_steps``, ``deploy_command``), and from each command what the
periphery runs (``stack_paths``, ``command_argv``, ``compose_plan``, ``swarm_plan``,
``login_argv``), and compares. Nothing runs: the functions are the ones the deploy uses.

Where Komodo's paths and stackward's differ by design, the table's placeholders stand for both:
``{checkout}`` is Komodo's clone of the stack (``stack_dir/<name>/<clone_path>``, or
``repo_dir/<repo>/<path>`` for a linked repo) and stackward's fixed checkout ``ROOT/<stack>``;
``{stack_dir}`` is ``stack_dir/<name>`` and ``ROOT/<stack>``; ``{shell}`` is Komodo's shell
(bash, else sh), the same rule here.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.config import Account, CoreConfig, GitProvider, ImageRegistry
from core.deploy.jobs import JobError, plan_job, values_of
from core.deploy.stack import checkout_command, command_steps, deploy_command, health_command
from core.resources.loader import load_paths, load_text
from core.resources.models import RepoConfig, StackConfig
from core.resources.variables import references
from periphery.ops.commands import command_argv, shell
from periphery.ops.compose import compose_plan
from periphery.ops.dockercli import Capabilities
from periphery.ops.registry import login_argv
from periphery.ops.swarm import swarm_plan
from periphery.paths import stack_paths
from protocol.messages import ComposeUp, DeployMode, StackSource, SwarmDeploy

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[2] / ".." / "shared" / "komodo-corpus"
TABLE = tomllib.loads((HERE / "komodo_table.toml").read_text())["stack"]
ROOT = Path("/srv/stackward-agent")  # the agent's root: nothing is made there
CLI_28 = Capabilities(cli_version="28.2.2", compose=("docker", "compose"), compose_version="2")


def source_file(row: dict[str, Any]) -> Path:
    return HERE / row["file"] if row["file"] == "komodo_extra.toml" else CORPUS / row["file"]


def core_config(rs_stacks: list[StackConfig], repos: list[RepoConfig]) -> CoreConfig:
    """A core that holds a token for every git and registry account the file names."""
    git: dict[str, set[str]] = {}
    registries: dict[str, set[str]] = {}
    for cfg in [*rs_stacks, *repos]:
        if cfg.git_account:
            git.setdefault(cfg.git_provider, set()).add(cfg.git_account)
    for cfg in rs_stacks:
        if cfg.registry_provider and cfg.registry_account:
            registries.setdefault(cfg.registry_provider, set()).add(cfg.registry_account)
    return CoreConfig(
        data_dir="/unused",
        api_tokens=["t" * 16],
        git_provider=[
            GitProvider(
                domain=d, accounts=[Account(username=a, token=f"git-{a}") for a in sorted(acc)]
            )
            for d, acc in sorted(git.items())
        ],
        image_registry=[
            ImageRegistry(
                domain=d, accounts=[Account(username=a, token=f"reg-{a}") for a in sorted(acc)]
            )
            for d, acc in sorted(registries.items())
        ],
    )


def expand(text: str, target: str) -> str:
    return (
        text.replace("{checkout}", str(ROOT / target))
        .replace("{stack_dir}", str(ROOT / target))
        .replace("{shell}", shell())
    )


def same_dir(got: Path | None, want: str, target: str) -> bool:
    if want == "":
        return got is None
    assert got is not None
    return os.path.normpath(got) == os.path.normpath(expand(want, target))


def argv_of(row_value: list[str], target: str) -> list[str]:
    return [expand(a, target) for a in row_value]


def test_the_table_covers_30_corpus_stacks_and_every_shape() -> None:
    corpus_rows = [r for r in TABLE if r["file"] != "komodo_extra.toml" and "error" not in r]
    assert len(corpus_rows) >= 30
    assert len({(r["file"], r["name"]) for r in TABLE}) == len(TABLE)
    covered = " ".join(r["why"] for r in TABLE)
    for shape in (
        "pre_deploy",
        "post_deploy",
        "shell_mode",
        "multi-line",
        "env_file_path",
        "additional_env_files",
        "{variable, value}",
        "'//'",
        "${VAR}",
        "$$",
        "quotes",
        "extra_args",
        "destroy_before_deploy",
        "files_on_host",
        "file_contents",
        "git_account",
        "registry",
        "linked_repo",
        "skip_secret_interp",
        "ignore_services",
        "auto_pull",
        "project_name",
        "swarm",
    ):
        assert shape in covered, shape


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"{r['file'].split('__')[0]}:{r['name']}")
def test_row(row: dict[str, Any], tmp_path: Path) -> None:
    path = source_file(row)
    rs = load_paths([path])
    if row.get("context"):
        rs = load_text(row["context"], "context.toml", rs)
    assert ("stack", row["name"]) in rs.resources
    known = {r.name for r in rs.of_kind("variable")}
    held = {n: f"<{n}>" for n in references(path.read_text()) if n not in known}
    values = values_of(rs, held)
    config = core_config(
        [s.typed_config(StackConfig) for s in rs.stacks()],
        [r.typed_config(RepoConfig) for r in rs.of_kind("repo")],
    )
    if "error" in row:
        with pytest.raises(JobError, match=re.escape(row["error"])):
            plan_job(rs, row["name"], values, config)
        return
    plan = plan_job(rs, row["name"], values, config)
    job = plan.job
    if plan.source is not None:
        job = replace(job, repo_url=plan.source.url, commit="0" * 40)
    assert job.mode is DeployMode(row["mode"])
    target = job.target

    # What the core sends first: the stack written (Komodo's write_stack).
    checkout = checkout_command(job)
    assert checkout.env_file == row["env_file"]
    assert checkout.env_file_path == row["env_file_path"]
    if "file_contents" in row:
        assert checkout.source is StackSource.FILE_CONTENTS
        assert checkout.file_contents == row["file_contents"]
    if row.get("git_account"):
        assert checkout.credentials is not None
        assert checkout.credentials.token == f"git-{row['git_account']}"
        assert checkout.credentials.token not in checkout.repo_url
    else:
        assert checkout.credentials is None
    if "login" in row:
        assert checkout.registry is not None
        argv = login_argv(checkout.registry)
        assert argv == row["login"]
        assert checkout.registry.token not in " ".join(argv)
    else:
        assert checkout.registry is None

    # Where it runs, on the periphery.
    paths = stack_paths(ROOT, target, checkout.source, checkout.run_directory)
    assert same_dir(paths.run_directory, row["cwd"], target), paths.run_directory

    # Komodo passes the env file on when it wrote one (a first deploy: nothing there before).
    written = row["env_file_path"] if row["env_file"] else ""

    for stage in ("pre_deploy", "post_deploy"):
        steps = command_steps(job, stage)
        if stage not in row:
            assert steps == [], stage
            continue
        [(_, command)] = steps
        argv = command_argv(command.command, command.shell_mode)
        assert argv == argv_of(row[stage]["argv"], target), stage
        workdir = paths.resolve(command.path)
        assert same_dir(workdir, row[stage]["cwd"], target), (stage, workdir)

    deploy = deploy_command(job, written)
    if isinstance(deploy, ComposeUp):
        plan_ = compose_plan(
            ("docker", "compose"),
            deploy.project,
            deploy.files,
            deploy.env_file_path,
            deploy.env_files,
            deploy.extra_args,
            auto_pull=deploy.auto_pull,
            destroy_before_deploy=deploy.destroy_before_deploy,
            run_directory=paths.run_directory,
        )
        for step, got in (("pull", plan_.pull), ("down", plan_.down), ("up", plan_.up)):
            if step not in row:
                assert got is None, step
                continue
            assert got is not None, step
            assert got.argv == argv_of(row[step], target), step
            want_cwd = row.get(f"{step}_cwd", row["cwd"])
            assert same_dir(got.cwd, want_cwd, target), (step, got.cwd)
    else:
        assert isinstance(deploy, SwarmDeploy)
        swarm = swarm_plan(
            CLI_28,
            deploy.stack,
            deploy.files,
            deploy.env_file_path,
            deploy.env_files,
            deploy.extra_args,
            registry_auth=deploy.registry_auth,
            destroy_before_deploy=deploy.destroy_before_deploy,
        )
        assert swarm.deploy == argv_of(row["deploy"], target)
        assert swarm.sourced == row["sourced"]
        assert swarm.remove is row.get("remove", False)
        if swarm.sourced:  # the shell sources them, then runs the same deploy argv
            assert swarm.argv[-len(swarm.deploy) :] == swarm.deploy
            assert swarm.argv[4 : 4 + len(swarm.sourced)] == swarm.sourced

    assert health_command(job).ignore_services == row.get("ignore_services", [])
