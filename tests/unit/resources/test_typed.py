"""Resources stay typed after loading: a stored canonical form converts back to the same
typed Structs the loader builds."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.exceptions import ResourceError
from core.plan.canonical import canonical
from core.resources import validate
from core.resources.models import (
    CONFIG_TYPES,
    RepoConfig,
    SourceRef,
    StackConfig,
    SystemCommand,
    config_from_canonical,
    resource_from_canonical,
)
from core.resources.variables import MASK

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "komodo-corpus"


def test_every_corpus_resource_round_trips_through_its_canonical_form() -> None:
    rs = validate([CORPUS])
    assert len(rs.resources) > 100
    for res in rs.resources.values():
        back = resource_from_canonical(res.kind, res.name, canonical(res), res.source)
        if res.kind == "variable" and res.config.is_secret:
            assert back.config.value == MASK  # the store never holds a secret
            continue
        assert back == res, res.key
        assert type(back.config) is CONFIG_TYPES[res.kind]


def test_a_field_added_since_the_state_was_stored_takes_its_default() -> None:
    old = {"server": "h", "pre_deploy": [{"path": "", "command": "make"}]}  # no shell_mode
    cfg = config_from_canonical("stack", old)
    assert isinstance(cfg, StackConfig)
    assert cfg.pre_deploy == [SystemCommand(path="", command="make", shell_mode=False)]
    assert cfg.env_file_path == ".env" and cfg.auto_pull is True


def test_data_that_does_not_fit_is_a_resource_error() -> None:
    with pytest.raises(ResourceError, match="stored stack config does not fit"):
        config_from_canonical("stack", {"auto_pull": "yes"})
    with pytest.raises(ResourceError, match="no resource kind"):
        config_from_canonical("build", {})


def test_typed_access_is_checked() -> None:
    rs = validate([CORPUS / "Maaskk__industrial-equipment-health-platform.toml"])
    repo = rs.config("repo", "industrial-equipment-health-platform", RepoConfig)
    assert repo is not None and repo.on_clone[0].command
    assert rs.config("repo", "nothing", RepoConfig) is None
    with pytest.raises(TypeError, match="no StackConfig"):
        rs.resources[("repo", "industrial-equipment-health-platform")].typed_config(StackConfig)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(
    st.builds(
        StackConfig,
        server=_text,
        run_directory=_text,
        environment=_text,
        extra_args=st.lists(_text, max_size=3),
        pre_deploy=st.lists(st.builds(SystemCommand, command=_text), max_size=1),
        auto_pull=st.booleans(),
    )
)
def test_any_stack_config_survives_storage(cfg: StackConfig) -> None:
    stored = msgspec.json.decode(msgspec.json.encode(cfg))  # what the store keeps: JSON
    assert config_from_canonical("stack", stored) == cfg
    res = resource_from_canonical("stack", "s", {"config": stored, "deploy": True})
    assert res.config == cfg and res.deploy and res.source == SourceRef("state", ())
