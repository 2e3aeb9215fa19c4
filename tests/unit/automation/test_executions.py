"""Executions are read with Komodo's types and params (client/core/rs/src/api/execute/*.rs) and
its defaults; builds and actions are read past, unknown types are errors."""

from __future__ import annotations

import pytest

from core.automation.executions import (
    BatchDeployStackIfChanged,
    DeployStack,
    DestroyStack,
    ExecutionError,
    GlobalAutoUpdate,
    ReadPast,
    Sleep,
    StopStack,
    parse,
)
from core.resources.models import Execution


def test_types_and_defaults_are_komodos() -> None:
    assert parse(Execution("DeployStack", {"stack": "web"})) == DeployStack("web", [], None)
    assert parse(Execution("StopStack", {"stack": "web", "stop_time": 5})) == StopStack(
        "web", 5, []
    )
    assert parse(Execution("DestroyStack", {"stack": "w"})) == DestroyStack("w", [], False, None)
    assert parse(Execution("GlobalAutoUpdate", {})) == GlobalAutoUpdate(False)
    assert parse(Execution("Sleep", {"duration_ms": 250})) == Sleep(250)
    step = parse(Execution("BatchDeployStackIfChanged", {"pattern": "*"}))
    assert isinstance(step, BatchDeployStackIfChanged)
    assert step.describe() == "BatchDeployStackIfChanged *"


@pytest.mark.parametrize("kind", ["RunBuild", "RunAction", "BatchRunBuild", "Deploy"])
def test_builds_actions_and_deployments_are_read_past(kind: str) -> None:
    got = parse(Execution(kind, {"build": "x"}))
    assert isinstance(got, ReadPast) and got.type == kind and got.why


@pytest.mark.parametrize(
    ("execution", "needle"),
    [
        (Execution("DeployStak", {"stack": "x"}), "not an execution type"),
        (Execution("DeployStack", {}), "stack is required"),
        (Execution("DeployStack", {"stack": 7}), "stack: expected `str`"),
        (Execution("Sleep", {"duration_ms": -1}), "negative"),
    ],
)
def test_bad_executions_say_what_is_wrong(execution: Execution, needle: str) -> None:
    with pytest.raises(ExecutionError, match=needle):
        parse(execution)
