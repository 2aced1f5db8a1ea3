"""A metric family written straight to Prometheus text (format 0.0.4), for the per-consumer series of /metrics.

prometheus_client's ``generate_latest`` validates and escapes every label name of every sample; with 500
consumers that is ~50,000 samples and most of a scrape's time (bench/metrics_scrape.py). A ``TextFamily`` has
the same ``add_metric(labels, value)`` as ``GaugeMetricFamily``/``CounterMetricFamily`` but formats each sample
once, through a template built per family, and renders byte for byte what ``generate_latest`` would (label names
sorted, ``floatToGoString`` values, ``_total`` on counters), so the two mix in one exposition.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.utils import floatToGoString

KINDS = ("gauge", "counter")
_COMMON = {0: "0.0", 1: "1.0"}  # the enum-style gauges are almost only these two values


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def value_text(value) -> str:
    common = _COMMON.get(value) if value.__class__ is int else None
    return common if common is not None else floatToGoString(value)


class TextFamily:
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = (), kind: str = "gauge"):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.name, self.documentation, self.type = name, documentation, kind
        self.sample_name = f"{name}_total" if kind == "counter" else name
        self._order = sorted(range(len(labels)), key=lambda i: labels[i])
        names = [labels[i] for i in self._order]
        inside = ",".join(f'{label}="%s"' for label in names)  # label names are identifiers: no "%" in them
        self._template = f"{self.sample_name}{{{inside}}} %s\n" if names else f"{self.sample_name} %s\n"
        self._label_names = names
        self._head = self.sample_name + "{" + "".join(f'{label}="%s",' for label in names[:-1])
        self._enum_tails: dict[tuple[str, ...], dict[str, tuple[str, str]]] = {}
        self.lines: list[str] = []

    def add_metric(self, labels: Sequence[str], value) -> None:
        escaped = [_escape(labels[i]) for i in self._order]
        self.lines.append(self._template % (*escaped, value_text(value)))

    def add_enum(self, labels: Sequence[str], options: Sequence[str], current: str | None) -> None:
        """One sample per option of the family's last label: 1 for ``current``, 0 for the others (a state
        set). ``labels``: the other labels' values. The same lines as ``add_metric`` per option, built faster."""
        tails = self._enum_tails.get(tuple(options))
        if tails is None:
            if self._order and self._order[-1] != len(self._order) - 1:
                raise ValueError("add_enum needs the enum label to be the last, in name order too")
            name = self._label_names[-1]
            tails = self._enum_tails[tuple(options)] = {
                option: (f'{name}="{_escape(option)}"}} 1.0\n', f'{name}="{_escape(option)}"}} 0.0\n')
                for option in options}
        head = self._head % tuple(_escape(labels[i]) for i in self._order[:-1])
        self.lines.extend(head + (one if option == current else zero) for option, (one, zero) in tails.items())

    def text(self) -> str:
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.sample_name} {doc}\n# TYPE {self.sample_name} {self.type}\n" + "".join(self.lines)


def render(families: Iterable) -> str:
    """TextFamily objects as text; any other prometheus_client family through ``generate_latest``."""
    from prometheus_client import generate_latest

    out = []
    for family in families:
        if isinstance(family, TextFamily):
            out.append(family.text())
        else:
            out.append(generate_latest(_One(family)).decode("utf-8"))
    return "".join(out)


class _One:
    def __init__(self, family):
        self.family = family

    def collect(self):
        return [self.family]
