"""The dashboard's Flask app: session cookie, CSRF protection (Flask-WTF), the guard, the pages, error pages."""
from __future__ import annotations

import logging
from http import HTTPStatus
from pathlib import Path

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from api.context import EXTENSION
from api.services.errors import ServiceError
from api.transport import install_transport
from api.ui import session as ui_session
from api.ui.guard import install_guard

log = logging.getLogger("kcm.api.ui")
HERE = Path(__file__).resolve().parent
NO_SECRET_WARNING = ("KCM_UI_SECRET_KEY is not set: the dashboard signs its sessions with a random key of this "
                     "process, so a sign-in lasts until the process ends and holds in this process only")
# the pages load only their own scripts and styles; htmx is told not to inject its indicator style (base.html)
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def render_error(code: int, message: str) -> str:
    return render_template("error.html", code=code, phrase=HTTPStatus(code).phrase, message=message)


def create_dashboard(kcm, settings) -> Flask:
    app = Flask("api.ui", root_path=str(HERE), static_folder="static", template_folder="templates")
    secret, configured = ui_session.session_secret(settings)
    if not configured:
        log.warning(NO_SECRET_WARNING)
    ui_session.configure(app, secret)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_content_length,
                      WTF_CSRF_TIME_LIMIT=None)  # a form's token lives as long as the signed-in session
    app.extensions[EXTENSION] = kcm  # api.context.services() inside the dashboard too
    app.extensions["kcm.ui.principals"] = install_guard(app, kcm, settings, render_error)  # before CSRF: 401/403 first
    CSRFProtect(app)

    from api.ui import forms  # noqa: F401  (registers the forms on the pages' blueprint)
    from api.ui.pages import blp

    app.register_blueprint(blp)
    install_transport(app, settings)  # HSTS over HTTPS, X-Forwarded-* from KCM_TRUSTED_PROXIES only
    _register_error_pages(app)

    @app.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")  # pages show live state and a user's rights
        return response

    return app


def _register_error_pages(app: Flask) -> None:
    def service_error(error: ServiceError):
        return render_error(error.status_code, error.message), error.status_code

    def csrf_error(error: CSRFError):
        return render_error(400, f"The form was refused: {error.description} Reload the page and try again."), 400

    def http_error(error: HTTPException):
        return render_error(error.code or 500, error.description or ""), error.code or 500

    def unexpected(error: Exception):
        log.exception("unhandled error while serving a dashboard page")
        return render_error(500, "Internal server error; the details are in the server log."), 500

    app.register_error_handler(ServiceError, service_error)
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)
