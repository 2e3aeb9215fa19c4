"""Komodo's ``write_stack`` (``stack/write.rs``) and what follows it before any command runs
(``validate_files`` and ``maybe_login_registry`` in ``stack/mod.rs``):

1. the compose files: a git stack is checked out at its fixed directory
   (:mod:`periphery.ops.checkout`); a ``file_contents`` stack's contents are written to
   ``ROOT/<target>/`` joined with its first file path (``compose.yaml`` by default); a
   ``files_on_host`` stack's files are where its run directory says;
2. the env file: the run directory joined with ``env_file_path``
   (:func:`periphery.ops.envfile.write_env_file`);
3. every file the stack depends on must exist (compose files, tracked env files, config files),
   else the deploy stops naming the missing ones;
4. ``docker login`` when the stack names a registry account (:mod:`periphery.ops.registry`).
"""

from __future__ import annotations

from pathlib import Path

from periphery.exceptions import DeployError
from periphery.ops import checkout, registry
from periphery.ops.envfile import write_env_file, write_private
from periphery.paths import StackPaths, stack_paths
from periphery.process import Emit, note
from protocol.messages import Checkout, CheckoutReport, StackSource


def missing_files(paths: StackPaths, files: list[str]) -> list[str]:
    """Komodo's ``validate_files``: the ones of ``files`` (from the run directory) not there."""
    return [f for f in files if not paths.resolve(f, what="file").exists()]


async def write_stack(root: Path, command: Checkout, emit: Emit) -> CheckoutReport:
    """Steps 1 to 4 above; the report names the commit, the stack's directory, where it runs
    and the env file to pass on. Raises a :class:`~periphery.exceptions.PeripheryError`."""
    commit = ""
    match command.source:
        case StackSource.GIT:
            _, commit = await checkout.checkout(
                root,
                command.repo_url,
                command.commit,
                command.target,
                emit,
                command.credentials,
            )
        case StackSource.FILE_CONTENTS:
            if not command.file_contents.strip():
                raise DeployError(
                    "Must either input compose file contents directly, or use files on host /"
                    " git repo options."
                )
    paths = stack_paths(root, command.target, command.source, command.run_directory)
    if command.source is StackSource.FILE_CONTENTS:
        paths.directory.mkdir(parents=True, exist_ok=True)
        name = command.file_paths[0] if command.file_paths else "compose.yaml"
        path = paths.resolve(name, base=paths.directory, what="file_paths")
        write_private(path, command.file_contents)
        await note(emit, f"compose file written to {path}")
    env_file = ""
    if command.env_file_path:
        location = paths.resolve(command.env_file_path, what="env_file_path")
        if write_env_file(location, command.env_file):
            env_file = command.env_file_path
            if command.env_file:
                await note(emit, f"environment file written to {location}")
    missing = missing_files(paths, list(command.required_files))
    if missing:
        raise DeployError(
            f"Missing files: {', '.join(missing)} (in {paths.run_directory}); ensure the"
            " run_directory and all file paths are correct"
        )
    if command.registry is not None:
        await registry.docker_login(command.registry, emit)
    return CheckoutReport(
        commit=commit,
        path=str(paths.directory),
        env_file=env_file,
        run_directory=str(paths.run_directory),
    )
