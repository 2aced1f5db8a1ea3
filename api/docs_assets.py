"""Swagger UI (``/docs``) and ReDoc (``/redoc``) load their scripts and styles from kcm, never from a CDN: the
files are vendored in ``api/static/`` (its README.md names each file's package, version, licence and sha256)
and the API's static route serves them at ``/docs-assets/``, public like the pages (api/auth/declarations.py).

flask-smorest writes ``OPENAPI_SWAGGER_UI_URL`` and ``OPENAPI_REDOC_URL`` into its pages as given, so they are
``UnderScriptRoot`` paths: rendered under the request's script root, as ``url_for`` renders the pages' link to
openapi.json, so the pages keep working behind a proxy that mounts kcm under a prefix (api/transport.py).
"""
from __future__ import annotations

from pathlib import Path

from api.auth.declarations import DOCS_ASSETS_PATH

FOLDER = Path(__file__).resolve().parent / "static"
# flask-smorest's swagger_ui.html names these three under OPENAPI_SWAGGER_UI_URL; redoc.html names the one URL
SWAGGER_UI_ASSETS = ("swagger-ui.css", "swagger-ui-standalone-preset.js", "swagger-ui-bundle.js")
REDOC_ASSET = "redoc.standalone.js"
DOCS_ENDPOINTS = frozenset({"api-docs.openapi_swagger_ui", "api-docs.openapi_redoc"})
# images and requests only to kcm: ReDoc 2.x's sidebar logo would come from cdn.redoc.ly (static/README.md)
DOCS_CONTENT_SECURITY_POLICY = "img-src 'self' data:; connect-src 'self'"


class UnderScriptRoot:
    """A path of this app, written into a page under the request's script root (``X-Forwarded-Prefix``)."""

    def __init__(self, path: str):
        self.path = path

    def __str__(self) -> str:
        from flask import has_request_context, request

        return (request.script_root if has_request_context() else "") + self.path

    def __html__(self) -> str:  # Jinja's autoescape asks for this: the prefix comes from a request header
        from markupsafe import escape

        return str(escape(str(self)))

    def __repr__(self) -> str:
        return f"UnderScriptRoot({self.path!r})"


# OPENAPI_SWAGGER_UI_URL and OPENAPI_REDOC_URL (api/__init__.py)
SWAGGER_UI_URL = UnderScriptRoot(f"{DOCS_ASSETS_PATH}/")
REDOC_URL = UnderScriptRoot(f"{DOCS_ASSETS_PATH}/{REDOC_ASSET}")


def static_route() -> dict:
    """The Flask app's static route: the vendored files at /docs-assets/<filename>."""
    return {"static_folder": str(FOLDER), "static_url_path": DOCS_ASSETS_PATH}


def install_docs_policy(app) -> None:
    """The docs pages' Content-Security-Policy (their inline Swagger UI start-up script stays allowed)."""
    from flask import request

    @app.after_request
    def _docs_policy(response):
        if request.endpoint in DOCS_ENDPOINTS:
            response.headers.setdefault("Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY)
        return response
