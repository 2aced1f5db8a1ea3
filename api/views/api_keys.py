"""/api-keys/: create (the token is in this response only), list (never a token), revoke. Unscoped admins only."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.current import current_actor
from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.api_keys import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from api.schemas.common import ErrorSchema
from api.services.audit import Action

blp = Blueprint("api-keys", __name__, url_prefix="/api-keys", description="API keys (admin)")


@blp.route("/")
class ApiKeyCollection(MethodView):
    @requires(Role.ADMIN, unscoped=True)
    @blp.response(200, ApiKeyOut(many=True))
    def get(self):
        """Every API key, revoked ones included (with revoked_at); never a token or its digest"""
        return services().api_keys.list()

    @requires(Role.ADMIN, Action.API_KEY_CREATE, unscoped=True)
    @blp.arguments(ApiKeyIn, example={"name": "billing-operator", "role": "operator", "scopes": ["billing-*"]})
    @blp.response(201, ApiKeyCreated, headers={"Location": {"description": "URL of the new key",
                                                            "schema": {"type": "string"}}})
    def post(self, data):
        """Create a key; the response holds its token, which kcm cannot show again"""
        scopes = None if data.get("scopes") is None else tuple(dict.fromkeys(data["scopes"]))
        key, token = services().api_keys.create(data["name"], Role.parse(data["role"]), scopes, current_actor())
        body = {name: getattr(key, name) for name in ApiKeyOut._declared_fields} | {"token": token}
        return body, {"Location": url_for("api-keys.ApiKeyItem", key_id=key.id)}


@blp.route("/<uuid:key_id>/")
class ApiKeyItem(MethodView):
    @requires(Role.ADMIN, Action.API_KEY_REVOKE, unscoped=True)
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="No active API key with this id")
    def delete(self, key_id):
        """Revoke a key: every API process refuses its token from the next request on"""
        services().api_keys.revoke(key_id, current_actor())
