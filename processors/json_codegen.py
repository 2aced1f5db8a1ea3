"""``json_transform``'s operations fused into one generated function per config: ``fuse(...) -> f(doc)``.

Interpreting the configured operations costs a few closure calls, loops and tuple unpackings per field per
message, ~35 % on top of the same operations written by hand (BENCHMARKS.md, json_transform step). ``fuse``
writes them out as one straight-line function when the step opens, the way ``dataclasses`` writes ``__init__``:
a rename is ``if K0 in d: d[K1] = d.pop(K0)``, a cast or a mask of ``customer.email`` reads ``customer`` once
and changes its fields in place.

**No configured text ever becomes code.** The source is built only from this module's own tokens: local names
(``d``, ``o1``, ``v``), the names of the namespace entries (``K0``..., ``F0``...) and Python syntax. Every field
name, constant and function is a namespace entry the code refers to by that generated name; a field named
``"]; import os #`` is the string in ``K3``, as inert as any other. The namespace has no builtins
(``__builtins__`` is empty), and ``tests/unit/test_json_codegen.py`` checks both. What the fused function
does is exactly what the closures of ``processors.json_ops`` do (the same unit tests run against it).
"""
from __future__ import annotations

_MISSING = object()
_INDENT = "    "


class _Source:
    """Lines of code and the namespace they refer to; ``const`` names a value without writing it."""

    def __init__(self):
        self.lines: list[str] = []
        self.namespace: dict[str, object] = {"__builtins__": {}, "MISSING": _MISSING, "dict": dict, "str": str,
                                             "ValueError": ValueError, "KeyError": KeyError}
        self._names: dict[int, str] = {}

    def const(self, value, prefix: str = "K") -> str:
        key = id(value) if prefix != "K" else None
        if key is not None and key in self._names:
            return self._names[key]
        name = f"{prefix}{len(self.namespace)}"
        self.namespace[name] = value
        if key is not None:
            self._names[key] = name
        return name

    def line(self, depth: int, text: str) -> None:
        self.lines.append(_INDENT * depth + text)


def _top_level(src: _Source, renames: tuple, drops: tuple, constants: dict) -> None:
    for source, target in renames:
        s, t = src.const(source), src.const(target)
        src.line(1, f"if {s} in d:")
        src.line(2, f"d[{t}] = d.pop({s})")
    for name in drops:
        src.line(1, f"d.pop({src.const(name)}, None)")
    if constants:
        src.line(1, f"d.update({src.const(dict(constants), 'C')})")


def _group(src: _Source, parents: tuple, casts: tuple, masks: tuple, mask) -> None:
    """One object's casts, then its masks, after walking to it (``parents``) once."""
    depth, obj = 1, "d"
    for level, part in enumerate(parents, 1):
        child = f"o{level}"
        src.line(depth, f"{child} = {obj}.get({src.const(part)})")
        src.line(depth, f"if {child}.__class__ is dict:")
        depth, obj = depth + 1, child
    for name, path, fast, slow in casts:
        k, f, s, p = src.const(name), src.const(fast, "T"), src.const(slow, "F"), src.const(path)
        src.line(depth, f"v = {obj}.get({k}, MISSING)")
        src.line(depth, "if v is not MISSING:")
        src.line(depth + 1, f"c = {f}.get(v.__class__)")
        src.line(depth + 1, "if c is None:")
        src.line(depth + 2, f"{obj}[{k}] = {s}(v, {p})")
        src.line(depth + 1, "else:")
        src.line(depth + 2, "try:")
        src.line(depth + 3, f"{obj}[{k}] = c(v)")
        src.line(depth + 2, "except (ValueError, KeyError):  # what the builtin refuses: the exact rule decides")
        src.line(depth + 3, f"{obj}[{k}] = {s}(v, {p})")
    hmac_mask = hasattr(mask, "text")
    if hmac_mask and masks:
        text_mask, value_mask = src.const(mask.text, "F"), src.const(mask.value, "F")
    for name in masks:
        k = src.const(name)
        if hmac_mask:
            src.line(depth, f"v = {obj}.get({k}, MISSING)")
            src.line(depth, "if v.__class__ is str:")
            src.line(depth + 1, f"{obj}[{k}] = {text_mask}(v)")
            src.line(depth, "elif v is not MISSING:")
            src.line(depth + 1, f"{obj}[{k}] = {value_mask}(v)")
        else:
            src.line(depth, f"if {k} in {obj}:")
            src.line(depth + 1, f"{obj}[{k}] = {src.const(mask.fixed, 'C')}")
    if depth == 1 and not casts and not masks:
        src.line(1, "pass")


def fuse(*, top: tuple | None, calls: list, groups: list, mask):
    """One function ``f(doc)`` doing, in order: the top-level renames, drops and constant adds ``top``
    (``(renames, drops, constants)``) inline, or else the ``calls`` (closures of the other renames, drops and
    adds) one after the other; then each group ``(parents, casts, masks)`` of casts and masks inline."""
    src = _Source()
    if top is not None:
        _top_level(src, *top)
    for call in calls:
        src.line(1, f"{src.const(call, 'F')}(d)")
    for parents, casts, masks in groups:
        _group(src, parents, casts, masks, mask)
    body = src.lines or [_INDENT + "pass"]
    code = "\n".join(["def transform(d):", *body, ""])
    exec(compile(code, "<json_transform>", "exec"), src.namespace)  # noqa: S102  (our tokens only: see above)
    transform = src.namespace["transform"]
    transform.source = code  # for tests and for a reader debugging a config
    return transform
