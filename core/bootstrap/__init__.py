"""``stackward bootstrap``: the first deployment on a manager, when no core runs yet.

``config`` reads the bootstrap's TOML file; ``steps`` runs it step by step through the manager's
periphery (swarm, secrets, infrastructure stacks through the core's own deploy service) and then
starts the core and hands over to its first sync; ``processes`` keeps the supervised processes
(periphery, core) where there is no systemd.
"""
