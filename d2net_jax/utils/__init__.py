"""The bottom layer: what every other layer may use and that knows nothing of them.

  atomic_write.py  files written to a temporary name and renamed: never half-written
  interrupts.py    Ctrl-C / SIGTERM never swallowed (deferred during imports, checked after)
  progress.py      progress bars on a terminal, plain lines elsewhere
  checks.py        `ConfigError` and the field checks methods and the schema share
"""
