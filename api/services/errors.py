"""Errors the service layer raises; api.errors renders each as the uniform error body."""
from __future__ import annotations


class ServiceError(Exception):
    status_code = 500

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(ServiceError):
    status_code = 404


class Invalid(ServiceError):
    """A request that passed its schema but not a rule that needs the stored state (422)."""

    status_code = 422


class Unavailable(ServiceError):
    """A backing service (Redis, the database) cannot be reached or is not set up (503)."""

    status_code = 503
