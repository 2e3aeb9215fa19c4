"""Image updates: Komodo's ``poll_for_updates``, ``auto_update``, ``auto_update_all_services`` and
``auto_update_skip_services`` on stacks.

``checker.UpdateChecker`` asks each stack's agent which images its services run (their repo
digests) and each image's registry for the current digest of its tag, on an interval and when
asked (``check_updates``: Komodo's ``GlobalAutoUpdate``).
"""
