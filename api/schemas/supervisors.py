"""GET /supervisors/: each live supervisor with the replica slots it leases (api/services/supervisors.py)."""
from __future__ import annotations

from marshmallow import Schema, fields

from api.schemas.monitoring import SupervisorOut


class SlotOut(Schema):
    consumer_id = fields.UUID(required=True)
    name = fields.String(allow_none=True)
    replica = fields.Integer(required=True)
    epoch = fields.Integer(required=True, metadata={"description": "The lease's fencing token: +1 on every claim"})
    state = fields.String(allow_none=True, metadata={"description": "The holder's last word on the replica"})
    handover = fields.Boolean(required=True, metadata={"description": "Being warm-stopped for another supervisor"})
    lease_expires_at = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC (database time)"})


class SupervisorSlotsOut(SupervisorOut):
    registered = fields.Boolean(required=True, metadata={"description": "Has a row in the database"})
    lease_alive = fields.Boolean(required=True, metadata={"description": "Its registration lease has not expired"})
    labels = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"description": "KCM_SUPERVISOR_LABELS"})
    draining = fields.Boolean(required=True, metadata={"description": "Stopping (SIGTERM): handing its slots over"})
    lease_expires_at = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC (database time)"})
    slots = fields.List(fields.Nested(SlotOut), required=True)
