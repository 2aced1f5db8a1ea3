"""/processor-types/: every installed processor type, its description and its config's JSON Schema."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.jsonschema import schema_to_jsonschema
from api.schemas.processors import ProcessorTypeOut
from processors import registry

blp = Blueprint("processor-types", __name__, url_prefix="/processor-types", description="Processor types")


def describe(name: str) -> dict:
    try:
        cls = registry.load(name)
    except registry.ProcessorLoadError as exc:  # show the broken plugin instead of failing the whole list
        return {"name": name, "description": "", "config_schema": {}, "error": str(exc)}
    return {
        "name": name,
        "description": cls.description or (cls.__doc__ or "").strip(),
        "config_schema": schema_to_jsonschema(cls.ConfigSchema),
        "error": None,
    }


@blp.route("/")
class ProcessorTypes(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, ProcessorTypeOut(many=True))
    def get(self):
        """Installed processor types (the kcm.processors entry points)"""
        return [describe(name) for name in registry.installed_names()]
