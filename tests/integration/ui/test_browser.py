"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium)
against the real stack: the API and /ui/ on a real socket, PostgreSQL, Redis, Kafka, a real supervisor and the lag
monitor. An operator signs in, watches a consumer's lag drop to 0 as it catches up without reloading the page,
stops it from the page and sees the state change. The main pages' screenshots go to $KCM_UI_SCREENSHOTS (the
docs' images: ``KCM_UI_SCREENSHOTS=docs/images``), else to the test's temporary directory."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.api.conftest import ADMIN_TOKEN, make_app
from tests.integration.monitoring.conftest import monitor  # noqa: F401  (the lag monitor fixture)
from tests.integration.runtime.conftest import runtime  # noqa: F401  (the supervisor fixture)
from tests.support.browser import WAIT, chromium, console, served
from tests.support.kafka import produce, wait_for

MESSAGES = 40


@pytest.fixture
def server(runtime, pg_url, redis_test_url):  # noqa: F811
    """The API and the dashboard served on a real socket (werkzeug, threaded), as a browser reaches them."""
    app = make_app(pg_url, redis_test_url, lag_interval=0.5, lag_window=4)
    with served(app) as base:
        yield app, base


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "chromium-profile", {"browser": "SEVERE"}) as chrome:  # a fresh profile each run
        yield chrome


@pytest.fixture
def screenshots(tmp_path) -> Path:
    target = Path(os.environ.get("KCM_UI_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def text_of(chrome, selector: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return chrome.find_element(By.CSS_SELECTOR, selector).text.strip()
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def wait_text(chrome, selector: str, predicate, message: str) -> str:
    return wait_for(lambda: (t := text_of(chrome, selector)) is not None and predicate(t) and t, timeout=WAIT,
                    interval=0.2, message=f"{message} (now {text_of(chrome, selector)!r})")


def shot(chrome, path: Path) -> None:
    """A screenshot of the whole page (the window grown to the page's height for it)."""
    height = chrome.execute_script("return document.documentElement.scrollHeight")
    chrome.set_window_size(1400, min(max(height, 700), 4000))
    chrome.save_screenshot(str(path))
    chrome.set_window_size(1400, 1000)


def sign_in(chrome, base: str, credential: str) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(f"{base}/ui/consumers/")  # a page without a session lands on the sign-in form
    wait_for(lambda: urlsplit(chrome.current_url).path == "/ui/sign-in", timeout=WAIT, message="the sign-in page")
    chrome.find_element(By.ID, "credential").send_keys(credential)
    chrome.find_element(By.CSS_SELECTOR, "form.sign-in button[type=submit]").click()
    # the path, not the URL: the sign-in page's own URL ends with ?next=/ui/consumers/ too, and the test's next
    # page load would race the form's POST (CI at 306485c: the audit page loaded before the session existed)
    wait_for(lambda: urlsplit(chrome.current_url).path == "/ui/consumers/", timeout=WAIT, message="signed in")


def test_an_operator_watches_lag_drain_live_then_stops_the_consumer(server, browser, runtime, monitor,  # noqa: F811
                                                                    topic_factory, kafka_bootstrap, tmp_path,
                                                                    screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    app, base = server
    api = app.test_client()  # the bootstrap admin, over the API
    topic = topic_factory(partitions=2)
    produce(kafka_bootstrap, topic, MESSAGES)
    created = api.post("/consumers/", json={
        "name": "orders-ui", "bootstrap_servers": [kafka_bootstrap], "topic": topic,
        "consumer_group": f"kcm-ui-{topic}",
        "downstream_processors": [{"processor_type": "test_collector",
                                   "config": {"path": str(tmp_path / "collected.txt")}}]})
    assert created.status_code == 201, created.json
    cid = created.json["id"]
    operator = api.post("/api-keys/", json={"name": "ui-operator", "role": "operator"}).json["token"]
    runtime.start_supervisor()
    monitor.start()

    sign_in(browser, base, operator)
    row = f"tr[data-consumer='{cid}']"
    wait_text(browser, f"{row} .lag-messages", lambda t: t == str(MESSAGES), "the list's lag before the start")
    assert "STOPPED" in text_of(browser, f"{row} .health") and "ui-operator" in text_of(browser, "#principal")
    shot(browser, screenshots / "consumers.png")

    browser.find_element(By.LINK_TEXT, "orders-ui").click()
    wait_text(browser, "#total-lag", lambda t: t == str(MESSAGES), "the consumer page's lag before the start")
    browser.execute_script("window.kcmSamePage = 'not reloaded';")
    assert api.post(f"/consumers/{cid}/start/").status_code == 200
    wait_text(browser, "#total-lag", lambda t: t == "0", "the lag drained to 0 on the open page")
    wait_text(browser, "#replicas tbody tr td:nth-child(2)", lambda t: t.startswith("RUNNING"), "a running replica")
    assert browser.execute_script("return window.kcmSamePage") == "not reloaded"  # htmx swapped, no reload
    rows = browser.find_elements(By.CSS_SELECTOR, "#partitions tbody tr")
    assert len(rows) == 2 and all(r.find_element(By.CSS_SELECTOR, ".lag-messages").text == "0" for r in rows)
    wait_for(lambda: browser.execute_script("return document.querySelectorAll('.chart .u-over').length") == 2,
             timeout=WAIT, message=f"the lag and throughput charts drawn (console: {console(browser)})")
    shot(browser, screenshots / "consumer.png")

    browser.find_element(By.CSS_SELECTOR, "form[action$='/stop'] button").click()
    wait_text(browser, ".flash", lambda t: "stop requested" in t, "the stop's outcome")
    wait_text(browser, "#desired-state", lambda t: t == "stopped", "the desired state")
    wait_text(browser, ".state-bar .badge", lambda t: t == "STOPPED", "the replica state STOPPED")
    assert api.get(f"/consumers/{cid}/").json["desired_state"] == "stopped"

    # the offset reset: a dry run first, shown per partition; nothing moves until the confirm
    committed = {p["partition"]: p["committed"] for p in api.get(f"/consumers/{cid}/offsets/").json["partitions"]}
    assert sum(committed.values()) == MESSAGES
    Select(browser.find_element(By.ID, "o-to")).select_by_value("earliest")
    browser.find_element(By.CSS_SELECTOR, "#offsets-form button[type=submit]").click()
    wait_text(browser, "#offsets-preview caption", lambda t: "nothing has changed" in t, "the dry run")
    preview = [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
               for row in browser.find_elements(By.CSS_SELECTOR, "#offsets-preview tbody tr")]
    assert preview == [[str(p), str(committed[p]), "0"] for p in sorted(committed)]
    assert {p["partition"]: p["committed"] for p in api.get(f"/consumers/{cid}/offsets/").json["partitions"]} \
        == committed  # the dry run changed nothing
    shot(browser, screenshots / "offsets-dry-run.png")
    browser.find_element(By.CSS_SELECTOR, "#offsets-confirm button[type=submit]").click()
    wait_text(browser, ".flash", lambda t: "Offsets reset" in t, "the reset's outcome")
    wait_text(browser, "#total-lag", lambda t: t == str(MESSAGES), "the lag back at every message after the reset")

    browser.get(f"{base}/ui/supervisors/")
    wait_text(browser, "#supervisors tbody", lambda t: runtime.env["KCM_SUPERVISOR_ID"] in t, "the supervisor")
    shot(browser, screenshots / "supervisors.png")

    browser.find_element(By.CSS_SELECTOR, "form.who button").click()  # sign out, then in as the admin
    sign_in(browser, base, ADMIN_TOKEN)
    browser.get(f"{base}/ui/audit/")
    wait_text(browser, "#audit tbody", lambda t: "consumer.stop" in t and "ui-operator" in t, "the audit trail")
    shot(browser, screenshots / "audit.png")
