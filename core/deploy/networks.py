"""Which stacks wait for which, by the networks their compose files make and use.

A stack that declares a network ``external`` uses a network something else made; when another
stack of the same deploy makes it (declares it without ``external``), the user waits for the
maker, as if the resource file said ``after``. Komodo has no such ordering (a file says
``after`` by hand: "joins the voice network created by the voice stack", in the shared
corpus); stackward adds it, so a missing ``after`` no longer fails a deploy with "network ...
declared as external, but could not be found".

Names as Docker gives them: a network declared under key ``K`` of project ``P`` is ``P_K``
unless it has a ``name``; an external one is its ``name`` (or ``external: {name: ...}``), else
``K``. Networks the core makes itself (``external_networks``) order nothing.

:func:`stack_networks` and :func:`network_edges` are pure; :func:`network_after` reads the
stacks' compose files at their commits from the core's mirrors of their repositories.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import yaml

from core.config import CoreConfig
from core.dependency_graph import Graph, stack_graph
from core.deploy.stack import StackJob
from core.git import GitError, mirror_path, show_file, update_mirror
from core.resources.models import ResourceSet
from protocol.messages import StackSource

log = logging.getLogger(__name__)

READ_TIMEOUT = 20.0  # seconds to read the compose files of a run's stacks


@dataclass(frozen=True)
class StackNetworks:
    makes: frozenset[str] = frozenset()  # networks its files create
    uses: frozenset[str] = frozenset()  # networks its files declare external


def stack_networks(project: str, documents: Iterable[object]) -> StackNetworks:
    """The networks a stack's compose documents make and use, by Docker's names."""
    makes: set[str] = set()
    uses: set[str] = set()
    for doc in documents:
        declared = doc.get("networks") if isinstance(doc, dict) else None
        if not isinstance(declared, dict):
            continue
        for key, spec in declared.items():
            spec = spec if isinstance(spec, dict) else {}
            external = spec.get("external")
            if external is True or isinstance(external, dict):
                legacy = external.get("name") if isinstance(external, dict) else None
                uses.add(str(legacy or spec.get("name") or key))
            else:
                makes.add(str(spec.get("name") or f"{project}_{key}"))
    return StackNetworks(frozenset(makes), frozenset(uses))


def network_edges(
    stacks: Mapping[str, StackNetworks],
    made_by_core: Collection[str] = (),
    rank: Mapping[str, int] | None = None,
) -> dict[str, tuple[str, ...]]:
    """For each stack, the stacks that make a network it declares external (``after``
    edges to add). ``rank`` (a stack's tier position) drops an edge to a maker in a later
    tier: the tiers already say that order is wrong, and Docker's error will say why."""
    out: dict[str, tuple[str, ...]] = {}
    for name, nets in sorted(stacks.items()):
        makers = sorted(
            other
            for other, theirs in stacks.items()
            if other != name
            and (nets.uses - set(made_by_core)) & theirs.makes
            and (rank is None or rank.get(other, 0) <= rank.get(name, 0))
        )
        if makers:
            out[name] = tuple(makers)
    return out


def read_compose_documents(
    data_dir: str, job: StackJob, fetched: set[str] | None = None
) -> list[object]:
    """The compose documents of ``job`` (blocking: run it in a thread): its ``file_contents``,
    or its files at its commit from the core's mirror of its repository in
    ``data_dir/git/stacks`` (fetched once per URL in ``fetched``); files that are not there or
    not YAML are left out (the deploy will say what is wrong with them). Files on the host are
    not the core's to read: none."""
    if job.source is StackSource.FILE_CONTENTS:
        return _yaml([job.file_contents.encode()])
    if job.source is not StackSource.GIT or not job.repo_url or not job.commit:
        return []
    mirror = mirror_path(Path(data_dir) / "git" / "stacks", job.repo_url)
    if fetched is None or job.repo_url not in fetched:
        update_mirror(job.repo_url, mirror, job.credentials)
        if fetched is not None:
            fetched.add(job.repo_url)
    blobs = []
    for name in job.files:
        path = posixpath.normpath(posixpath.join(job.run_directory or ".", name))
        try:
            blobs.append(show_file(mirror, job.commit, path))
        except GitError as exc:
            log.debug("networks: %s at %s: %s", path, job.commit[:12], exc)
    return _yaml(blobs)


def _yaml(blobs: Iterable[bytes]) -> list[object]:
    out: list[object] = []
    for blob in blobs:
        try:
            out.append(yaml.safe_load(blob))
        except yaml.YAMLError:
            continue
    return out


async def network_after(
    jobs: Mapping[str, StackJob],
    data_dir: str,
    made_by_core: Collection[str] = (),
    rank: Mapping[str, int] | None = None,
    time_limit: float = READ_TIMEOUT,
) -> dict[str, tuple[str, ...]]:
    """The ``after`` edges the networks of ``jobs`` ask for (:func:`network_edges`). Reading
    the files has a deadline; what cannot be read in time, or at all, orders nothing (logged)."""
    stacks: dict[str, StackNetworks] = {}
    fetched: set[str] = set()
    with anyio.move_on_after(time_limit) as scope:
        for name, job in sorted(jobs.items()):
            try:
                docs = await anyio.to_thread.run_sync(
                    read_compose_documents, data_dir, job, fetched
                )
            except GitError as exc:
                log.warning("networks of stack %s not read: %s", name, exc)
                continue
            stacks[name] = stack_networks(job.docker_name, docs)
    if scope.cancelled_caught:
        log.warning("networks: the compose files took longer than %gs to read", time_limit)
    return network_edges(stacks, made_by_core, rank)


async def with_network_order(
    rs: ResourceSet, jobs: Mapping[str, StackJob], graph: Graph, config: CoreConfig
) -> Graph:
    """``graph`` with each stack also after the stacks that make a network it uses (the deploy
    graph takes these as ``after`` edges); ``graph`` itself when there are none, or when they
    would make a cycle (logged)."""
    rank = {t: i for i, t in enumerate(rs.tiers)}
    ranks = {s.name: rank.get(s.tier, 0) for s in rs.stacks()}
    extra = await network_after(jobs, config.data_dir, config.external_networks, ranks)
    if not extra:
        return graph
    names = {s.name for s in rs.stacks()}
    tiers = set(rs.tiers)
    after = [
        (
            s.name,
            s.tier if s.tier in tiers else "",
            [a for a in [*s.after, *extra.get(s.name, ())] if a in names],
            [w for w in s.wait_for if w in names],
        )
        for s in rs.stacks()
    ]
    wider = stack_graph(after, rs.tiers)
    try:
        wider.waves()
    except ValueError as exc:
        log.warning("network order left out: %s", exc)
        return graph
    for name, makers in sorted(extra.items()):
        log.info("stack %s waits for %s (the networks it uses)", name, ", ".join(makers))
    return wider
