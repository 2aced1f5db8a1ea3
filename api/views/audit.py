"""/audit/: the audit trail, newest first, paginated, filtered by target, principal, action, outcome and time."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.audit import AuditEventOut, AuditQuery

blp = Blueprint("audit", __name__, url_prefix="/audit", description="Audit trail (admin)")


@blp.route("/")
class AuditTrail(MethodView):
    @requires(Role.ADMIN, unscoped=True)
    @blp.arguments(AuditQuery, location="query")
    @blp.response(200, AuditEventOut(many=True))
    @blp.paginate()
    def get(self, filters, pagination_parameters):
        """Audit events (X-Pagination header): every mutating call, allowed or denied, and failed authentications"""
        events, total = services().audit.page(filters, pagination_parameters.first_item,
                                              pagination_parameters.page_size)
        pagination_parameters.item_count = total
        return events
