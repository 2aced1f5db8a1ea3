"""Fixtures for the dashboard tests: the real app (API + /ui/) on the test PostgreSQL database and Redis, keys of each
role made through the API, and a signed-in dashboard client that reads each form's CSRF token off its page."""
from __future__ import annotations

import re

import pytest

from tests.integration.api.conftest import VALID_CONSUMER, app, client  # noqa: F401  (the API fixtures)

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
UI = "/ui"


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on the page: {html[:300]}"
    return match.group(1)


class Dashboard:
    """A browser-like client of /ui/: cookies kept, forms posted with the token their page carried."""

    def __init__(self, kcm_app):
        self.http = kcm_app.test_client(token=None)  # no bearer header: the dashboard authenticates by its session

    def get(self, path: str, **kwargs):
        return self.http.get(UI + path, **kwargs)

    def post_form(self, page: str, action: str, data: dict | None = None, **kwargs):
        """Post ``data`` to ``action`` with the CSRF token of ``page`` (as a browser submits the page's form)."""
        token = csrf_of(self.get(page).get_data(as_text=True))
        return self.http.post(UI + action, data={"csrf_token": token, **(data or {})}, **kwargs)

    def sign_in(self, credential: str):
        return self.post_form("/sign-in", "/sign-in", {"credential": credential})

    def session_cookie(self):
        return self.http.get_cookie("kcm_ui_session", path=UI)


@pytest.fixture
def keys(client):  # noqa: F811
    """A token of each role (unscoped), one limited to 'other-*', made by the bootstrap admin through the API."""
    made = {}
    for name, role, scopes in (("viewer", "viewer", None), ("operator", "operator", None),
                               ("admin", "admin", None), ("out_of_scope", "admin", ["other-*"])):
        response = client.post("/api-keys/", json={"name": f"ui-{name}", "role": role, "scopes": scopes})
        assert response.status_code == 201, response.json
        made[name] = response.json
    return made


@pytest.fixture
def consumer(client):  # noqa: F811
    response = client.post("/consumers/", json={**VALID_CONSUMER, "name": "orders-billing", "downstream_processors": [
        {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-ui-collected"}}]})
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def dashboard(app):  # noqa: F811
    def make(token: str | None = None) -> Dashboard:
        board = Dashboard(app)
        if token is not None:
            response = board.sign_in(token)
            assert response.status_code == 303, response.get_data(as_text=True)
        return board

    return make
