"""The periphery's host set-up decisions: swarm init, secret names and users (no engine)."""

from __future__ import annotations

import pytest

from periphery.exceptions import SecretError, SwarmStateError
from periphery.ops.secrets import label_args, secret_name, users
from periphery.ops.swarm_init import Action, SwarmState, check_address, decide


def test_swarm_init_only_when_in_no_swarm() -> None:
    assert decide(SwarmState("inactive", False)) is Action.INIT
    assert decide(SwarmState("active", True, "node1")) is Action.NOTHING


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (SwarmState("active", False), "worker"),
        (SwarmState("locked", False), "docker swarm unlock"),
        (SwarmState("pending", False), "'pending'"),
        (SwarmState("error", False), "'error'"),
        (SwarmState("", False), "unknown"),
    ],
)
def test_swarm_states_it_will_not_touch(state: SwarmState, message: str) -> None:
    with pytest.raises(SwarmStateError, match=message):
        decide(state)


def test_advertise_addresses() -> None:
    for good in ("", "127.0.0.1", "eth0", "10.0.0.1:2377", "[fe80::1%eth0]"):
        assert check_address(good) == good
    for bad in ("--force-new-cluster", "-x", "a b", "1.2.3.4;rm"):
        with pytest.raises(SwarmStateError):
            check_address(bad)


def test_secret_names_and_labels_cannot_pass_for_options() -> None:
    assert secret_name("db_password_0a1b2c3d") == "db_password_0a1b2c3d"
    for bad in ("-rm", "", "a/b", "x" * 65):
        with pytest.raises(SecretError):
            secret_name(bad)
    assert label_args({"stackward.secret": "-db"}) == ["--label=stackward.secret=-db"]
    with pytest.raises(SecretError):
        label_args({"--evil": "x"})


def test_users_of_secrets_from_service_specs() -> None:
    def service(name: str, stack: str, *secrets: str) -> dict[str, object]:
        return {
            "Spec": {
                "Name": name,
                "Labels": {"com.docker.stack.namespace": stack} if stack else {},
                "TaskTemplate": {
                    "ContainerSpec": {"Secrets": [{"SecretName": s} for s in secrets]}
                },
            }
        }

    found = users(
        [service("pg_db", "pg", "db_1"), service("lone", "", "db_1", "api_2"), service("x", "x")]
    )
    assert found == {"db_1": [("pg_db", "pg"), ("lone", "")], "api_2": [("lone", "")]}
