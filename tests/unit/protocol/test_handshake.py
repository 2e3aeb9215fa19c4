"""The handshake as pure logic: no sockets, messages passed by hand."""

from __future__ import annotations

import msgspec
import pytest

from protocol import codec
from protocol.aead import backend
from protocol.exceptions import HandshakeFailed, VersionMismatch
from protocol.handshake import ClientHandshake, ConnectionBinding, ServerHandshake
from protocol.keys import PrivateKey, PublicKey
from protocol.messages import PROTOCOL_VERSION, ClientHello, ClientProof, Role, ServerHello

X25519 = backend()

CORE = PrivateKey.generate()
PERIPHERY = PrivateKey.generate()
STRANGER = PrivateKey.generate()
BINDING = ConnectionBinding(accept_key="s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", host="h:8120", path="/ws")


def allow(*keys: PublicKey, role: Role = Role.CORE, name: str = ""):  # type: ignore[no-untyped-def]
    def authorize(peer_role: Role, peer_name: str, key: PublicKey) -> bool:
        return peer_role is role and peer_name == name and key in keys

    return authorize


def pair(
    *,
    client_key: PrivateKey = CORE,
    server_key: PrivateKey = PERIPHERY,
    pinned: PublicKey | None = None,
    authorized: tuple[PublicKey, ...] = (CORE.public_key,),
    client_binding: ConnectionBinding = BINDING,
    server_binding: ConnectionBinding = BINDING,
) -> tuple[ClientHandshake, ServerHandshake]:
    client = ClientHandshake(
        private_key=client_key,
        role=Role.CORE,
        trusted_server_keys=[pinned or PERIPHERY.public_key],
        binding=client_binding,
    )
    server = ServerHandshake(
        private_key=server_key,
        role=Role.PERIPHERY,
        authorize=allow(*authorized),
        binding=server_binding,
    )
    return client, server


def run(client: ClientHandshake, server: ServerHandshake) -> list[bytes]:
    """Drive both sides to the end; return the four messages as sent."""
    sent = [client.start()]
    sent.append(server.receive(sent[-1]))
    proof = client.receive(sent[-1])
    assert proof is not None
    sent.append(proof)
    sent.append(server.receive(proof))
    assert client.receive(sent[-1]) is None
    return sent


def test_both_sides_authenticate() -> None:
    client, server = pair()
    run(client, server)
    assert client.complete and server.complete
    assert client.peer is not None and client.peer.public_key == PERIPHERY.public_key
    assert server.peer is not None and server.peer.public_key == CORE.public_key
    assert server.peer.role is Role.CORE


def test_server_refuses_a_key_it_does_not_list() -> None:
    client, server = pair(client_key=STRANGER)
    hello = client.start()
    proof = client.receive(server.receive(hello))
    assert proof is not None
    with pytest.raises(HandshakeFailed, match="not authorized"):
        server.receive(proof)
    assert not server.complete


def test_client_refuses_a_server_key_that_is_not_pinned() -> None:
    client, server = pair(server_key=STRANGER)
    with pytest.raises(HandshakeFailed, match="not the pinned key"):
        client.receive(server.receive(client.start()))


def test_the_server_signs_nothing_before_the_client_proved_itself() -> None:
    client, server = pair(client_key=STRANGER)
    hello_reply = codec.server_handshake_decoder().decode(server.receive(client.start()))
    assert not hasattr(hello_reply, "signature")


def test_a_recorded_handshake_replayed_on_a_new_connection_fails() -> None:
    client, server = pair()
    recorded = run(client, server)
    # The attacker replays the client's messages to a fresh server: its nonce differs.
    _, fresh_server = pair()
    fresh_server.receive(recorded[0])
    with pytest.raises(HandshakeFailed, match="signature does not verify"):
        fresh_server.receive(recorded[2])


def test_a_replay_with_the_same_server_nonce_but_another_connection_fails() -> None:
    client, server = pair()
    recorded = run(client, server)
    other = ConnectionBinding(accept_key="another-accept-key", host="h:8120", path="/ws")
    replay_server = ServerHandshake(
        private_key=PERIPHERY,
        role=Role.PERIPHERY,
        authorize=allow(CORE.public_key),
        binding=other,
        nonce=codec.server_handshake_decoder().decode(recorded[1]).nonce,  # type: ignore[union-attr]
    )
    replay_server.receive(recorded[0])
    with pytest.raises(HandshakeFailed, match="signature does not verify"):
        replay_server.receive(recorded[2])


def test_binding_mismatch_fails_both_ways() -> None:
    tls_seen = ConnectionBinding(
        accept_key=BINDING.accept_key,
        host=BINDING.host,
        path=BINDING.path,
        tls_server_cert_sha256=b"\x01" * 32,
    )
    client, server = pair(client_binding=tls_seen)
    proof = client.receive(server.receive(client.start()))
    assert proof is not None
    with pytest.raises(HandshakeFailed, match="signature does not verify"):
        server.receive(proof)


def test_a_server_proof_cannot_be_reflected_as_a_client_proof() -> None:
    client, server = pair()
    messages = run(client, server)
    server_proof = codec.server_handshake_decoder().decode(messages[3])
    _, server2 = pair()
    server2_hello = server2.receive(messages[0])
    del server2_hello
    reflected = codec.encode(ClientProof(signature=server_proof.signature))  # type: ignore[union-attr]
    with pytest.raises(HandshakeFailed):
        server2.receive(reflected)


def test_version_mismatch_fails() -> None:
    _, server = pair()
    hello = ClientHello(
        version=PROTOCOL_VERSION + 1,
        role=Role.CORE,
        nonce=b"n" * 32,
        public_key=CORE.public_key.wire,
    )
    with pytest.raises(HandshakeFailed, match="protocol version 3, this agent speaks 2"):
        server.receive(codec.encode(hello))


def test_wrong_role_fails() -> None:
    _, server = pair()
    hello = ClientHello(
        version=PROTOCOL_VERSION,
        role=Role.PERIPHERY,
        nonce=b"n" * 32,
        public_key=CORE.public_key.wire,
    )
    with pytest.raises(HandshakeFailed, match="role"):
        server.receive(codec.encode(hello))


def test_truncated_message_fails() -> None:
    client, server = pair()
    hello = client.start()
    with pytest.raises(HandshakeFailed, match="malformed|invalid"):
        server.receive(hello[: len(hello) // 2])


def test_short_nonce_fails() -> None:
    _, server = pair()
    hello = ClientHello(
        version=PROTOCOL_VERSION, role=Role.CORE, nonce=b"n" * 8, public_key=CORE.public_key.wire
    )
    with pytest.raises(HandshakeFailed, match="nonce"):
        server.receive(codec.encode(hello))


def test_a_proof_before_the_hello_fails() -> None:
    _, server = pair()
    with pytest.raises(HandshakeFailed, match="unexpected ClientProof"):
        server.receive(codec.encode(ClientProof(signature=b"s" * 64)))


def test_a_message_after_completion_fails() -> None:
    client, server = pair()
    messages = run(client, server)
    with pytest.raises(HandshakeFailed, match="unexpected"):
        server.receive(messages[2])


def test_a_command_frame_during_the_handshake_fails() -> None:
    _, server = pair()
    request = msgspec.msgpack.encode(
        {"t": "req", "id": 1, "command": {"cmd": "run", "argv": ["x"]}}
    )
    with pytest.raises(HandshakeFailed):
        server.receive(request)


def test_an_oversized_handshake_message_fails() -> None:
    _, server = pair()
    with pytest.raises(HandshakeFailed, match="exceeds the cap"):
        server.receive(b"\x00" * (codec.HANDSHAKE_MAX_BYTES + 1))


def test_dial_in_authorization_checks_the_name() -> None:
    periphery = ClientHandshake(
        private_key=PERIPHERY,
        role=Role.PERIPHERY,
        trusted_server_keys=[CORE.public_key],
        binding=BINDING,
        name="nas",
    )
    core = ServerHandshake(
        private_key=CORE,
        role=Role.CORE,
        authorize=allow(PERIPHERY.public_key, role=Role.PERIPHERY, name="media"),
        binding=BINDING,
    )
    proof = periphery.receive(core.receive(periphery.start()))
    assert proof is not None
    with pytest.raises(HandshakeFailed, match="as 'nas' is not authorized"):
        core.receive(proof)


# ------------------------------------------------------------ ephemeral keys and session keys


def test_both_sides_derive_mirrored_direction_keys() -> None:
    client, server = pair()
    run(client, server)
    assert client.keys is not None and server.keys is not None
    assert client.keys.send == server.keys.receive
    assert client.keys.receive == server.keys.send
    assert client.keys.send != client.keys.receive
    assert "hidden" in repr(client.keys) and client.keys.send.hex() not in repr(client.keys)


def test_session_keys_are_fresh_per_connection_with_the_same_long_term_keys() -> None:
    first, second = pair(), pair()
    run(*first)
    run(*second)
    assert first[0].keys != second[0].keys


def test_long_term_keys_and_a_recording_do_not_give_the_session_keys() -> None:
    """Forward secrecy: someone with both long-term private keys and the recorded messages
    replays the listener's side and gets other keys than the recorded session used."""
    client, server = pair()
    recorded = run(client, server)
    assert client.keys is not None
    thief = ServerHandshake(
        private_key=PERIPHERY,
        role=Role.PERIPHERY,
        authorize=allow(CORE.public_key),
        binding=BINDING,
    )
    thief.receive(recorded[0])
    with pytest.raises(HandshakeFailed, match="client signature"):
        thief.receive(recorded[2])  # the proof binds the listener's ephemeral key too
    # Nor is an ephemeral private key kept once the keys are made.
    assert client._ephemeral == b"" and server._ephemeral == b""


def test_a_swapped_ephemeral_key_breaks_the_signatures() -> None:
    client, server = pair()
    hello = client.start()
    reply = server.receive(hello)
    decoded = msgspec.msgpack.decode(reply, type=ServerHello)
    forged = codec.encode(msgspec.structs.replace(decoded, ephemeral=X25519.x25519_keypair()[1]))
    proof = client.receive(forged)
    assert proof is not None
    with pytest.raises(HandshakeFailed, match="client signature does not verify"):
        server.receive(proof)


def test_an_old_dialer_gets_our_hello_and_a_clear_version_error() -> None:
    _, server = pair()
    old_hello = ClientHello(
        version=1, role=Role.CORE, nonce=b"n" * 32, public_key=CORE.public_key.wire
    )
    with pytest.raises(VersionMismatch, match="^protocol version 1, this agent speaks 2$") as err:
        server.receive(codec.encode(old_hello))
    reply = msgspec.msgpack.decode(err.value.reply, type=ServerHello)
    assert reply.version == PROTOCOL_VERSION and reply.role is Role.PERIPHERY


def test_a_dialer_told_an_old_version_says_so() -> None:
    client, _ = pair()
    client.start()
    old = ServerHello(
        version=1, role=Role.PERIPHERY, nonce=b"n" * 32, public_key=PERIPHERY.public_key.wire
    )
    with pytest.raises(VersionMismatch, match="^protocol version 1, this core speaks 2$"):
        client.receive(codec.encode(old))


def test_a_hello_without_an_ephemeral_key_is_refused() -> None:
    _, server = pair()
    hello = ClientHello(
        version=PROTOCOL_VERSION,
        role=Role.CORE,
        nonce=b"n" * 32,
        public_key=CORE.public_key.wire,
    )
    with pytest.raises(HandshakeFailed, match="ephemeral key has 0 bytes"):
        server.receive(codec.encode(hello))
