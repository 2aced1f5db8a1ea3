"""One consumer replica per process: ``python -m workers`` (see docs/runtime.md)."""
