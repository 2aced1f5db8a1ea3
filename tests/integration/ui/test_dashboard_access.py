"""The dashboard's sign-in, session cookie, CSRF protection and access rules, over the real app, database and Redis:
the same roles and scopes as the API, a button only for a role that may use it, a forged post refused and
audited, and every dashboard route declaring its role (fail closed otherwise)."""
from __future__ import annotations

import uuid

from flask.sessions import SecureCookieSessionInterface

from api.auth import tokens
from api.auth.declarations import MUTATING_METHODS, access_of
from api.auth.roles import Role
from schema.models import AuditEvent
from tests.integration.api.conftest import ADMIN_TOKEN, make_app
from tests.integration.ui.conftest import UI, Dashboard, csrf_of

PUBLIC = {"static", "ui.sign_in", "ui.sign_out"}


def dashboard_app(app):
    return app.extensions["kcm.ui"]


def audit_rows(app, **where) -> list[AuditEvent]:
    with app.extensions["kcm"].audit.sessions() as session:
        query = session.query(AuditEvent).filter_by(**where).order_by(AuditEvent.id)
        return list(query)


def test_a_page_without_a_session_redirects_to_sign_in_and_a_form_post_is_401(dashboard, consumer):
    board = dashboard()
    page = board.get("/consumers/")
    assert page.status_code == 302 and page.headers["Location"] == f"{UI}/sign-in?next=/ui/consumers/"
    assert board.get("/static/vendor/htmx.min.js").status_code == 200  # the assets need no session
    post = board.http.post(f"{UI}/consumers/{consumer['id']}/stop", data={})
    assert post.status_code == 401 and post.headers["HX-Redirect"] == f"{UI}/sign-in"


def test_signing_in_with_an_api_key_keeps_only_who_signed_in_in_a_strict_httponly_cookie(app, dashboard, keys):
    board = dashboard()
    response = board.sign_in(keys["viewer"]["token"])
    assert response.status_code == 303 and response.headers["Location"] == f"{UI}/consumers/"
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("kcm_ui_session="))
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"httponly", "path", "expires"} <= attributes and "SameSite=Strict" in header and "Path=/ui" in header
    assert "secure" not in attributes  # plain HTTP here; over TLS it is Secure (the next test)
    cookie = board.session_cookie().value
    payload = SecureCookieSessionInterface().get_signing_serializer(dashboard_app(app)).loads(cookie)
    assert payload["principal"]["id"] == keys["viewer"]["id"] and payload["principal"]["role"] == "viewer"
    token = keys["viewer"]["token"]
    assert token not in cookie and tokens.digest(token) not in cookie and token not in str(payload)
    page = board.get("/consumers/")
    assert page.status_code == 200 and "ui-viewer" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in page.headers[
        "Content-Security-Policy"]


def test_sign_in_goes_back_only_to_a_dashboard_page(dashboard, keys):
    for target, landing in (("/ui/supervisors/", "/ui/supervisors/"), ("https://evil.example/", "/ui/consumers/"),
                            ("//evil.example/ui/", "/ui/consumers/"), ("/api-keys/", "/ui/consumers/")):
        board = dashboard()
        response = board.post_form("/sign-in", "/sign-in", {"credential": keys["viewer"]["token"], "next": target})
        assert response.status_code == 303 and response.headers["Location"] == landing, target


def test_the_session_cookie_is_secure_over_tls(app, keys):
    board = Dashboard(app)
    https = {"base_url": "https://localhost"}
    token = csrf_of(board.http.get(f"{UI}/sign-in", **https).get_data(as_text=True))
    response = board.http.post(f"{UI}/sign-in", data={"csrf_token": token, "credential": keys["viewer"]["token"]},
                               headers={"Referer": "https://localhost/ui/sign-in"}, **https)
    assert response.status_code == 303, response.get_data(as_text=True)
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("kcm_ui_session="))
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Strict" in header
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_a_wrong_key_is_refused_audited_and_never_echoed(app, dashboard):
    board = dashboard()
    wrong = "kcm_" + "x" * 43
    response = board.sign_in(wrong)
    body = response.get_data(as_text=True)
    assert response.status_code == 401 and "unknown or revoked API key" in body and wrong not in body
    assert board.get("/consumers/").status_code == 302  # still signed out
    rows = audit_rows(app, action="authentication", outcome="denied")
    assert rows and rows[-1].path == f"{UI}/sign-in" and all(wrong not in (r.detail or "") for r in rows)


def test_a_form_without_its_csrf_token_is_refused(dashboard, keys, consumer, client):
    board = dashboard(keys["operator"]["token"])
    client.post(f"/consumers/{consumer['id']}/start/")
    response = board.http.post(f"{UI}/consumers/{consumer['id']}/stop", data={})
    assert response.status_code == 400 and "CSRF token is missing" in response.get_data(as_text=True)
    forged = board.http.post(f"{UI}/consumers/{consumer['id']}/stop", data={"csrf_token": "not-the-token"})
    assert forged.status_code == 400
    assert client.get(f"/consumers/{consumer['id']}/").json["desired_state"] == "running"  # nothing changed


def test_a_viewer_sees_no_stop_button_and_a_forged_stop_is_403_and_audited(app, dashboard, keys, consumer,
                                                                          client):
    client.post(f"/consumers/{consumer['id']}/start/")
    viewer = dashboard(keys["viewer"]["token"])
    page = viewer.get(f"/consumers/{consumer['id']}/").get_data(as_text=True)
    assert "orders-billing" in page and f"/consumers/{consumer['id']}/stop" not in page and ">Stop<" not in page
    response = viewer.post_form(f"/consumers/{consumer['id']}/", f"/consumers/{consumer['id']}/stop")
    assert response.status_code == 403 and "needs the operator role" in response.get_data(as_text=True)
    assert client.get(f"/consumers/{consumer['id']}/").json["desired_state"] == "running"
    denied = audit_rows(app, action="consumer.stop", outcome="denied")
    assert [(r.principal_id, r.status_code) for r in denied] == [(keys["viewer"]["id"], 403)]


def test_an_operator_stops_a_consumer_from_its_page_and_the_audit_names_the_key(app, dashboard, keys, consumer,
                                                                               client):
    client.post(f"/consumers/{consumer['id']}/start/")
    operator = dashboard(keys["operator"]["token"])
    page = operator.get(f"/consumers/{consumer['id']}/").get_data(as_text=True)
    assert f"/consumers/{consumer['id']}/stop" in page and "Roll back" not in page  # rollback is the admin's
    response = operator.post_form(f"/consumers/{consumer['id']}/", f"/consumers/{consumer['id']}/stop")
    assert response.status_code == 303
    assert client.get(f"/consumers/{consumer['id']}/").json["desired_state"] == "stopped"
    after = operator.get(f"/consumers/{consumer['id']}/").get_data(as_text=True)
    assert 'id="desired-state">stopped<' in after
    allowed = audit_rows(app, action="consumer.stop", outcome="allowed")
    assert [r.principal_id for r in allowed] == [keys["operator"]["id"]]


def test_a_revoked_key_ends_its_session_on_the_next_request(dashboard, keys, client):
    board = dashboard(keys["admin"]["token"])
    assert board.get("/consumers/").status_code == 200
    assert client.delete(f"/api-keys/{keys['admin']['id']}/").status_code == 204
    assert board.get("/consumers/").status_code == 302
    assert board.get("/consumers/rows", headers={"HX-Request": "true"}).status_code == 401


def test_a_key_limited_to_other_groups_sees_neither_the_consumer_nor_its_page(dashboard, keys, consumer):
    board = dashboard(keys["out_of_scope"]["token"])
    listing = board.get("/consumers/").get_data(as_text=True)
    assert "orders-billing" not in listing and "No consumers" in listing
    hidden = board.get(f"/consumers/{consumer['id']}/")
    missing = board.get(f"/consumers/{uuid.uuid4()}/")
    assert hidden.status_code == missing.status_code == 404
    assert board.get("/supervisors/").status_code == 403  # every consumer's replicas: unscoped only


def test_audit_and_api_keys_are_the_admins_and_a_new_key_is_shown_once(dashboard, keys):
    operator = dashboard(keys["operator"]["token"])
    nav = operator.get("/consumers/").get_data(as_text=True)
    assert "Supervisors" in nav and ">Audit<" not in nav and ">API keys<" not in nav
    assert operator.get("/audit/").status_code == 403 and operator.get("/api-keys/").status_code == 403
    admin = dashboard(ADMIN_TOKEN)
    assert "ui-operator" in admin.get("/audit/").get_data(as_text=True)  # the keys made through the API
    created = admin.post_form("/api-keys/", "/api-keys/", {"name": "made-in-ui", "role": "viewer", "scopes": ""})
    body = created.get_data(as_text=True)
    assert created.status_code == 201 and "made-in-ui" in body
    token = body.split('id="new-token" readonly value="')[1].split('"')[0]
    assert token.startswith("kcm_")
    assert token not in admin.get("/api-keys/").get_data(as_text=True)  # shown once
    invalid = admin.post_form("/api-keys/", "/api-keys/", {"name": "", "role": "root", "scopes": "a[b"})
    text = invalid.get_data(as_text=True)
    assert invalid.status_code == 422 and "Must be one of" in text and "&#39;[&#39;" in text


def test_every_dashboard_route_declares_its_role_and_each_role_gets_what_it_declares(app, dashboard, keys,
                                                                                      consumer):
    ui = dashboard_app(app)
    boards = {"anonymous": dashboard(), **{role: dashboard(keys[role]["token"]) for role in ("viewer", "operator",
                                                                                                 "admin")}}
    checked = 0
    for rule in ui.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            access = access_of(ui.view_functions[rule.endpoint], method)
            assert access is not None, f"{method} {rule.rule} declares no @requires"
            if method.lower() in MUTATING_METHODS:
                assert access.action, f"{method} {rule.rule} names no audit action"
            path = rule.rule
            for name, value in (("consumer_id", consumer["id"]), ("dl_id", "no-such-letter"),
                                ("key_id", str(uuid.uuid4())), ("number", "1")):
                path = path.replace(f"<uuid:{name}>", value).replace(f"<string:{name}>", value).replace(
                    f"<int(min=1):{name}>", value)
            for caller, board in boards.items():
                if method == "GET":
                    response = board.http.get(UI + path)
                else:
                    response = board.post_form("/consumers/", path) if caller != "anonymous" else \
                        board.http.post(UI + path, data={})
                where = f"{caller}: {method} {rule.rule} -> {response.status_code}"
                if caller == "anonymous":
                    assert response.status_code == (302 if method == "GET" else 401), where
                elif Role[caller.upper()] < access.role:
                    assert response.status_code == 403, where
                else:
                    assert response.status_code not in (401, 403) and response.status_code < 500, where
            checked += 1
    assert checked >= 15


def test_an_undeclared_dashboard_route_is_refused_to_everyone(pg_clean, redis_client, redis_test_url, pg_url):
    app = make_app(pg_url, redis_test_url)
    ui = app.extensions["kcm.ui"]
    ui.add_url_rule("/undeclared", "undeclared", lambda: "secret")
    board = Dashboard(app)
    assert board.sign_in(ADMIN_TOKEN).status_code == 303
    response = board.get("/undeclared")
    assert response.status_code == 403 and "declares no access rule" in response.get_data(as_text=True)
    app.extensions["kcm"].close()


def test_the_api_beside_the_dashboard_is_unchanged(client, app):
    assert client.get("/consumers/").status_code == 200
    assert app.test_client(token=None).get("/consumers/").status_code == 401
    assert app.test_client(token=None).get("/ui-not-the-dashboard/").status_code == 401


def test_signing_in_with_an_oidc_token_keeps_its_role_and_scopes_until_it_expires(pg_clean, redis_client,
                                                                                  redis_test_url, pg_url, consumer):
    import time

    from tests.integration.api.test_oidc import AUDIENCE, Issuer

    issuer = Issuer()
    app = make_app(pg_url, redis_test_url, oidc_issuer=issuer.url, oidc_audience=AUDIENCE,
                   oidc_jwks_url=f"{issuer.url}/jwks.json")
    try:
        board = Dashboard(app)
        assert "or a token from your identity provider" in board.get("/sign-in").get_data(as_text=True)
        scoped = issuer.token(roles=["operator"], kcm_scopes=["billing"], exp=int(time.time()) + 120)
        assert board.sign_in(scoped).status_code == 303
        page = board.get("/consumers/").get_data(as_text=True)
        assert "alice@example.com" in page and "operator" in page and "orders-billing" in page
        assert board.get("/audit/").status_code == 403  # an operator, and limited to a group
        cookie = board.session_cookie()
        assert scoped not in cookie.value and cookie.expires is not None
        payload = SecureCookieSessionInterface().get_signing_serializer(app.extensions["kcm.ui"]).loads(cookie.value)
        assert payload["principal"]["scopes"] == ["billing"] and payload["principal"]["expires_at"] <= time.time() + 121
        expired = Dashboard(app)
        refused = expired.sign_in(issuer.token(exp=int(time.time()) - 120))
        assert refused.status_code == 401 and "the token has expired" in refused.get_data(as_text=True)
    finally:
        app.extensions["kcm"].close()
        issuer.close()


def test_the_consumers_filters_and_search_narrow_the_list_and_a_bad_filter_is_a_422(dashboard, keys, consumer,
                                                                                     client):
    client.post("/consumers/", json={"broker_ip": "127.0.0.1", "broker_port": 19092, "topic": "payments",
                                     "consumer_group": "billing", "name": "payments-billing"})
    board = dashboard(keys["viewer"]["token"])
    both = board.get("/consumers/?consumer_group=billing").get_data(as_text=True)
    assert "orders-billing" in both and "payments-billing" in both
    searched = board.get("/consumers/rows?q=PAYM").get_data(as_text=True)
    assert "payments-billing" in searched and "orders-billing" not in searched
    by_topic = board.get("/consumers/?topic=orders&desired_state=stopped").get_data(as_text=True)
    assert "orders-billing" in by_topic and "payments-billing" not in by_topic
    bad = board.get("/consumers/?status=SLEEPING")
    assert bad.status_code == 422 and "status: Must be one of" in bad.get_data(as_text=True)
