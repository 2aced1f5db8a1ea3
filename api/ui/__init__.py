"""kcm's web dashboard at ``/ui/`` (docs/dashboard.md): server-rendered pages over the API's service layer, live
through htmx partial refreshes, charts by uPlot, every asset vendored in ``static/vendor/`` (no CDN).

It is a Flask app of its own mounted in front of the API (``install_dashboard``), because it authenticates by a
session cookie where the API takes a bearer token; its guard (guard.py) applies the API's roles, scopes, rate
limits and audit to the session's principal, and every page and form declares its role with ``@requires``.
"""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

MOUNT = "/ui"


def install_dashboard(app: Flask, settings) -> Flask:
    """Serve the dashboard under ``/ui/`` of ``app`` (the API keeps every other path); returns the dashboard."""
    from api.context import EXTENSION
    from api.ui.app import create_dashboard

    dashboard = create_dashboard(app.extensions[EXTENSION], settings)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {MOUNT: dashboard})
    app.extensions["kcm.ui"] = dashboard
    return dashboard
