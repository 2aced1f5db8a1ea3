"""Swagger UI (/docs) and ReDoc (/redoc) load every script and style sheet from kcm itself, without credentials,
each one byte for byte the file api/static/README.md records; no page names another host, behind a proxy's prefix
the pages name the files under that prefix, and nothing but those files is public under /docs-assets/."""
from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser

import pytest

from api.context import EXTENSION
from api.docs_assets import DOCS_CONTENT_SECURITY_POLICY, FOLDER, REDOC_ASSET, SWAGGER_UI_ASSETS
from tests.integration.api.conftest import make_app
from tests.unit.api.test_vendored_assets import recorded_sums

CONTENT_TYPES = {".js": {"text/javascript", "application/javascript"}, ".css": {"text/css"}}
PAGES = {"/docs": set(SWAGGER_UI_ASSETS), "/redoc": {REDOC_ASSET}}
SPEC_URL_IN_SCRIPT = re.compile(r"""\burl:\s*["']([^"']+)["']""")


class References(HTMLParser):
    """Every URL a page names: src, href and ReDoc's spec-url attributes, and Swagger UI's script's ``url:``."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.urls += SPEC_URL_IN_SCRIPT.findall(data)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


def media_type(response) -> str:
    return response.headers["Content-Type"].split(";")[0].strip()


@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_docs_page_loads_only_kcms_own_files_as_recorded(app, page):
    anonymous = app.test_client(token=None)
    response = anonymous.get(page)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == DOCS_CONTENT_SECURITY_POLICY
    urls = references(response.get_data(as_text=True))
    assert urls, "the page names no file"
    for url in urls:  # a path on this host: no scheme, no host, no protocol-relative //host
        assert url.startswith("/") and not url.startswith("//") and ":" not in url, url
    assets = {url.rsplit("/", 1)[1]: url for url in urls if url.startswith("/docs-assets/")}
    assert set(assets) == PAGES[page], urls
    assert set(urls) - set(assets.values()) == {"/openapi.json"}, urls
    sums = recorded_sums(FOLDER)
    for name, url in assets.items():
        served = anonymous.get(url)
        assert served.status_code == 200, url
        assert media_type(served) in CONTENT_TYPES[name[name.rindex("."):]], (url, served.headers["Content-Type"])
        assert hashlib.sha256(served.get_data()).hexdigest() == sums[name], url


def test_only_the_vendored_files_are_public_under_docs_assets(app):
    anonymous = app.test_client(token=None)
    assert anonymous.get("/docs-assets/no-such-file.js").status_code == 404
    for escape in ("/docs-assets/../api/__init__.py", "/docs-assets/%2e%2e/docs_assets.py",
                   "/docs-assets/..%2fdocs_assets.py"):
        response = anonymous.get(escape)
        assert response.status_code == 404, escape
        assert b"import" not in response.get_data(), escape
    assert anonymous.get("/docs-assets").status_code == 401  # the prefix is public, not the bare path
    assert anonymous.get("/consumers/").status_code == 401


@pytest.fixture
def proxied_app(pg_clean, redis_client, redis_test_url, pg_url):
    app = make_app(pg_url, redis_test_url, trusted_proxies="127.0.0.1")
    yield app
    app.extensions[EXTENSION].close()


def test_behind_a_proxy_prefix_the_pages_name_their_files_under_it(proxied_app):
    anonymous = proxied_app.test_client(token=None)
    for page, names in PAGES.items():
        html = anonymous.get(page, headers={"X-Forwarded-Prefix": "/kcm"}).get_data(as_text=True)
        assert set(references(html)) == {"/kcm/openapi.json"} | {f"/kcm/docs-assets/{name}" for name in names}
    # the prefix is a header: written into the page escaped, never as markup
    hostile = "/k'><img src=x onerror=alert(1)>"
    html = anonymous.get("/redoc", headers={"X-Forwarded-Prefix": hostile}).get_data(as_text=True)
    assert "<img" not in html and "'>" not in html
    assert f"{hostile}/docs-assets/{REDOC_ASSET}" in [url for url in references(html) if url.endswith(REDOC_ASSET)]
