"""The dashboard's pages and the partials htmx refreshes (GET only; the forms are in forms.py).

Each view declares its role with ``@requires`` as the API's views do; guard.py enforces it. Templates learn what
the signed-in principal may do from ``may(endpoint)``: the same declaration, so a button shows exactly when its
form would be accepted.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from marshmallow import ValidationError

from api.auth.declarations import access_of, requires
from api.auth.roles import Role
from api.context import services
from api.schemas.consumers import ConsumerQuery
from api.services.errors import Invalid, Unavailable
from api.ui import data
from api.ui.session import SignInFailed
from schema.states import ConsumerStatus, DesiredState

blp = Blueprint("ui", __name__)

REFRESH_SECONDS = 3  # htmx polls the live parts this often while the tab is visible (static/dashboard.js)
DEAD_LETTERS_SHOWN = 50
VERSIONS_SHOWN = 20
AUDIT_PAGE = 50


@blp.app_context_processor
def _template_helpers() -> dict:
    def may(endpoint: str) -> bool:
        """Whether the signed-in principal passes the declaration of ``endpoint``'s view (guard.py's rules)."""
        principal = g.get("kcm_principal")
        view = current_app.view_functions.get(endpoint)
        access = access_of(view, "POST") or access_of(view, "GET") if view is not None else None
        return bool(principal is not None and access is not None and principal.can(access.role)
                    and not (access.unscoped and principal.scoped))

    principal = g.get("kcm_principal")
    signed_in = principal is not None and principal.role is not None
    return {"may": may, "principal": principal if signed_in else None, "refresh_seconds": REFRESH_SECONDS}


def _safe_next(target: str | None) -> str:
    """Only a path inside the dashboard: never an open redirect."""
    prefix = request.script_root + "/"
    if target and target.startswith(prefix) and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("ui.consumers")


@blp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    principals = current_app.extensions["kcm.ui.principals"]
    error, status = None, 200
    if request.method == "POST":
        try:
            principals.sign_in(request.form.get("credential", ""))
        except SignInFailed as exc:
            from api.auth.current import current_actor
            from api.services.audit import Action

            services().audit.denied(current_actor(), Action.AUTHENTICATION, 401, str(exc))
            error, status = str(exc), 401
        else:
            return redirect(_safe_next(request.form.get("next")), code=303)
    oidc = bool(services().settings.oidc_issuer)
    return render_template("sign_in.html", error=error, oidc=oidc, next=request.values.get("next", "")), status


@blp.route("/sign-out", methods=["POST"])
def sign_out():
    current_app.extensions["kcm.ui.principals"].sign_out()
    return redirect(url_for("ui.sign_in"), code=303)


@blp.route("/")
@requires(Role.VIEWER)
def home():
    return redirect(url_for("ui.consumers"))


def _filters() -> tuple[dict, dict, str]:
    """The filters as typed (for the form), as the API's ConsumerQuery loads them (for the query; a bad value is a
    422 naming it), and the search text."""
    typed = {name: request.args.get(name, "").strip() for name in data.FILTERS}
    try:
        loaded = ConsumerQuery().load({name: value for name, value in typed.items() if value})
    except ValidationError as exc:
        problems = "; ".join(f"{name}: {' '.join(map(str, messages))}" for name, messages in exc.messages.items())
        raise Invalid(f"The filters are invalid: {problems}") from None
    return typed, loaded, request.args.get("q", "").strip()[:200]


@blp.route("/consumers/")
@requires(Role.VIEWER)
def consumers():
    filters, loaded, search = _filters()
    rows = data.consumer_rows(services(), g.kcm_principal, loaded, search)
    return render_template("consumers.html", rows=rows, filters=filters, search=search,
                           statuses=[s.value for s in ConsumerStatus], desired_states=[d.value for d in DesiredState])


@blp.route("/consumers/rows")
@requires(Role.VIEWER)
def consumer_rows():
    filters, loaded, search = _filters()
    rows = data.consumer_rows(services(), g.kcm_principal, loaded, search)
    return render_template("_consumer_rows.html", rows=rows, filters=filters, search=search)


@blp.route("/consumers/<uuid:consumer_id>/")
@requires(Role.VIEWER)
def consumer(consumer_id):
    kcm = services()
    record = kcm.consumers.get(consumer_id)
    try:
        letters, letter_total = kcm.dead_letters.page(consumer_id, 0, DEAD_LETTERS_SHOWN)
        letters_error = None
    except Unavailable as exc:  # Redis down: the page still shows the rest
        letters, letter_total, letters_error = [], 0, exc.message
    versions, version_total = kcm.consumers.versions.page(consumer_id, 0, VERSIONS_SHOWN)
    return render_template("consumer.html", consumer=record, live=data.consumer_detail(kcm, consumer_id),
                           letters=letters, letter_total=letter_total, letters_error=letters_error,
                           versions=versions, version_total=version_total)


@blp.route("/consumers/<uuid:consumer_id>/live")
@requires(Role.VIEWER)
def consumer_live(consumer_id):
    kcm = services()
    return render_template("_consumer_live.html", consumer=kcm.consumers.get(consumer_id),
                           live=data.consumer_detail(kcm, consumer_id))


@blp.route("/consumers/<uuid:consumer_id>/versions/<int(min=1):number>/diff")
@requires(Role.VIEWER)
def version_diff(consumer_id, number):
    kcm = services()
    return render_template("diff.html", consumer=kcm.consumers.get(consumer_id),
                           diff=kcm.consumers.versions.diff(consumer_id, number))


@blp.route("/supervisors/")
@requires(Role.VIEWER, unscoped=True)  # replicas of every consumer, as GET /supervisors/
def supervisors():
    return render_template("supervisors.html", supervisors=data.supervisors(services()))


@blp.route("/audit/")
@requires(Role.ADMIN, unscoped=True)
def audit():
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    filters = {name: request.args.get(name) or None for name in ("action", "outcome", "principal", "target_id")}
    events, total = services().audit.page(filters, (page - 1) * AUDIT_PAGE, AUDIT_PAGE)
    return render_template("audit.html", events=events, total=total, page=page, page_size=AUDIT_PAGE,
                           filters=filters, query={name: value for name, value in filters.items() if value})


@blp.route("/api-keys/")
@requires(Role.ADMIN, unscoped=True)
def api_keys():
    return render_template("api_keys.html", keys=services().api_keys.list(), roles=Role.names(), created=None,
                           errors={})
