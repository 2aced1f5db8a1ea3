"""The dashboard's forms (POST only): each calls the service the API's own view calls, with the same declared role
and audit action, then redirects back (post/redirect/get) with the outcome as a flashed message. A refusal of the
service (404, 409, 422) is shown on the page it came from, never a 500."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from api.auth.current import current_actor
from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.api_keys import ApiKeyIn
from api.schemas.offsets import OffsetResetIn
from api.services.audit import Action
from api.services.errors import ServiceError
from api.services.offsets import OffsetsService
from api.ui.pages import blp


def _back(consumer_id, anchor: str = ""):
    return redirect(url_for("ui.consumer", consumer_id=consumer_id) + anchor, code=303)


def _control(consumer_id, verb: str):
    try:
        outcome = getattr(services().consumers, verb)(consumer_id)
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        flash(outcome.message, "info")
    return _back(consumer_id)


@blp.route("/consumers/<uuid:consumer_id>/start", methods=["POST"])
@requires(Role.OPERATOR, Action.CONSUMER_START)
def start(consumer_id):
    return _control(consumer_id, "start")


@blp.route("/consumers/<uuid:consumer_id>/stop", methods=["POST"])
@requires(Role.OPERATOR, Action.CONSUMER_STOP)
def stop(consumer_id):
    return _control(consumer_id, "stop")


@blp.route("/consumers/<uuid:consumer_id>/restart", methods=["POST"])
@requires(Role.OPERATOR, Action.CONSUMER_RESTART)
def restart(consumer_id):
    return _control(consumer_id, "restart")


@blp.route("/consumers/<uuid:consumer_id>/pause", methods=["POST"])
@requires(Role.OPERATOR, Action.CONSUMER_PAUSE)
def pause(consumer_id):
    return _control(consumer_id, "pause")


@blp.route("/consumers/<uuid:consumer_id>/resume", methods=["POST"])
@requires(Role.OPERATOR, Action.CONSUMER_RESUME)
def resume(consumer_id):
    return _control(consumer_id, "resume")


def _dead_letter(consumer_id, dl_id: str, verb: str, action: Action, done: str):
    kcm = services()
    try:
        getattr(kcm.dead_letters, verb)(consumer_id, dl_id)
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        # the dead letters live in Redis: no service writes their audit row (as api/auth/guard.py does for the API)
        kcm.audit.record_alone(current_actor(), action, target_type="dead_letter", target_id=dl_id,
                               after={"consumer_id": str(consumer_id)})
        flash(f"Dead letter {dl_id} {done}.", "info")
    return _back(consumer_id, "#dead-letters")


@blp.route("/consumers/<uuid:consumer_id>/dead-letters/<string:dl_id>/replay", methods=["POST"])
@requires(Role.OPERATOR, Action.DEAD_LETTER_REPLAY)
def replay_dead_letter(consumer_id, dl_id):
    return _dead_letter(consumer_id, dl_id, "replay", Action.DEAD_LETTER_REPLAY, "queued for replay")


@blp.route("/consumers/<uuid:consumer_id>/dead-letters/<string:dl_id>/discard", methods=["POST"])
@requires(Role.OPERATOR, Action.DEAD_LETTER_DELETE)
def discard_dead_letter(consumer_id, dl_id):
    return _dead_letter(consumer_id, dl_id, "delete", Action.DEAD_LETTER_DELETE, "discarded")


@blp.route("/consumers/<uuid:consumer_id>/rollback", methods=["POST"])
@requires(Role.ADMIN, Action.CONSUMER_ROLLBACK)
def rollback(consumer_id):
    number = request.form.get("version", type=int)
    if number is None or number < 1:
        flash("Choose the version to roll back to.", "error")
        return _back(consumer_id, "#versions")
    try:
        services().consumers.versions.rollback(consumer_id, number)
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Rolled back to version {number} (a new version records it).", "info")
    return _back(consumer_id, "#versions")


@blp.route("/api-keys/", methods=["POST"])
@requires(Role.ADMIN, Action.API_KEY_CREATE, unscoped=True)
def create_api_key():
    kcm = services()
    scopes = [s.strip() for s in request.form.get("scopes", "").split(",") if s.strip()] or None
    try:
        fields = ApiKeyIn().load({"name": request.form.get("name", ""), "role": request.form.get("role", ""),
                                  "scopes": scopes})
    except ValidationError as exc:
        return render_template("api_keys.html", keys=kcm.api_keys.list(), roles=Role.names(), created=None,
                               errors={name: _messages(value) for name, value in exc.messages.items()}), 422
    key, token = kcm.api_keys.create(fields["name"], Role.parse(fields["role"]), fields["scopes"] and
                                     tuple(fields["scopes"]), current_actor())
    return render_template("api_keys.html", keys=kcm.api_keys.list(), roles=Role.names(),
                           created={"key": key, "token": token}, errors={}), 201


@blp.route("/api-keys/<uuid:key_id>/revoke", methods=["POST"])
@requires(Role.ADMIN, Action.API_KEY_REVOKE, unscoped=True)
def revoke_api_key(key_id):
    try:
        services().api_keys.revoke(key_id, current_actor())
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        flash(f"API key {key_id} revoked.", "info")
    return redirect(url_for("ui.api_keys"), code=303)


def _messages(value) -> list[str]:
    """marshmallow's messages of one field (a list, or a dict per list item) as plain strings."""
    if isinstance(value, dict):
        return [message for item in value.values() for message in _messages(item)]
    return [str(message) for message in (value if isinstance(value, list) else [value])]


OFFSET_FIELDS = ("timestamp", "duration", "offset", "shift")
INTEGER_FIELDS = ("offset", "shift")


def _reset_request(form) -> dict:
    """The form as a POST /consumers/{id}/offsets/reset/ body: empty fields left out, numbers as numbers (a
    non-number is passed on for the schema's own message)."""
    body: dict = {"to": form.get("to", "")}
    for name in OFFSET_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = _integer(value) if name in INTEGER_FIELDS else value
    partitions = [p.strip() for p in form.get("partitions", "").split(",") if p.strip()]
    if partitions:
        body["partitions"] = [_integer(p) for p in partitions]
    return body


def _integer(text: str):
    try:
        return int(text)
    except ValueError:
        return text


@blp.route("/consumers/<uuid:consumer_id>/offsets/reset", methods=["POST"])
@requires(Role.OPERATOR, Action.CONSUMER_OFFSETS_RESET)
def reset_offsets(consumer_id):
    """First a dry run, shown with a confirm form carrying the same fields; the confirm moves the offsets."""
    kcm = services()
    confirmed = request.form.get("confirm") == "yes"
    body = _reset_request(request.form)
    consumer = kcm.consumers.get(consumer_id)
    try:
        loaded = OffsetResetIn().load({**body, "dry_run": not confirmed})
        outcome = offsets_service(kcm).reset(consumer_id, loaded)
    except ValidationError as exc:
        errors = {name: _messages(value) for name, value in exc.messages.items()}
        return render_template("offsets_preview.html", consumer=consumer, body=body, errors=errors, moves=None,
                               problem="The reset was refused: see the messages per field."), 422
    except ServiceError as exc:
        errors = {name: _messages(value) for name, value in exc.errors.items()}
        return render_template("offsets_preview.html", consumer=consumer, body=body, errors=errors, moves=None,
                               problem=exc.message), exc.status_code
    if not confirmed:
        return render_template("offsets_preview.html", consumer=consumer, body=body, errors={},
                               moves=outcome["partitions"], problem=None)
    moved = ", ".join(f"{m['partition']}: {m['from']} → {m['to']}" for m in outcome["partitions"])
    flash(f"Offsets reset ({moved}).", "info")
    return _back(consumer_id, "#offsets")


def offsets_service(kcm=None):
    """The offsets service of api/services/offsets.py, built as its API view builds it."""
    kcm = kcm or services()
    return OffsetsService(kcm.settings, kcm.consumers.sessions, kcm.status)
