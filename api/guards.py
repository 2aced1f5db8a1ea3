"""Checks every request passes before a view runs: body size (413), JSON only (415), well-formed JSON (400),
and no value the database cannot store (NUL characters, NaN/Infinity) -> 422 instead of a database error."""
from __future__ import annotations

import math

from flask import Flask, request
from flask_smorest import abort
from werkzeug.exceptions import BadRequest

BODY_METHODS = {"POST", "PUT", "PATCH"}


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _unstorable(value, path: str = "") -> tuple[str, str] | None:
    """The first (path, reason) of a value PostgreSQL text/JSONB would reject, or None."""
    if isinstance(value, str):
        return (path, "NUL characters (\\u0000) are not allowed.") if "\x00" in value else None
    if isinstance(value, float) and not math.isfinite(value):
        return path, "NaN and Infinity are not valid JSON numbers."
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        problem = _unstorable(key, where) if isinstance(key, str) else None
        problem = problem or _unstorable(item, where)
        if problem:
            return problem
    return None


def check_request():
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            abort(422, message="Query parameters must not contain NUL characters.",
                  errors={"query": {name.replace("\x00", ""): ["NUL characters are not allowed."]}})
    if request.method not in BODY_METHODS or not _has_body():
        return
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        abort(413, message=f"The request body is larger than the {limit}-byte limit (KCM_MAX_CONTENT_LENGTH).")
    if not request.is_json:
        abort(415, message="Send the body as JSON with 'Content-Type: application/json'.")
    try:
        body = request.get_json()
    except BadRequest:
        abort(400, message="The body is not valid JSON.", errors={"json": ["Malformed JSON body."]})
    problem = _unstorable(body)
    if problem:
        path, reason = problem
        abort(422, message=f"Invalid value at '{path or '(body)'}': {reason}",
              errors={"json": {path or "_schema": [reason]}})


def install_request_guards(app: Flask) -> None:
    app.before_request(check_request)
