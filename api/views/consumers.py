"""/consumers/ and /consumers/{id}/: create, list (paginated, filtered), read, partial update, delete."""
from __future__ import annotations

import copy
import json
from typing import NamedTuple

import flask_smorest
from flask import current_app, request, url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationMetadataSchema
from marshmallow import Schema
from webargs.flaskparser import FlaskParser
from werkzeug.wrappers import Response

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.consumers import ConsumerIn, ConsumerOut, ConsumerPatch, ConsumerQuery, CreateQuery
from api.services.audit import Action
from api.views.validate import refuse_invalid, validate_consumer


class SchemaReusingParser(FlaskParser):
    """webargs instantiates a schema *class* on every request (the list's query and pagination schemas were
    ~0.4 ms of its CPU); one instance per class serves every request (loading keeps no state on it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._instances: dict[type, Schema] = {}
        self._query_memo: dict[tuple, object] = {}

    # the query strings seen last, each with what parsing it gave; parsing was the largest CPU item of a
    # cached list request (~0.1 ms). A query string always parses the same way: only successes are kept.
    QUERY_MEMO_SIZE = 512

    def parse(self, argmap, req=None, *, location=None, **kwargs):
        if location != "query":
            return super().parse(argmap, req, location=location, **kwargs)
        key = (argmap, kwargs.get("unknown"), (req or request).query_string)
        if (parsed := self._query_memo.get(key)) is None:
            parsed = super().parse(argmap, req, location=location, **kwargs)
            if len(self._query_memo) >= self.QUERY_MEMO_SIZE:
                self._query_memo.clear()
            self._query_memo[key] = parsed
        return copy.copy(parsed)  # views may change what they get (pagination_parameters.item_count)

    def _get_schema(self, argmap, req):
        if isinstance(argmap, type) and issubclass(argmap, Schema):
            if argmap not in self._instances:
                self._instances[argmap] = argmap()
            return self._instances[argmap]
        return super()._get_schema(argmap, req)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint without its per-request schema instantiation (same parsing, same output)."""

    ARGUMENTS_PARSER = SchemaReusingParser()
    PAGINATION_ARGUMENTS_PARSER = SchemaReusingParser()
    _PAGINATION_METADATA = PaginationMetadataSchema()

    @classmethod
    def _make_pagination_metadata(cls, page, page_size, item_count):
        """flask-smorest's computation, dumped by one schema instance instead of a new one per request."""
        metadata = {"total": item_count, "total_pages": 0}
        if item_count:
            last_page = (item_count - 1) // page_size + 1
            metadata.update(total_pages=last_page, first_page=1, last_page=last_page)
            if page <= last_page:
                metadata["page"] = page
                if page > 1:
                    metadata["previous_page"] = page - 1
                if page < last_page:
                    metadata["next_page"] = page + 1
        return cls._PAGINATION_METADATA.dump(metadata)

    def _set_pagination_metadata(self, page_params, result, headers):
        """A cached list page carries the header it was rendered with (the same text flask-smorest makes)."""
        if isinstance(result, Response) and self.PAGINATION_HEADER_NAME in result.headers:
            return result, headers
        return super()._set_pagination_metadata(page_params, result, headers)


class RenderedPage(NamedTuple):
    """A list page as the client receives it, kept by ConsumerService's page cache (never a Response: a
    Response is mutable and per request)."""

    body: bytes
    pagination_header: str
    total: int


blp = Blueprint("consumers", __name__, url_prefix="/consumers", description="Consumer management")

CREATE_EXAMPLE = {  # the design document's body
    "broker_ip": "127.0.0.1",
    "broker_port": 19092,
    "topic": "orders",
    "consumer_group": "g1",
    "client_id": "c1",
    "downstream_processors": [
        {"processor_type": "file_sink", "config": {"file_path": "orders.log"}},
        {"processor_type": "database_sync", "config": {}},
    ],
}


@blp.route("/")
class ConsumerCollection(MethodView):
    @requires(Role.VIEWER)
    @blp.arguments(ConsumerQuery, location="query")
    @blp.response(200, ConsumerOut(many=True))
    @blp.paginate()
    def get(self, filters, pagination_parameters):
        """List consumers (paginated; X-Pagination header), filtered by status, desired_state, topic, group, name"""
        page, page_size = pagination_parameters.page, pagination_parameters.page_size

        def render(items: list[dict], total: int) -> tuple[RenderedPage, int]:
            # the items already are ConsumerOut's dump (pinned by test_list_fast_path.py): a Response skips
            # the per-item marshmallow dump; the schema above still documents the body
            body = current_app.json.response(items).get_data()
            header = json.dumps(blp._make_pagination_metadata(page, page_size, total))  # as flask-smorest does
            return RenderedPage(body, header, total), len(body) + len(header)

        rendered = services().consumers.list_rendered(filters, pagination_parameters.first_item, page_size, render)
        pagination_parameters.item_count = rendered.total
        response = current_app.response_class(rendered.body, mimetype=current_app.json.mimetype)
        response.headers[blp.PAGINATION_HEADER_NAME] = rendered.pagination_header
        return response

    @requires(Role.ADMIN, Action.CONSUMER_CREATE)
    @blp.arguments(ConsumerIn, example=CREATE_EXAMPLE)
    @blp.arguments(CreateQuery, location="query")
    @blp.response(201, ConsumerOut, headers={"Location": {"description": "URL of the new consumer",
                                                         "schema": {"type": "string"}}})
    def post(self, data, query):
        """Create a consumer (desired_state 'stopped', status INACTIVE, generation 1); with ?validate=true only
        after every check of POST /consumers/validate/ passed (422 otherwise)"""
        if query["validate"]:
            refuse_invalid(validate_consumer(data))
        consumer = services().consumers.create(data)
        return consumer, {"Location": url_for("consumers.ConsumerItem", consumer_id=consumer.id)}


@blp.route("/<consumer:consumer_id>/")
class ConsumerItem(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, ConsumerOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id or name")
    def get(self, consumer_id):
        """Read one consumer"""
        return services().consumers.get(consumer_id)

    @requires(Role.ADMIN, Action.CONSUMER_UPDATE)
    @blp.arguments(ConsumerPatch)
    @blp.response(200, ConsumerOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id or name")
    def patch(self, changes, consumer_id):
        """Change user fields; a change to a running consumer bumps its generation (the supervisor restarts it)"""
        return services().consumers.update(consumer_id, changes)

    @requires(Role.ADMIN, Action.CONSUMER_DELETE)
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id or name")
    def delete(self, consumer_id):
        """Delete a consumer and its processors; the supervisor stops its workers"""
        services().consumers.delete(consumer_id)
        services().dead_letters.purge_for_deleted_consumer(consumer_id)  # they had nowhere left to go
