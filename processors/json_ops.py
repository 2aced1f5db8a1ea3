"""The operations of ``json_transform`` on a parsed JSON object, and the JSON codec it uses (standard library).

``compile_operations(config)`` turns the config into the operations, applied in the fixed order rename, drop,
add, cast, mask: by default one function written out for the config by ``processors.json_codegen`` (no call, loop
or dispatch per configured field); with ``fused=False`` the closures it is tested against, where consecutive
operations of one kind on fields of one object are merged into one closure (``drop: [a, b]`` is one loop,
constant ``add``s one ``dict.update``). ``transformer(ops)`` is ``value bytes -> value bytes``; everything it cannot do
raises a ``ValueError`` (``Refused`` names the field and the types, never the value).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from itertools import groupby

from processors.json_codegen import fuse

_MISSING = object()


class Refused(ValueError):
    """A value the configured operations cannot handle (a message without the value in it)."""


def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _kind(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(value.__class__, value.__class__.__name__)


def _walk(doc: dict, parents: tuple[str, ...]):
    """The object at ``parents`` (``doc`` itself for ``()``), or None when it is not there."""
    for part in parents:
        doc = doc.get(part)
        if doc.__class__ is not dict:
            return None
    return doc


def _make(doc: dict, parts: tuple[str, ...]) -> dict:
    """The object holding the last part, created on the way; a non-object on the way is refused."""
    for i, part in enumerate(parts[:-1]):
        child = doc.get(part, _MISSING)
        if child is _MISSING:
            child = doc[part] = {}
        elif child.__class__ is not dict:
            raise Refused(f"cannot set {'.'.join(parts)}: {'.'.join(parts[:i + 1])} is a {_kind(child)}, "
                          "not an object")
        doc = child
    return doc


def _on(parents: tuple[str, ...], change):
    """``change(obj)`` on the object at ``parents``, when it is there."""
    if not parents:
        return change
    if len(parents) == 1:
        first = parents[0]

        def on_child(doc: dict) -> None:
            obj = doc.get(first)
            if obj.__class__ is dict:
                change(obj)
        return on_child
    if len(parents) == 2:
        first, second = parents

        def on_grandchild(doc: dict) -> None:
            obj = doc.get(first)
            if obj.__class__ is dict:
                obj = obj.get(second)
                if obj.__class__ is dict:
                    change(obj)
        return on_grandchild

    def on_descendant(doc: dict) -> None:
        obj = _walk(doc, parents)
        if obj is not None:
            change(obj)
    return on_descendant


# ---------------------------------------------------------------------- the operations
def _renames(pairs: list[tuple[str, str]]) -> list:
    ops = []
    for top, group in groupby(pairs, key=lambda pair: "." not in pair[0] and "." not in pair[1]):
        group = tuple(group)
        if top:
            def rename_top(doc: dict, group=group) -> None:
                for source, target in group:
                    if source in doc:
                        doc[target] = doc.pop(source)
            ops.append(rename_top)
            continue
        for source, target in group:
            ops.append(_rename(_parts(source), _parts(target)))
    return ops


def _top_level(renames: tuple, drops: tuple, constants: dict):
    """rename, drop and add when every one names a top-level field (the common case): one call a message."""
    def top_level(doc: dict) -> None:
        for source, target in renames:
            if source in doc:
                doc[target] = doc.pop(source)
        pop = doc.pop
        for name in drops:
            pop(name, None)
        if constants:
            doc.update(constants)
    return top_level


def _rename(src: tuple[str, ...], dst: tuple[str, ...]):
    def rename(doc: dict) -> None:
        parent = _walk(doc, src[:-1])
        if parent is None or src[-1] not in parent:
            return
        value = parent.pop(src[-1])
        _make(doc, dst)[dst[-1]] = value
    return rename


def _drops(paths: list[str]) -> list:
    ops = []
    for parents, group in groupby(map(_parts, paths), key=lambda parts: parts[:-1]):
        names = tuple(parts[-1] for parts in group)

        def drop(obj: dict, names=names) -> None:
            pop = obj.pop
            for name in names:
                pop(name, None)
        ops.append(_on(parents, drop))
    return ops


def _adds(values: dict) -> list:
    ops = []
    items = [(_parts(path), value, json.dumps(value), isinstance(value, (dict, list))) for path, value in values.items()]
    for constant_top, group in groupby(items, key=lambda item: len(item[0]) == 1 and not item[3]):
        group = tuple(group)
        if constant_top:
            constants = {parts[0]: value for parts, value, _text, _fresh in group}
            ops.append(lambda doc, constants=constants: doc.update(constants))
            continue
        for parts, value, text, fresh in group:
            def add(doc: dict, parts=parts, value=value, text=text, fresh=fresh) -> None:
                # a container is built anew per message: nothing is shared between messages
                _make(doc, parts)[parts[-1]] = json.loads(text) if fresh else value
            ops.append(add)
    return ops


def _replace_groups(casts: list[tuple[str, str]], masks: list[str]) -> list[tuple[tuple, tuple, tuple]]:
    """Casts (``(path, kind)``) then masks, grouped by the object they change: ``(parents, casts, masks)``
    with ``casts`` as ``(name, path, FAST_CASTS[kind], CASTERS[kind])`` and ``masks`` as names. A field that is
    there (null included) is cast by a builtin for its input type or, when there is none or it refuses, by the
    exact rule that also raises the error; then masked. Casts run before masks, so a mask of a cast field masks
    the cast value."""
    items = [(_parts(path), "cast", path, kind) for path, kind in casts]
    items += [(_parts(path), "mask", path, None) for path in masks]
    whole = {item[0] for item in items}
    if not any(item[0][:k] in whole for item in items for k in range(1, len(item[0]))):
        # no field inside another: one object's fields can go together (stable: casts stay before masks)
        items.sort(key=lambda item: item[0][:-1])
    groups = []
    for parents, group in groupby(items, key=lambda item: item[0][:-1]):
        group = tuple(group)
        groups.append((parents,
                       tuple((parts[-1], path, FAST_CASTS[kind], CASTERS[kind])
                             for parts, what, path, kind in group if what == "cast"),
                       tuple(parts[-1] for parts, what, _path, _kind in group if what == "mask")))
    return groups


def _replaces(casts: list[tuple[str, str]], masks: list[str], mask) -> list:
    """The groups of ``_replace_groups`` as closures (``compile_operations(..., fused=False)``)."""
    return [_on(parents, _replace_group(cast_fields, mask_names, mask))
            for parents, cast_fields, mask_names in _replace_groups(casts, masks)]


def _replace_group(casts: tuple, masks: tuple, mask):
    """One object's casts, then its masks: loops specialised by kind (no per-field dispatch)."""
    fixed = mask.fixed if masks and isinstance(mask, FixedMask) else _MISSING
    text_mask = mask.text if masks and isinstance(mask, HmacMask) else None
    other_mask = mask.value if text_mask is not None else None

    def replace(obj: dict) -> None:
        get = obj.get
        for name, path, fast, slow in casts:
            value = get(name, _MISSING)
            if value is _MISSING:
                continue
            convert = fast.get(value.__class__)
            if convert is not None:
                try:
                    obj[name] = convert(value)
                    continue
                except (ValueError, KeyError):
                    pass
            obj[name] = slow(value, path)
        if text_mask is not None:
            for name in masks:
                value = get(name, _MISSING)
                if value.__class__ is str:
                    obj[name] = text_mask(value)
                elif value is not _MISSING:
                    obj[name] = other_mask(value)
        elif fixed is not _MISSING:
            for name in masks:
                if name in obj:
                    obj[name] = fixed
    return replace


# ---------------------------------------------------------------------- casts and masks
def _to_int(value, path):
    kind = value.__class__
    if kind is int or value is None:
        return value
    if kind is str:
        try:
            return int(value)
        except ValueError:
            number = _float_text(value)
            if number is not None and number.is_integer():
                return int(number)
    elif kind is bool:
        return int(value)
    elif kind is float and value.is_integer():
        return int(value)
    raise Refused(f"field {path}: a {_kind(value)} that is not a whole number cannot be cast to int")


def _float_text(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number - number == 0 else None  # not nan, inf or -inf


def _to_float(value, path):
    kind = value.__class__
    if kind is str:
        number = _float_text(value)
        if number is not None:
            return number
    elif kind is float or value is None:
        return value
    elif kind is int or kind is bool:
        return float(value)
    raise Refused(f"field {path}: a {_kind(value)} that is not a finite number cannot be cast to float")


def _to_str(value, path):
    kind = value.__class__
    if kind is str or value is None:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _to_bool(value, path):
    kind = value.__class__
    if kind is str:
        verdict = _BOOL_TEXT.get(value)
        if verdict is None:
            verdict = _BOOL_TEXT.get(value.strip().lower())
        if verdict is not None:
            return verdict
    elif kind is bool or value is None:
        return value
    elif kind is int or kind is float:
        return value != 0
    raise Refused(f"field {path}: a {_kind(value)} cannot be cast to bool (true/false/1/0/yes/no/on/off)")


_BOOL_TEXT = {**dict.fromkeys(("true", "1", "yes", "on"), True), **dict.fromkeys(("false", "0", "no", "off"), False)}
CASTERS = {"int": _to_int, "float": _to_float, "str": _to_str, "bool": _to_bool}
# builtins for the common input types, tried first; what they refuse (ValueError, KeyError) goes to CASTERS.
# float("nan") passes here and is refused by the encoder (JSON has no NaN): still a poison message.
FAST_CASTS = {
    "int": {str: int, bool: int, int: int},
    "float": {str: float, int: float, bool: float, float: float},
    "str": {str: str, int: repr, float: repr},
    "bool": {str: _BOOL_TEXT.__getitem__, bool: bool, int: bool, float: bool},
}


class FixedMask:
    """``mask_with: fixed``: every masked field becomes ``fixed`` (a JSON value)."""

    def __init__(self, fixed):
        self.fixed = fixed


class HmacMask:
    """``mask_with: hmac_sha256``: the hex HMAC-SHA256 of the value's text under the key (keyed once; each
    value costs a copy of the keyed state). A string is masked as its UTF-8 text, any other JSON value as its
    compact, key-sorted JSON text."""

    def __init__(self, key: bytes):
        copy = hmac.new(key, digestmod=hashlib.sha256).copy

        def text(value: str) -> str:
            digest = copy()
            try:
                data = value.encode()
            except UnicodeEncodeError:  # a lone surrogate (JSON's \ud800): masked as WTF-8, never refused
                data = value.encode("utf-8", "surrogatepass")
            digest.update(data)
            return digest.hexdigest()
        self.text = text

    def value(self, value) -> str:
        return self.text(value if value.__class__ is str else json.dumps(value, separators=(",", ":"),
                                                                         sort_keys=True, ensure_ascii=False))


def compile_operations(config: dict, hmac_key: bytes | None = None, *, fused: bool = True) -> list:
    """The configured operations, in their fixed order, as functions that change a parsed object in place:
    one generated function (``processors.json_codegen``), or with ``fused=False`` the closures it is checked
    against."""
    renames, drops, adds = list(config.get("rename", {}).items()), config.get("drop", []), config.get("add", {})
    top = None
    if all("." not in path for path in [*(p for pair in renames for p in pair), *drops, *adds]) and \
            not any(isinstance(value, (dict, list)) for value in adds.values()):
        if renames or drops or adds:
            top = (tuple(renames), tuple(drops), dict(adds))
        calls = []
    else:
        calls = [*_renames(renames), *_drops(drops), *_adds(adds)]
    mask = HmacMask(hmac_key or b"") if config.get("mask_with", "fixed") == "hmac_sha256" else \
        FixedMask(config.get("mask_value", "***"))
    casts, masks = list(config.get("cast", {}).items()), list(config.get("mask", []))
    if fused:
        if top is None and not calls and not casts and not masks:
            return []
        return [fuse(top=top, calls=calls, groups=_replace_groups(casts, masks), mask=mask)]
    ops = [_top_level(*top)] if top is not None else calls
    return ops + _replaces(casts, masks, mask)


# ---------------------------------------------------------------------- the JSON codec
def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_no_constant)
_scan = _decoder.scan_once
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False)
try:  # the C encoder built once: JSONEncoder.encode builds it again for every call (~1 µs a message)
    _c_encode = json.encoder.c_make_encoder(None, _encoder.default, json.encoder.encode_basestring, None, ":", ",",
                                            False, False, False)
except (AttributeError, TypeError):  # another Python: the public path
    _c_encode = None


def _decode(text: str):
    """``json.loads`` without its per-call setup; every error goes through it, for its message."""
    try:
        doc, end = _scan(text, 0)
    except (StopIteration, ValueError):
        return _decoder.decode(text)  # raises the JSONDecodeError (or accepts leading whitespace)
    if end != len(text):
        return _decoder.decode(text)
    return doc


def loads(raw: bytes):
    """A UTF-8 JSON value, strictly (no NaN/Infinity): the one JSON reading of the steps."""
    return _decode(raw.decode("utf-8"))


def _encode(doc) -> str:
    if _c_encode is None or doc.__class__ is not dict:
        return _encoder.encode(doc)
    return "".join(_c_encode(doc, 0))


def transformer(ops: list):
    """``value bytes -> transformed value bytes``; raises ``ValueError`` (``Refused``) for what cannot be."""
    def apply(raw: bytes) -> bytes:
        doc = _decode(raw.decode("utf-8"))
        if ops:
            if doc.__class__ is not dict:
                raise Refused(f"the value is a JSON {_kind(doc)}, not an object")
            for op in ops:
                op(doc)
        return _encode(doc).encode("utf-8")
    return apply


class Failed(Exception):
    """``message`` could not be transformed: ``error`` says why (a ``ValueError`` or ``RecursionError``)."""

    def __init__(self, message, error: Exception):
        super().__init__(str(error))
        self.message, self.error = message, error


def batch_transformer(ops: list):
    """``messages -> their transformed values`` (None for a tombstone), ``transformer`` inlined into one loop
    for the hot path; raises ``Failed`` naming the first message that cannot be transformed."""
    scan, decode, c_encode, encode = _scan, _decoder.decode, _c_encode, _encoder.encode

    def transform_values(batch) -> list:
        values = []
        append = values.append
        for m in batch:
            raw = m.value()
            if raw is None:
                append(None)
                continue
            try:
                text = raw.decode("utf-8")
                try:
                    doc, end = scan(text, 0)
                except (StopIteration, ValueError):
                    doc, end = decode(text), -1  # raises the JSONDecodeError, or takes leading whitespace
                if end != len(text) and end != -1:
                    doc = decode(text)
                if ops:
                    if doc.__class__ is not dict:
                        raise Refused(f"the value is a JSON {_kind(doc)}, not an object")
                    for op in ops:
                        op(doc)
                append(("".join(c_encode(doc, 0)) if c_encode is not None and doc.__class__ is dict
                        else encode(doc)).encode("utf-8"))
            except (ValueError, RecursionError) as exc:  # JSON, UTF-8 and cast errors are ValueErrors
                raise Failed(m, exc) from None
        return values
    return transform_values
