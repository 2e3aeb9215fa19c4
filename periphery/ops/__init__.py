"""Deploy operations of the periphery agent, as plain async functions.

Each streams the output of what it runs through an ``emit(stream, line)`` callback
(:data:`periphery.process.Emit`; every program starts in :mod:`periphery.process`) and raises a
:mod:`periphery.exceptions` error that says what failed. Paths are confined by
:mod:`periphery.paths`. The channel commands wrap them.

- :func:`write.write_stack`: Komodo's ``write_stack``: the files (a git checkout at a fixed path,
  :mod:`checkout`; ``file_contents``; files on the host), the env file (:mod:`envfile`), the
  files that must exist, the registry login (:mod:`registry`).
- :mod:`commands`: ``pre_deploy`` / ``post_deploy`` as Komodo runs them, ``extra_args``.
- :func:`compose.compose_up` / :func:`compose.compose_down`: Compose projects (v2 or v1).
- :func:`swarm.swarm_deploy` / :func:`swarm.swarm_remove`: Swarm stacks.
- :func:`networks.ensure_networks`: external overlay networks the core may make.
- :func:`health.wait_swarm_healthy` / :func:`health.wait_compose_healthy`: health gates.
- :func:`swarm_init.ensure_swarm`: ``docker swarm init`` when the engine is in no swarm.
- :func:`secrets.list_secrets` / :func:`secrets.create_secret` / :func:`secrets.remove_secret`:
  swarm secrets (the value on stdin only).
- :func:`repo.sync_repo`: Komodo's Repo, a working clone at a path.
"""
