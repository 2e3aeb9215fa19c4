"""Every message type survives encode → decode with the decoder of its direction."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec, messages
from protocol.exceptions import FrameError

small_text = st.text(max_size=40)
small_bytes = st.binary(max_size=64)
ids = st.integers(min_value=0, max_value=2**63 - 1)

st.register_type_strategy(str, small_text)
st.register_type_strategy(bytes, small_bytes)

fences = st.none() | st.builds(messages.Fence, key=small_text, token=ids)
envs = st.dictionaries(small_text, small_text, max_size=4)
paths = st.lists(small_text, max_size=3)
sources = st.sampled_from(messages.StackSource)
git_credentials = st.none() | st.builds(
    messages.GitCredentials, username=small_text, token=small_text
)
registry_logins = st.none() | st.builds(
    messages.RegistryLogin, domain=small_text, username=small_text, token=small_text
)
deploy_commands = st.one_of(
    st.builds(
        messages.Checkout,
        repo_url=small_text,
        commit=small_text,
        target=small_text,
        fence=fences,
        credentials=git_credentials,
        source=sources,
        run_directory=small_text,
        file_paths=paths,
        file_contents=small_text,
        env_file_path=small_text,
        env_file=small_text,
        required_files=paths,
        registry=registry_logins,
    ),
    st.builds(
        messages.PreDeploy,
        target=small_text,
        command=small_text,
        path=small_text,
        env=envs,
        timeout=st.floats(0.001, 1e6),
        fence=fences,
        run_directory=small_text,
        shell_mode=st.booleans(),
        source=sources,
        stage=st.sampled_from(["pre_deploy", "post_deploy"]),
    ),
    st.builds(
        messages.ComposeUp,
        project=small_text,
        target=small_text,
        run_directory=small_text,
        files=paths,
        env=envs,
        auto_pull=st.booleans(),
        fence=fences,
        env_files=paths,
        source=sources,
        env_file_path=small_text,
        extra_args=paths,
        destroy_before_deploy=st.booleans(),
        networks=paths,
    ),
    st.builds(
        messages.SwarmDeploy,
        stack=small_text,
        target=small_text,
        run_directory=small_text,
        files=paths,
        env=envs,
        fence=fences,
        env_files=paths,
        source=sources,
        env_file_path=small_text,
        extra_args=paths,
        destroy_before_deploy=st.booleans(),
        registry_auth=st.booleans(),
        networks=paths,
    ),
    st.builds(messages.ComposeDown, project=small_text, fence=fences),
    st.builds(messages.RepoSync, url=small_text, commit=small_text, path=small_text, fence=fences),
    st.builds(
        messages.StackState,
        mode=st.sampled_from(messages.DeployMode),
        name=small_text,
        ignore_services=paths,
    ),
    st.builds(messages.SwarmRemove, stack=small_text, fence=fences),
    st.builds(
        messages.StackControl,
        project=small_text,
        action=st.sampled_from(["start", "stop", "restart", "pause", "unpause", "pull", "down"]),
        services=paths,
        stop_time=st.none() | st.integers(0, 86_400),
        remove_orphans=st.booleans(),
        target=small_text,
        run_directory=small_text,
        files=paths,
        env_files=paths,
        env_file_path=small_text,
        source=sources,
        fence=fences,
    ),
    st.builds(
        messages.RotateKey,
        step=st.sampled_from(["prepare", "commit"]),
        public_key=small_bytes,
        nonce=small_bytes,
    ),
    st.builds(
        messages.WaitHealthy,
        mode=st.sampled_from(messages.DeployMode),
        name=small_text,
        ignore_services=paths,
        timeout=st.floats(0.001, 1e6),
        fence=fences,
    ),
)
labels = st.dictionaries(small_text, small_text, max_size=3)
bootstrap_commands = st.one_of(
    st.builds(messages.SwarmInit, advertise_addr=small_text),
    st.builds(messages.SecretList, label=small_text),
    st.builds(messages.SecretCreate, name=small_text, data=small_bytes, labels=labels),
    st.builds(messages.SecretRemove, name=small_text),
)
bootstrap_values = st.one_of(
    st.builds(
        messages.SwarmReport,
        state=small_text,
        changed=st.booleans(),
        node_id=small_text,
        manager=st.booleans(),
    ),
    st.builds(
        messages.SecretListReport,
        secrets=st.lists(
            st.builds(
                messages.SecretInfo,
                name=small_text,
                id=small_text,
                labels=labels,
                index=ids,
                services=paths,
                stacks=paths,
            ),
            max_size=3,
        ),
    ),
    st.builds(messages.SecretReport, name=small_text, changed=st.booleans()),
    st.builds(messages.KeyReport, public_key=small_bytes, signature=small_bytes),
)
commands = deploy_commands | st.one_of(
    st.builds(messages.Health),
    st.builds(messages.Echo, data=small_bytes),
    st.builds(
        messages.Run,
        argv=st.lists(small_text, max_size=5),
        cwd=small_text,
        env=st.dictionaries(small_text, small_text, max_size=4),
        timeout=st.floats(min_value=0.001, max_value=1e6),
    ),
    bootstrap_commands,
    st.builds(messages.WatchDocker, types=st.lists(small_text, max_size=3)),
)
docker_events = st.builds(
    messages.DockerEvents,
    id=ids,
    events=st.lists(
        st.builds(
            messages.DockerEvent,
            time_nano=ids,
            type=small_text,
            action=small_text,
            actor=small_text,
            name=small_text,
            project=small_text,
            service=small_text,
            detail=st.dictionaries(small_text, small_text, max_size=3),
        ),
        max_size=3,
    ),
    engine=st.sampled_from(["", "lost", "resumed"]),
    message=small_text,
)
error_infos = st.builds(
    messages.ErrorInfo, code=st.sampled_from(messages.ErrorCode), message=small_text
)
health_reports = st.builds(
    messages.HealthReport,
    version=small_text,
    protocol=st.integers(0, 1000),
    hostname=small_text,
    docker=st.booleans(),
    docker_version=small_text,
    docker_error=small_text,
)
heartbeats = st.builds(messages.Heartbeat, seq=ids, reply=st.booleans())
errors = st.builds(
    messages.Error,
    code=st.sampled_from(messages.ErrorCode),
    message=small_text,
    request_id=st.none() | ids,
)
core_frames = st.one_of(
    st.builds(messages.Request, id=ids, command=commands),
    st.builds(messages.Cancel, id=ids),
    heartbeats,
    errors,
)
periphery_frames = st.one_of(
    st.builds(
        messages.Output,
        id=ids,
        seq=ids,
        stream=st.sampled_from(messages.Stream),
        data=st.binary(max_size=256),
    ),
    st.builds(
        messages.Result,
        id=ids,
        exit_code=st.none() | st.integers(-255, 255),
        error=st.none() | error_infos,
        value=st.none()
        | health_reports
        | st.builds(messages.EchoReply, data=small_bytes)
        | st.builds(
            messages.CheckoutReport,
            commit=small_text,
            path=small_text,
            env_file=small_text,
            run_directory=small_text,
        )
        | st.builds(
            messages.HealthGateReport,
            services=st.lists(
                st.builds(
                    messages.HealthVerdict,
                    service=small_text,
                    healthy=st.booleans(),
                    detail=small_text,
                ),
                max_size=3,
            ),
            exists=st.booleans(),
        )
        | bootstrap_values,
    ),
    heartbeats,
    errors,
    docker_events,
)
nonces = st.binary(min_size=32, max_size=32)
roles = st.sampled_from(messages.Role)
client_handshake = st.one_of(
    st.builds(
        messages.ClientHello,
        version=st.integers(0, 2**31),
        role=roles,
        nonce=nonces,
        public_key=small_bytes,
        name=small_text,
        software=small_text,
    ),
    st.builds(messages.ClientProof, signature=st.binary(min_size=64, max_size=64)),
)
server_handshake = st.one_of(
    st.builds(
        messages.ServerHello,
        version=st.integers(0, 2**31),
        role=roles,
        nonce=nonces,
        public_key=small_bytes,
        software=small_text,
    ),
    st.builds(messages.ServerProof, signature=st.binary(min_size=64, max_size=64)),
)


@given(core_frames)
def test_core_frames_round_trip(frame: msgspec.Struct) -> None:
    assert codec.core_frame_decoder().decode(codec.encode(frame)) == [frame]


def as_decoded(frame: msgspec.Struct) -> msgspec.Struct:
    """What the core's decoder gives for a frame the periphery sent (output as a view)."""
    if isinstance(frame, messages.Output):
        return messages.OutputView(
            id=frame.id, seq=frame.seq, stream=frame.stream, data=memoryview(frame.data)
        )
    return frame


@given(periphery_frames)
def test_periphery_frames_round_trip(frame: msgspec.Struct) -> None:
    assert codec.periphery_frame_decoder().decode(codec.encode(frame)) == [as_decoded(frame)]


@given(st.lists(core_frames, max_size=20))
def test_batches_of_core_frames_round_trip(frames: list[msgspec.Struct]) -> None:
    batch = codec.batch([codec.encode(f) for f in frames])
    assert codec.core_frame_decoder().decode(batch) == frames


@given(st.lists(periphery_frames, min_size=15, max_size=20))
def test_batches_of_periphery_frames_round_trip(frames: list[msgspec.Struct]) -> None:
    batch = codec.batch([codec.encode(f) for f in frames])
    assert codec.periphery_frame_decoder().decode(batch) == [as_decoded(f) for f in frames]


def test_large_batches_use_the_wide_array_headers() -> None:
    frame = codec.encode(messages.Heartbeat(seq=1))
    for count in (15, 16, 65535, 65536):
        assert len(codec.core_frame_decoder().decode(codec.batch([frame] * count))) == count


def test_nested_batches_are_refused() -> None:
    inner = codec.batch([codec.encode(messages.Heartbeat(seq=1))] * 2)
    with pytest.raises(FrameError):
        codec.core_frame_decoder().decode(codec.batch([inner]))


@given(client_handshake)
def test_client_handshake_round_trip(message: msgspec.Struct) -> None:
    assert codec.client_handshake_decoder().decode(codec.encode(message)) == message


@given(server_handshake)
def test_server_handshake_round_trip(message: msgspec.Struct) -> None:
    assert codec.server_handshake_decoder().decode(codec.encode(message)) == message


def test_every_message_type_is_covered() -> None:
    """A new message type must be added to the strategies above."""
    frames = {t.__name__ for t in (*messages.CoreFrame.__args__, *messages.PeripheryFrame.__args__)}
    assert frames == {
        "Request",
        "Cancel",
        "Heartbeat",
        "Error",
        "Output",
        "Result",
        "DockerEvents",
    }
    assert {t.__name__ for t in messages.Command.__args__} == {
        "Health",
        "Echo",
        "Run",
        "Checkout",
        "RepoSync",
        "StackState",
        "PreDeploy",
        "ComposeUp",
        "SwarmDeploy",
        "ComposeDown",
        "SwarmRemove",
        "WaitHealthy",
        "SwarmInit",
        "SecretList",
        "SecretCreate",
        "SecretRemove",
        "WatchDocker",
        "StackControl",
        "RotateKey",
    }
    assert {t.__name__ for t in messages.ResultValue.__args__} == {
        "HealthReport",
        "EchoReply",
        "CheckoutReport",
        "HealthGateReport",
        "SwarmReport",
        "SecretListReport",
        "SecretReport",
        "KeyReport",
    }


def test_a_frame_of_the_other_direction_is_refused() -> None:
    output = messages.Output(id=1, seq=0, stream=messages.Stream.STDOUT, data=b"x")
    with pytest.raises(FrameError, match="invalid core frame"):
        codec.core_frame_decoder().decode(codec.encode(output))


def test_unknown_frame_type_is_a_frame_error() -> None:
    data = msgspec.msgpack.encode({"t": "launch_missiles", "id": 1})
    with pytest.raises(FrameError, match="launch_missiles"):
        codec.core_frame_decoder().decode(data)


def test_unknown_command_is_a_frame_error() -> None:
    data = msgspec.msgpack.encode({"t": "req", "id": 1, "command": {"cmd": "rm_rf"}})
    with pytest.raises(FrameError, match="rm_rf"):
        codec.core_frame_decoder().decode(data)


def test_garbage_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="malformed"):
        codec.core_frame_decoder().decode(b"\xc1\xff\x00garbage")


def test_frame_over_the_cap_is_refused_before_decoding() -> None:
    decoder = codec.periphery_frame_decoder(max_bytes=1024)
    frame = messages.Output(id=1, seq=0, stream=messages.Stream.STDOUT, data=b"x" * 2000)
    with pytest.raises(FrameError, match="exceeds the cap of 1024"):
        decoder.decode(codec.encode(frame))


def test_new_fields_with_defaults_are_ignored_by_old_decoders() -> None:
    data = msgspec.msgpack.encode({"t": "cancel", "id": 7, "reason": "added in a later version"})
    assert codec.core_frame_decoder().decode(data) == [messages.Cancel(id=7)]


def test_hello_carries_the_protocol_version() -> None:
    assert "version" in messages.ClientHello.__struct_fields__
    assert "version" in messages.ServerHello.__struct_fields__


def test_a_secret_value_never_shows_in_a_command_repr() -> None:
    command = messages.SecretCreate(name="db", data=b"hunter2-value")
    assert "hunter2" not in repr(command)
    assert "hunter2" not in str(messages.Request(id=1, command=command))
