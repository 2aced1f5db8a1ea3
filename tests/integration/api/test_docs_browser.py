"""Swagger UI (/docs) and ReDoc (/redoc) in a real headless Chromium against the API on a real socket: each page
renders kcm's OpenAPI document from the vendored files, without credentials, and the browser fetches nothing
from another host (what the page's scripts would fetch elsewhere, ReDoc's sidebar logo, the policy blocks)."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from api import API_TITLE
from api.docs_assets import REDOC_ASSET, SWAGGER_UI_ASSETS
from tests.integration.api.conftest import make_app
from tests.support.browser import WAIT, chromium, console, served
from tests.support.kafka import wait_for

NETWORK_SCHEMES = ("http", "https", "ws", "wss")  # not data:, blob: or the browser's own chrome:// pages
# what the page shows once it has rendered the whole document: the title, and one entry per operation
ASSETS = {"/docs": SWAGGER_UI_ASSETS, "/redoc": (REDOC_ASSET,)}
RENDERED = {"/docs": (".swagger-ui .info .title", ".swagger-ui .opblock"),
            "/redoc": (".api-info h1", "[role=menuitem]")}


@pytest.fixture
def base(pg_clean, redis_client, redis_test_url, pg_url):
    with served(make_app(pg_url, redis_test_url)) as url:
        yield url


@pytest.fixture
def chrome(tmp_path):
    with chromium(tmp_path / "chromium-profile", {"browser": "SEVERE", "performance": "ALL"}) as browser:
        yield browser


def network(browser) -> tuple[dict[str, str], dict[str, str]]:
    """The requests the page made (request id -> URL) and why each failed one failed (request id -> reason)."""
    requested, failed = {}, {}
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            requested[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed":
            failed[params["requestId"]] = params.get("blockedReason") or params.get("errorText", "")
    return requested, failed


@pytest.mark.parametrize("page", sorted(RENDERED))
def test_the_docs_page_renders_the_api_from_kcm_alone(base, chrome, page):
    from selenium.webdriver.common.by import By

    title, operation = RENDERED[page]
    chrome.get(base + page)

    def rendered():
        titles = chrome.find_elements(By.CSS_SELECTOR, title)
        return bool(titles) and API_TITLE in titles[0].text and len(chrome.find_elements(By.CSS_SELECTOR, operation))

    wait_for(rendered, timeout=WAIT, interval=0.3, message=f"{page} rendering the OpenAPI document")
    assert len(chrome.find_elements(By.CSS_SELECTOR, operation)) >= 20  # every resource's operations
    requested, failed = network(chrome)
    origin = urlsplit(base)[:2]
    elsewhere = {rid: url for rid, url in requested.items()
                 if urlsplit(url).scheme in NETWORK_SCHEMES and urlsplit(url)[:2] != origin}
    assert all(failed.get(rid) == "csp" for rid in elsewhere), ({elsewhere[r]: failed.get(r) for r in elsewhere},
                                                               console(chrome))
    loaded = {urlsplit(url).path for rid, url in requested.items() if rid not in elsewhere and rid not in failed}
    assert {page, "/openapi.json", *(f"/docs-assets/{name}" for name in ASSETS[page])} <= loaded, loaded
