"""Deploy operations of the periphery agent, as plain async functions.

Each streams the output of what it runs through an ``emit(stream, line)`` callback
(:data:`periphery.ops.process.Emit`) and raises a :mod:`periphery.exceptions` error that says
what failed. The channel commands wrap them.

- :func:`checkout.checkout`: a repository at one commit under the root directory, switched in
  atomically; :func:`paths.run_paths` / :func:`paths.resolve_inside` confine every path.
- :func:`predeploy.run_pre_deploy`: the stack's ``pre_deploy.command``.
- :func:`compose.compose_up` / :func:`compose.compose_down`: Compose projects (v2 or v1).
- :func:`swarm.swarm_deploy` / :func:`swarm.swarm_remove`: Swarm stacks.
- :func:`health.wait_swarm_healthy` / :func:`health.wait_compose_healthy`: health gates.
- :func:`swarm_init.ensure_swarm`: ``docker swarm init`` when the engine is in no swarm.
- :func:`secrets.list_secrets` / :func:`secrets.create_secret` / :func:`secrets.remove_secret`:
  swarm secrets (the value on stdin only).
"""
