"""POST /consumers/validate/: every check of POST /consumers/, then connect to what the consumer would use."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.consumers import ConsumerIn, ValidateOut
from api.services.errors import Invalid
from api.services.validate import VALIDATE_ACTION, ValidateService

blp = Blueprint("validate", __name__, url_prefix="/consumers", description="Validate a consumer before creating it")


def validate_consumer(data: dict) -> dict:
    kcm = services()
    return ValidateService(kcm.settings, kcm.consumers).run(data)


def refuse_invalid(result: dict) -> None:
    """POST /consumers/?validate=true: a failed check is a 422 naming each one."""
    failed = {check["name"]: [check["detail"]] for check in result["checks"] if not check["ok"]}
    if failed:
        raise Invalid(f"the consumer did not pass validation ({len(failed)} failed check(s)); nothing was created",
                      {"checks": failed})


@blp.route("/validate/")
class ValidateConsumer(MethodView):
    @requires(Role.OPERATOR, VALIDATE_ACTION)
    @blp.arguments(ConsumerIn)
    @blp.response(200, ValidateOut)
    def post(self, data):
        """Check a consumer body as POST /consumers/ does, then connect: the brokers answer, the topic exists,
        each processor's own check passes. Creates nothing."""
        return validate_consumer(data)
