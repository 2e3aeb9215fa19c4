"""core.deploy.networks: a stack waits for the stacks that make the networks it declares
external (Komodo leaves that to a hand-written ``after``: the shared corpus's jamesfpate file,
"chat ... joins the voice network created by the voice stack")."""

from __future__ import annotations

import yaml

from core.deploy.networks import StackNetworks, network_edges, stack_networks


def docs(text: str) -> list[object]:
    return [yaml.safe_load(text)]


def test_names_as_docker_gives_them() -> None:
    nets = stack_networks(
        "voice",
        docs(
            """
networks:
  default: {}
  voice: {name: voice, attachable: true}
  internal:
  proxy: {external: true}
  old: {external: {name: legacy-net}}
  named: {external: true, name: edge}
"""
        ),
    )
    assert nets.makes == {"voice_default", "voice", "voice_internal"}
    assert nets.uses == {"proxy", "legacy-net", "edge"}


def test_a_user_waits_for_the_maker_only() -> None:
    stacks = {
        "voice": StackNetworks(makes=frozenset({"voice"})),
        "chat": StackNetworks(uses=frozenset({"voice"})),
        "web": StackNetworks(uses=frozenset({"proxy"})),  # made by nobody here
        "caddy": StackNetworks(makes=frozenset({"caddy_proxy"})),  # not the same name
    }
    assert network_edges(stacks) == {"chat": ("voice",)}


def test_networks_the_core_makes_order_nothing() -> None:
    stacks = {
        "voice": StackNetworks(makes=frozenset({"voice"})),
        "chat": StackNetworks(uses=frozenset({"voice"})),
    }
    assert network_edges(stacks, made_by_core=["voice"]) == {}


def test_a_maker_in_a_later_tier_is_no_edge() -> None:
    stacks = {
        "app": StackNetworks(makes=frozenset({"net"})),
        "infra": StackNetworks(uses=frozenset({"net"})),
    }
    assert network_edges(stacks, rank={"infra": 0, "app": 2}) == {}
    assert network_edges(stacks, rank={"infra": 2, "app": 0}) == {"infra": ("app",)}


def test_files_that_are_not_compose_documents_are_skipped() -> None:
    assert stack_networks("p", [None, "text", {"networks": ["a"]}]) == StackNetworks()
