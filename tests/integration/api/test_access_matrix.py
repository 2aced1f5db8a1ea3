"""Every operation of the OpenAPI document answers each kind of caller exactly as its ``@requires`` declaration
says: no token 401, a role below the declared one 403, a key scoped to other consumer groups 404 on a consumer's
paths (403 on what needs an unscoped principal, or on creating a consumer in its group), and the role that is
enough is never refused. An operation without a declaration fails this suite, and is refused at run time."""
from __future__ import annotations

import uuid

import pytest

from api.auth.declarations import (
    PUBLIC_PATHS,
    ROLE_EXTENSION,
    SECURITY_SCHEME,
    UNSCOPED_EXTENSION,
    normalised,
)
from api.auth.roles import Role
from tests.integration.api.conftest import VALID_CONSUMER

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
COLLECTOR = {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-matrix"}}
CALLERS = ("anonymous", "viewer", "operator", "out_of_scope", "admin")
CALLER_ROLE = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN, "out_of_scope": Role.ADMIN}


def operations(spec: dict):
    for path, item in sorted(spec["paths"].items()):
        for method, operation in sorted(item.items()):
            if method in HTTP_METHODS:
                yield path, method, operation


def is_public(path: str) -> bool:
    return normalised(path) in PUBLIC_PATHS


def new_key(client, role: str, scopes=None) -> dict:
    response = client.post("/api-keys/", json={"name": f"matrix-{role}", "role": role, "scopes": scopes})
    assert response.status_code == 201, response.json
    return response.json


def world(app) -> dict:
    """A consumer in group 'billing' with one processor, keys of each role, and a key to revoke."""
    admin = app.test_client()
    consumer = admin.post("/consumers/", json=VALID_CONSUMER).json
    processor = admin.post(f"/consumers/{consumer['id']}/processors/", json=COLLECTOR).json
    tokens = {role: new_key(admin, role)["token"] for role in ("viewer", "operator", "admin")}
    tokens["out_of_scope"] = new_key(admin, "admin", ["other-*"])["token"]
    return {"consumer_id": consumer["id"], "processor_id": processor["id"], "dl_id": "no-such-dead-letter",
            "key_id": new_key(admin, "viewer")["id"], "tokens": tokens}


def body_for(method: str, path: str):
    if method == "post" and path == "/consumers/":
        return VALID_CONSUMER
    if method == "post" and path == "/api-keys/":
        return {"name": "made-in-matrix", "role": "viewer"}
    if method == "post" and path.endswith("/processors/"):
        return COLLECTOR
    if method == "patch" and "{processor_id}" in path:
        return {"on_error": "skip"}
    if method == "patch":
        return {"client_id": "matrix"}
    return None


def expected(caller: str, path: str, method: str, operation: dict) -> int | None:
    """The status the declaration implies, or None for 'not refused' (the operation's own outcome)."""
    if is_public(path):
        return None
    if caller == "anonymous":
        return 401
    if CALLER_ROLE[caller] < Role[operation[ROLE_EXTENSION].upper()]:
        return 403
    if caller == "out_of_scope":
        if operation.get(UNSCOPED_EXTENSION):
            return 403
        if "{consumer_id}" in path:
            return 404
        if path == "/consumers/" and method == "post":
            return 403  # its group, billing, is outside the key's other-*
    return None


def test_every_documented_operation_declares_a_role(client):
    spec = client.get("/openapi.json").json
    undeclared = [f"{method.upper()} {path}" for path, method, op in operations(spec)
                  if op.get(ROLE_EXTENSION) not in Role.names() and not is_public(path)]
    assert not undeclared, f"operations without @requires: {undeclared}"
    for path, method, op in operations(spec):
        if is_public(path):
            assert ROLE_EXTENSION not in op and "security" not in op, (method, path)
            continue
        assert op["security"] == [{SECURITY_SCHEME: []}], (method, path)
        assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
    assert spec["components"]["securitySchemes"][SECURITY_SCHEME] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"][SECURITY_SCHEME][
            "description"]}


def test_every_operation_answers_every_kind_of_caller_as_declared(app):
    spec = app.test_client().get("/openapi.json").json
    seen = 0
    for path, method, operation in operations(spec):
        ids = world(app)
        url = path.format(**{name: ids[name] for name in ("consumer_id", "processor_id", "dl_id", "key_id")},
                          number=1)  # a consumer's first configuration version
        for caller in CALLERS:
            client = app.test_client(token=None if caller == "anonymous" else ids["tokens"][caller])
            response = client.open(url, method=method.upper(), json=body_for(method, path))
            want = expected(caller, path, method, operation)
            where = f"{caller}: {method.upper()} {path} -> {response.status_code} {response.get_data(as_text=True)}"
            if want is None:
                assert response.status_code not in (401, 403) and response.status_code < 500, where
            else:
                assert response.status_code == want, where
                assert set(response.json) == {"code", "status", "message", "errors"}, where
            if response.status_code == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer"), where
        seen += 1
    assert seen >= 20  # every resource's operations, not an empty document


@pytest.mark.parametrize("path", sorted(PUBLIC_PATHS))
def test_the_public_paths_need_no_credentials(app, path):
    assert app.test_client(token=None).get(path).status_code == 200


def test_an_operation_without_a_declaration_is_refused_to_everyone(pg_clean, redis_client, redis_test_url, pg_url):
    from tests.integration.api.conftest import make_app

    app = make_app(pg_url, redis_test_url)
    app.add_url_rule("/undeclared/", "undeclared", lambda: {"secret": "data"}, methods=["GET", "POST"])
    admin = app.test_client()
    for method in ("GET", "POST"):
        response = admin.open("/undeclared/", method=method)
        assert response.status_code == 403, response.json
        assert "declares no access rule" in response.json["message"]
    assert app.test_client(token=None).get("/undeclared/").status_code == 401


def test_an_unknown_path_without_credentials_is_401_not_404(client, app):
    anonymous = app.test_client(token=None)
    assert anonymous.get(f"/consumers/{uuid.uuid4()}/").status_code == 401
    assert anonymous.get("/no-such-thing/").status_code == 401
    assert client.get("/no-such-thing/").status_code == 404


def test_the_roles_table_of_docs_security_is_the_declarations(client):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "security.md").read_text()
    table = text.split("<!-- roles-table")[1].split("<!-- /roles-table -->")[0]
    documented = {(m, p): r for m, p, r in re.findall(r"^\| `(\w+)` \| `([^`]+)` \| ([^|]+?) \|$", table, re.M)}
    spec = client.get("/openapi.json").json
    declared = {(method.upper(), path): "public" if is_public(path) else
                op[ROLE_EXTENSION] + (" (unscoped)" if op.get(UNSCOPED_EXTENSION) else "")
                for path, method, op in operations(spec)}
    assert documented == declared
