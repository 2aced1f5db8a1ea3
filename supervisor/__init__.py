"""The kcm supervisor daemon: ``python -m supervisor`` (see docs/runtime.md)."""
