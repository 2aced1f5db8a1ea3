"""/metrics: Prometheus text format (api/services/metrics.py). Needs an unscoped viewer unless KCM_METRICS_PUBLIC=true."""
from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.services.metrics import CONTENT_TYPE, scrape

blp = Blueprint("metrics", __name__, description="Prometheus metrics")


@blp.route("/metrics")
class Metrics(MethodView):
    @requires(Role.VIEWER, unscoped=True)  # every consumer's figures: a key limited to some groups gets none
    @blp.doc(responses={200: {"description": "Prometheus text exposition format 0.0.4",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self):
        """Consumer lag (messages, seconds), health, throughput, replica states, supervisors, HTTP metrics"""
        kcm = services()
        return Response(scrape(kcm.engine, kcm.redis), mimetype=None, content_type=CONTENT_TYPE)
