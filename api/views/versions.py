"""/consumers/{id}/versions/ and /consumers/{id}/rollback/: the configuration history and the way back."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.consumers import ConsumerOut
from api.schemas.versions import MAX_VERSION, DiffOut, DiffQuery, RollbackIn, VersionOut
from api.services.versions import ROLLBACK_ACTION

blp = Blueprint("versions", __name__, url_prefix="/consumers", description="Configuration history and rollback")

NUMBER = f"<int(min=1, max={MAX_VERSION}):number>"


@blp.route("/<consumer:consumer_id>/versions/")
class VersionCollection(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, VersionOut(many=True))
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id or name")
    @blp.paginate()
    def get(self, consumer_id, pagination_parameters):
        """The consumer's configuration versions, newest first (X-Pagination header)"""
        items, total = services().consumers.versions.page(consumer_id, pagination_parameters.first_item,
                                                          pagination_parameters.page_size)
        pagination_parameters.item_count = total
        return items


@blp.route(f"/<consumer:consumer_id>/versions/{NUMBER}/")
class VersionItem(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, VersionOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No such consumer or version")
    def get(self, consumer_id, number):
        """One version: the whole configuration after that change"""
        return services().consumers.versions.get(consumer_id, number)


@blp.route(f"/<consumer:consumer_id>/versions/{NUMBER}/diff/")
class VersionDiff(MethodView):
    @requires(Role.VIEWER)
    @blp.arguments(DiffQuery, location="query")
    @blp.response(200, DiffOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No such consumer or version")
    def get(self, query, consumer_id, number):
        """Field-level changes from version `against` (default: number-1) to this one; processors matched by id"""
        return services().consumers.versions.diff(consumer_id, number, query.get("against"))


@blp.route("/<consumer:consumer_id>/rollback/")
class Rollback(MethodView):
    @requires(Role.ADMIN, ROLLBACK_ACTION)
    @blp.arguments(RollbackIn, example={"version": 1})
    @blp.response(200, ConsumerOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No such consumer or version")
    @blp.alt_response(409, schema=ErrorSchema, description="The version's name is now another consumer's")
    def post(self, data, consumer_id):
        """Make the configuration equal to a version (default: the previous one) by writing a new version; a
        running consumer restarts on a new generation. A processor type no longer installed is a 422."""
        return services().consumers.versions.rollback(consumer_id, data.get("version"))
