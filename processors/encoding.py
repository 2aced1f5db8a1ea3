"""Bytes in JSON: text when the bytes are UTF-8, base64 (flagged) otherwise — shared by the sinks."""
from __future__ import annotations

import base64


def text_or_b64(name: str, data: bytes | None) -> dict:
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {name: base64.b64encode(data).decode("ascii"), f"{name}_encoding": "base64"}


def headers_json(headers) -> list[dict] | None:
    return [{"key": k, **text_or_b64("value", v)} for k, v in headers] if headers else None
