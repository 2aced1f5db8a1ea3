"""The bare loop for the steps benchmarks: ``python -m bench.bare_transform '<job json>'``.

``bench.bare``'s loop and consumer settings, with a sink that does in plain Python what the benchmark's
``json_transform`` config does (parse, rename, drop, add, cast, mask, compact re-serialise) and then writes the
lines as ``bench.bare.FileSink`` does (one write + fsync per batch). ``transformer(mask_key())`` is also what the
benchmark checks kcm's output against, byte for byte, before it measures anything. The mask is the HMAC one a
real deployment would configure, keyed by ``KCM_SECRET_BENCH_MASK_KEY``: a random value the harness sets for the
run (``bench.stack.set_bench_secrets``), which this loop inherits and ``BenchEnv.kcm_environ`` passes to kcm.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys

from bench import bare
from bench.stack import MASK_KEY_ENV

# the json_transform config both sides apply
CONFIG = {
    "rename": {"ts": "created_at", "cust": "customer"},
    "drop": ["debug", "internal"],
    "add": {"source": "kcm", "schema_version": 2},
    "cast": {"amount": "float", "qty": "int", "customer.id": "str", "gift": "bool"},
    "mask": ["customer.email", "customer.phone", "customer.name", "customer.address.street"],
    "mask_with": "hmac_sha256",
    "mask_key": f"${{env:{MASK_KEY_ENV}}}",
}

# the JSON calls json_transform makes (the C scanner and a C encoder built once, not per call as json.loads and
# json.dumps do), so the ratio measures kcm's own overhead, not a faster JSON path on one side
_scan = json.JSONDecoder().scan_once
_c_encode = json.encoder.c_make_encoder(None, None, json.encoder.encode_basestring, None, ":", ",", False, False,
                                        False)


def _loads(raw: bytes):
    text = raw.decode("utf-8")
    doc, end = _scan(text, 0)
    return doc if end == len(text) else json.loads(text)


def _dumps(doc) -> str:
    return "".join(_c_encode(doc, 0))


def mask_key() -> bytes:
    key = os.environ.get(MASK_KEY_ENV)
    if not key:
        raise RuntimeError(f"{MASK_KEY_ENV} is not set: the harness sets it (bench.stack.set_bench_secrets)")
    return key.encode()


def transformer(key: bytes):
    """CONFIG written out by hand, the way a user's own consumer would do it; the HMAC keyed once, as kcm's is."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def mask(text: str) -> str:
        digest = keyed.copy()
        digest.update(text.encode())
        return digest.hexdigest()

    def transform(raw: bytes) -> bytes:
        d = _loads(raw)
        d["created_at"] = d.pop("ts")
        d["customer"] = customer = d.pop("cust")
        d.pop("debug", None)
        d.pop("internal", None)
        d["source"] = "kcm"
        d["schema_version"] = 2
        d["amount"] = float(d["amount"])
        d["qty"] = int(d["qty"])
        customer["id"] = str(customer["id"])
        d["gift"] = d["gift"].lower() in ("true", "1", "yes", "on")
        customer["email"] = mask(customer["email"])
        customer["phone"] = mask(customer["phone"])
        customer["name"] = mask(customer["name"])
        address = customer["address"]
        address["street"] = mask(address["street"])
        return _dumps(d).encode()
    return transform


def order_value(i: int) -> bytes:
    """A realistic order event whose transformed form has the same length for every ``i`` (the file observer
    counts lines by size)."""
    n = 1_000_000_000 + i
    return json.dumps({
        "order_id": f"ord-{n}", "ts": "2026-12-02T03:00:00.000Z", "status": "paid",
        "cust": {"id": n, "email": f"customer{n}@example.com", "phone": f"+4915{n}", "name": "Erika Mustermann",
                 "address": {"street": "Hauptstrasse 1", "city": "Berlin", "zip": "10115", "country": "DE"}},
        "items": [{"sku": f"SKU-{n % 10_000:04d}-{k}", "qty": 1 + k, "price": 19.99 + k} for k in range(5)],
        "amount": f"{10_000 + i % 90_000}.25", "qty": str(10 + i % 90), "currency": "EUR", "gift": "no",
        "debug": {"host": "web-1", "trace": f"{n:x}", "span": n}, "internal": True,
    }).encode()


class TransformFileSink(bare.FileSink):
    def __init__(self, job: dict):
        super().__init__(job)
        self.transform = transformer(mask_key())

    def write(self, batch) -> None:
        transform = self.transform
        view = memoryview(b"\n".join([transform(m.value()) for m in batch]) + b"\n")
        while view:
            view = view[os.write(self.fd, view):]
        if self.fsync:
            os.fsync(self.fd)


bare.SINKS["transform_file"] = TransformFileSink

if __name__ == "__main__":
    sys.exit(bare.main(sys.argv[1:]))
