"""One error body everywhere: ``{code, status, message, errors}``, and never a traceback for the client."""
from __future__ import annotations

import logging
from http import HTTPStatus

import flask_smorest
from flask import Flask
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from api.schemas.common import ErrorSchema
from api.services.errors import ServiceError

log = logging.getLogger("kcm.api")

MIGRATE_HINT = "run `python -m schema.migrate` (or `make migrate`) against KCM_DATABASE_URL"


def _string_keys(value):
    """marshmallow keys list items by int index and may mix in '_schema': JSON keys must all be strings
    (Flask sorts keys, and sorting 0 against '_schema' raises)."""
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_string_keys(v) for v in value]
    return value


def error_body(code: int, message: str | None = None, errors: dict | None = None) -> dict:
    status = HTTPStatus(code)
    return {
        "code": code,
        "status": status.phrase,
        "message": message or status.description or status.phrase,
        "errors": _string_keys(errors or {}),
    }


class Api(flask_smorest.Api):
    """flask-smorest's Api with every key of the error body always present."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        errors = data.get("errors", data.get("messages"))
        message = data.get("message")
        if message is None:
            message = (
                "The request is invalid: see errors for the messages per location and field."
                if error.code == 422 else error.description
            )
        headers = dict(data.get("headers") or {})
        return error_body(error.code, message, errors), error.code, headers


def _service_error(error: ServiceError):
    return error_body(error.status_code, error.message, error.errors), error.status_code


def _database_error(error: sa_exc.DBAPIError):
    text = str(getattr(error, "orig", error)).lower()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        log.error("the database has no kcm tables: %s", MIGRATE_HINT)
        return error_body(503, f"The database is not migrated: {MIGRATE_HINT}."), 503
    if isinstance(error, sa_exc.OperationalError):  # refused connection, server gone, database locked
        log.error("database unavailable: %s", type(error.orig).__name__)
        return error_body(503, "The database is unavailable; try again shortly."), 503
    return _unexpected(error)


def _unexpected(error: Exception):
    # the traceback goes to the log, the client gets the uniform body only
    log.exception("unhandled error while serving a request")
    return error_body(500, "Internal server error; the details are in the server log."), 500


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(sa_exc.DBAPIError, _database_error)
    app.register_error_handler(Exception, _unexpected)
