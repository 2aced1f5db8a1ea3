"""/consumers/{id}/offsets/ and /consumers/{id}/offsets/reset/: see, move and forget a consumer's offsets."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.offsets import OffsetChangeOut, OffsetResetIn, OffsetsOut
from api.services.audit import Action
from api.services.offsets import OffsetsService

blp = Blueprint("offsets", __name__, url_prefix="/consumers", description="Consumer offsets: view, reset, delete")


def offsets_service() -> OffsetsService:
    kcm = services()
    return OffsetsService(kcm.settings, kcm.consumers.sessions, kcm.status)


@blp.route("/<consumer:consumer_id>/offsets/")
class Offsets(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, OffsetsOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id or name")
    @blp.alt_response(409, schema=ErrorSchema, description="The topic does not exist on the consumer's cluster")
    @blp.alt_response(503, schema=ErrorSchema, description="Kafka or a processor's offset store unreachable")
    def get(self, consumer_id):
        """Per partition: the group's committed offset, the low and high watermarks, the lag, and the offsets each
        exactly-once processor stored; read from Kafka whether the consumer runs or not"""
        return offsets_service().view(consumer_id)

    @requires(Role.OPERATOR, Action.CONSUMER_OFFSETS_DELETE)
    @blp.response(200, OffsetChangeOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id or name")
    @blp.alt_response(409, schema=ErrorSchema, description="A replica is live, the group has members, or the group "
                                                           "holds offsets of another topic")
    @blp.alt_response(503, schema=ErrorSchema, description="Kafka or a processor's offset store unreachable")
    def delete(self, consumer_id):
        """Forget the committed offsets (the group is deleted) and every exactly-once processor's stored offsets:
        the next start follows auto_offset_reset. Only while every replica is stopped."""
        return offsets_service().forget(consumer_id)


@blp.route("/<consumer:consumer_id>/offsets/reset/")
class OffsetsReset(MethodView):
    @requires(Role.OPERATOR, Action.CONSUMER_OFFSETS_RESET)
    @blp.arguments(OffsetResetIn, example={"to": "earliest", "dry_run": True})
    @blp.response(200, OffsetChangeOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id or name")
    @blp.alt_response(409, schema=ErrorSchema, description="A replica is live (named), the group has members, or "
                                                           "the topic does not exist")
    @blp.alt_response(503, schema=ErrorSchema, description="Kafka or a processor's offset store unreachable")
    def post(self, data, consumer_id):
        """Move the offsets (to earliest, latest, a timestamp or duration ago, an offset, or by a shift), each
        clamped to the watermarks; dry_run (default true) answers what would change and changes nothing.
        Otherwise changes the group's commit and every exactly-once processor's stored offsets; only while every
        replica is stopped."""
        return offsets_service().reset(consumer_id, data)
