"""``stackward host install``: put a periphery on a host over SSH, and pin its key.

- ``spec``: the target URL, the install's settings, and every text written on the host (the
  agent's config, the systemd unit, the supervisor, the install script) and printed for the core
  (the ``[[server]]`` block). Pure: no I/O, tested without a host.
- ``wheel``: a wheel of the running stackward, built in memory from its own source files.
- ``install``: the SSH session (asyncssh): host-key check, upload, run the script, read the key.
"""
