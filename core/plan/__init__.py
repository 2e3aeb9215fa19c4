"""Plans and applies: the pure planner (:mod:`.planner`), its models (:mod:`.models`), the
canonical form of resources (:mod:`.canonical`), and the core's sync service (:mod:`.service`)."""
