"""The fused json_transform function (processors/json_codegen.py): it does exactly what the closures do, and no
configured text ever becomes code."""
from __future__ import annotations

import copy
import json
import re

import pytest

from processors.json_ops import compile_operations
from processors.json_transform import JsonTransformConfig

pytestmark = pytest.mark.unit

KEY = b"a key made up for the test"
DOCS = [
    {"ts": "2026", "cust": {"id": 7, "email": "a@b", "phone": None, "address": {"street": "x", "zip": 10115}},
     "amount": "12.5", "qty": "3", "gift": "yes", "debug": {"x": 1}, "internal": True, "tags": ["a"]},
    {"amount": 1, "qty": 2.0, "gift": 0, "cust": {"id": "9", "email": {"nested": [1, 2]}}},
    {"amount": True, "qty": True, "gift": "OFF ", "customer": "not an object"},
    {"cust": ["not", "an", "object"], "amount": None},
    {"amount": "1e400"}, {"qty": "2.5"}, {"gift": "maybe"}, {"qty": [1]}, {},
    {"customer": {"email": "\ud800 lone surrogate"}},
]
CONFIGS = [
    {"rename": {"ts": "created_at", "cust": "customer"}, "drop": ["debug", "internal"],
     "add": {"source": "kcm", "schema_version": 2},
     "cast": {"amount": "float", "qty": "int", "customer.id": "str", "gift": "bool"},
     "mask": ["customer.email", "customer.phone", "customer.address.street"], "mask_with": "hmac_sha256"},
    {"cast": {"amount": "str", "qty": "float", "cust.address.zip": "str"}, "mask": ["cust.email", "tags"],
     "mask_value": {"masked": True}},
    {"rename": {"cust.email": "contact.email", "ts": "meta.ts"}, "drop": ["cust.address.zip", "debug"],
     "add": {"meta.source": "kcm", "nested": {"list": [1]}}, "cast": {"contact.email": "str"},
     "mask": ["contact.email"]},
    {"cast": {"cust": "str", "cust.id": "int"}, "mask": ["cust", "cust.email"], "mask_with": "hmac_sha256"},
    {"mask": ["customer.email"], "mask_with": "hmac_sha256"},
    {"drop": ["amount"]},
    {},
]


def _ops(config: dict, fused: bool) -> list:
    loaded = JsonTransformConfig().load({**config, **({"mask_key": "${env:KCM_SECRET_X}"}
                                                       if config.get("mask_with") == "hmac_sha256" else {})})
    return compile_operations(loaded, KEY, fused=fused)


def _apply(ops: list, doc: dict):
    doc = copy.deepcopy(doc)
    try:
        for op in ops:
            op(doc)
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__, str(exc))
    return json.dumps(doc, sort_keys=True)


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_the_fused_function_does_what_the_closures_do(config):
    fused, closures = _ops(config, True), _ops(config, False)
    assert len(fused) <= 1
    for doc in DOCS:
        assert _apply(fused, doc) == _apply(closures, doc), doc


HOSTILE = ["]; __import__('os')('echo owned') #", "a'b\"c", "line\nbreak", "__class__", "d", "MISSING",
           "\\x00", "{0}", "é ü"]


def test_no_configured_text_becomes_code():
    config = JsonTransformConfig().load({
        "rename": {HOSTILE[0]: HOSTILE[1]}, "drop": [HOSTILE[2]], "add": {HOSTILE[3]: HOSTILE[4]},
        "cast": {f"{HOSTILE[5]}.{HOSTILE[6]}": "str", HOSTILE[7]: "int"},
        "mask": [HOSTILE[8]], "mask_value": "'); raise SystemExit('"})
    [fused] = compile_operations(config, None)
    source = fused.source
    for text in [*HOSTILE, "'); raise SystemExit('"]:
        if not re.fullmatch(r"\w+", text):  # a bare word may coincide with a generated name: checked below
            assert text not in source
    # only the module's own vocabulary: generated names, attribute calls it writes, Python keywords
    words = set(re.findall(r"[A-Za-z_]\w*", source))
    allowed = {"def", "transform", "d", "v", "c", "if", "in", "is", "not", "None", "elif", "else", "try", "except",
               "pop", "get", "update", "dict", "str", "MISSING", "ValueError", "KeyError", "__class__", "what",
               "the", "builtin", "refuses", "exact", "rule", "decides", "pass"}
    generated = {w for w in words if re.fullmatch(r"(?:[KCFT]\d+|o\d+)", w)}
    assert words - generated <= allowed, words - generated - allowed
    assert not re.search(r"['\"]", source.replace("# what the builtin refuses: the exact rule decides", ""))
    assert fused.__globals__["__builtins__"] == {}
    doc = {HOSTILE[0]: 1, HOSTILE[2]: 2, HOSTILE[5]: {HOSTILE[6]: 3}, HOSTILE[7]: "4", HOSTILE[8]: "secret"}
    fused(doc)
    assert doc == {HOSTILE[1]: 1, HOSTILE[3]: HOSTILE[4], HOSTILE[5]: {HOSTILE[6]: "3"}, HOSTILE[7]: 4,
                   HOSTILE[8]: "'); raise SystemExit('"}
