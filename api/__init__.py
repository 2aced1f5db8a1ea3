"""kcm's REST API: ``create_app()`` builds the Flask app (``gunicorn 'api:create_app()'``).

The API records desired state in the database and appends wake-up commands to a Redis stream; it never runs
Kafka consumers itself. It does not migrate the database: run ``python -m schema.migrate`` first.
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from schema.settings import Settings

if TYPE_CHECKING:  # Flask is imported by create_app: the kcm CLI (api.cli) loads this package without it
    from flask import Flask

API_TITLE = "kcm — Kafka Consumer Manager"
API_VERSION = "1.0.0"
VIEW_MODULES = ("consumers", "control", "status", "processors", "processor_types", "dead_letters", "api_keys",
                "audit", "health", "metrics", "supervisors", "errors", "versions",
                "validate", "offsets")


def _openapi_config(settings: Settings) -> dict:
    from api.docs_assets import REDOC_URL, SWAGGER_UI_URL

    return {
        "API_TITLE": API_TITLE,
        "API_VERSION": API_VERSION,
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        # the pages load the vendored files of api/static/ from /docs-assets/, no CDN (api/docs_assets.py)
        "OPENAPI_SWAGGER_UI_URL": SWAGGER_UI_URL,
        "OPENAPI_SWAGGER_UI_CONFIG": {"validatorUrl": None},  # no badge sending the document to swagger.io
        "OPENAPI_REDOC_PATH": "redoc",
        "OPENAPI_REDOC_URL": REDOC_URL,
        "MAX_CONTENT_LENGTH": settings.max_content_length,
        "API_SPEC_OPTIONS": {
            "info": {
                "description": "Create, run and watch Kafka consumers. Every error has the body "
                "{code, status, message, errors}. Paths work with and without the trailing slash."
            }
        },
    }


def _view_modules():
    for name in VIEW_MODULES:
        yield importlib.import_module(f"api.views.{name}")


def _add_slashless_aliases(app: Flask) -> None:
    """Serve ``/consumers`` like ``/consumers/`` (no redirect). An explicit alias rule, rather than
    strict_slashes alone, also makes a wrong method on the slash-less form a 405 instead of a 404."""
    for rule in list(app.url_map.iter_rules()):
        if rule.rule != "/" and rule.rule.endswith("/") and rule.endpoint != "static":
            # OPTIONS and HEAD stay automatic (naming OPTIONS would send it to the MethodView, which has none)
            methods = set(rule.methods or ()) - {"OPTIONS", "HEAD"}
            app.add_url_rule(rule.rule.rstrip("/"), endpoint=rule.endpoint, methods=methods)


def create_app(settings: Settings | None = None) -> Flask:
    from api.auth.guard import install_auth
    from api.context import EXTENSION, build_services
    from api.converters import install_converters, install_name_resolution
    from api.docs_assets import install_docs_policy, static_route
    from api.errors import Api, error_body, register_error_handlers
    from api.guards import install_request_guards
    from api.services.metrics import install_http_metrics
    from api.transport import install_transport
    from api.ui import install_dashboard

    settings = settings or Settings.from_env()
    logging.getLogger("kcm").setLevel(settings.log_level.upper())

    from flask import Flask

    app = Flask("kcm", **static_route())  # /docs-assets/: the docs pages' vendored files (api/static/)
    app.config.update(_openapi_config(settings))
    # both /consumers and /consumers/ serve the same view, without a redirect
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.extensions[EXTENSION] = build_services(settings)

    api = Api(app)
    install_converters(app, api)  # a consumer's id or name in every /consumers/{consumer_id}/ path
    for module in _view_modules():
        api.register_blueprint(module.blp)
    _add_slashless_aliases(app)
    # authentication and rate limits run before every other request check (docs/security.md)
    install_auth(app, api, settings, app.extensions[EXTENSION], error_body)
    install_name_resolution(app)  # after the guard: a name is resolved only for an authorized caller
    register_error_handlers(app)
    install_request_guards(app)
    install_transport(app, settings)  # HSTS over HTTPS; X-Forwarded-* only from KCM_TRUSTED_PROXIES
    install_http_metrics(app)  # docs/monitoring.md
    install_docs_policy(app)  # /docs and /redoc load images and data from kcm only
    install_dashboard(app, settings)  # /ui/, the web dashboard (docs/dashboard.md)
    return app
