"""The API benchmark's floor: the same gunicorn serving a bare Flask view that returns fixed bytes (a page
kcm itself returned), so the ratio isolates kcm's own work per request (SQL, serialisation, Redis)."""
from __future__ import annotations

import os
from pathlib import Path

BODY_ENV = "KCM_BENCH_FLOOR_BODY"


def create_app():
    from flask import Flask, Response

    body = Path(os.environ[BODY_ENV]).read_bytes()
    app = Flask("kcm-bench-floor")
    app.url_map.strict_slashes = False

    @app.get("/consumers/")
    def listing():
        return Response(body, mimetype="application/json")

    return app
