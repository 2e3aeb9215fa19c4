"""Komodo's automation, run by the core: procedures (their executions, in stages) and the
schedules that start them.

- :mod:`.executions`, :mod:`.patterns`, :mod:`.machine`, :mod:`.english`, :mod:`.schedule`:
  pure (what a procedure and a schedule mean);
- :mod:`.records`: their state in the core's SQLite store;
- :mod:`.runner`: runs procedures (one run of a procedure at a time) through :mod:`.steps`,
  which does each execution with the core's parts;
- :mod:`.scheduler`: fires the schedules, once per time, and reports the times missed while
  the core was down;
- :mod:`.backup` (BackupCoreDatabase) and :mod:`.keys` (RotateAllServerKeys).
"""
