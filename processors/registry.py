"""The processor registry (the seed's ProcessorFactory): types come from the ``kcm.processors`` entry points.

Built-ins are registered through the same group a third party uses, and a type's module is imported only when
a consumer names it.
"""
from __future__ import annotations

import difflib
from functools import cache, lru_cache
from importlib.metadata import EntryPoint, entry_points

from processors.base import BaseProcessor

GROUP = "kcm.processors"


class UnknownProcessorType(LookupError):
    def __init__(self, name: str, installed: list[str]):
        self.name = name
        self.installed = installed
        close = difflib.get_close_matches(name, installed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(
            f"unknown processor_type '{name}'. Installed: {', '.join(installed) or '(none)'}.{hint}"
        )


class ProcessorLoadError(ImportError):
    """An installed entry point that cannot be imported or is not a BaseProcessor subclass."""


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin in a running process)."""
    _entry_points.cache_clear()
    load.cache_clear()


def installed_names() -> list[str]:
    return sorted(_entry_points())


@cache
def load(name: str) -> type[BaseProcessor]:
    eps = _entry_points()
    if name not in eps:
        raise UnknownProcessorType(name, sorted(eps))
    try:
        cls = eps[name].load()
    except Exception as exc:
        raise ProcessorLoadError(f"processor_type '{name}' is installed but failed to import: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseProcessor)):
        raise ProcessorLoadError(f"processor_type '{name}' does not name a BaseProcessor subclass")
    return cls
