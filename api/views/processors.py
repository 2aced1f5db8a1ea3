"""/consumers/{id}/processors/: a consumer's downstream processors, in pipeline order."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.processors import ProcessorIn, ProcessorOut, ProcessorPatch
from api.services.audit import Action

blp = Blueprint("processors", __name__, url_prefix="/consumers", description="Downstream processors")

NOT_FOUND = "No consumer, or no processor of this consumer, with this id"


@blp.route("/<uuid:consumer_id>/processors/")
class ProcessorCollection(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, ProcessorOut(many=True))
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    def get(self, consumer_id):
        """List the consumer's processors in pipeline order"""
        return services().processors.list(consumer_id)

    @requires(Role.ADMIN, Action.PROCESSOR_CREATE)
    @blp.arguments(ProcessorIn)
    @blp.response(201, ProcessorOut, headers={"Location": {"description": "URL of the new processor",
                                                           "schema": {"type": "string"}}})
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    def post(self, data, consumer_id):
        """Add a processor (config validated by the processor type's schema)"""
        processor = services().processors.create(consumer_id, data)
        location = url_for("processors.ProcessorItem", consumer_id=consumer_id, processor_id=processor.id)
        return processor, {"Location": location}


@blp.route("/<uuid:consumer_id>/processors/<uuid:processor_id>/")
class ProcessorItem(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, ProcessorOut)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    def get(self, consumer_id, processor_id):
        """Read one processor"""
        return services().processors.get(consumer_id, processor_id)

    @requires(Role.ADMIN, Action.PROCESSOR_UPDATE)
    @blp.arguments(ProcessorPatch)
    @blp.response(200, ProcessorOut)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    def patch(self, changes, consumer_id, processor_id):
        """Change a processor's type, config, on_error or position"""
        return services().processors.update(consumer_id, processor_id, changes)

    @requires(Role.ADMIN, Action.PROCESSOR_DELETE)
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    def delete(self, consumer_id, processor_id):
        """Remove a processor from the pipeline"""
        services().processors.delete(consumer_id, processor_id)
