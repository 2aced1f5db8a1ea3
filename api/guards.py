"""Checks every request passes before a view runs: body size (413), JSON only (415), well-formed JSON (400),
and no value the database cannot store (NUL characters, NaN/Infinity) -> 422 instead of a database error."""
from __future__ import annotations

import math

from flask import Flask, request
from flask_smorest import abort
from werkzeug.exceptions import BadRequest

BODY_METHODS = {"POST", "PUT", "PATCH"}
MAX_JSON_DEPTH = 64  # far beyond any real config; keeps validation and storage away from recursion limits


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _unstorable(value) -> tuple[str, str] | None:
    """The first (path, reason) of a value PostgreSQL text/JSONB would reject, or None. Iterative, with a
    depth limit: a deeply nested body must not exhaust the interpreter's stack."""
    stack = [("", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path, "NUL characters (\\u0000) are not allowed."
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "NaN and Infinity are not valid JSON numbers."
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                return path, f"Nested deeper than {MAX_JSON_DEPTH} levels."
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in reversed(list(pairs)):
                where = f"{path}.{key}" if path else str(key)
                stack.append((where, child, depth + 1))
                if isinstance(key, str):
                    stack.append((where, key, depth + 1))
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
    except RecursionError:  # the parser itself gave up on the nesting
        abort(400, message="The JSON body is nested too deeply.", errors={"json": ["Nested too deeply."]})
    problem = _unstorable(body)
    if problem:
        path, reason = problem
        abort(422, message=f"Invalid value at '{path or '(body)'}': {reason}",
              errors={"json": {path or "_schema": [reason]}})


def install_request_guards(app: Flask) -> None:
    app.before_request(check_request)
