"""What the browser tests share: the app on a real socket, and Debian's headless Chromium driven by Selenium."""
from __future__ import annotations

import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

from werkzeug.serving import make_server

from api.context import EXTENSION

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT = 60  # seconds: generous on a loaded 2-core machine; every wait polls


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    assert browser and driver, ("chromium and chromium-driver are not installed: "
                                "apt-get install -y chromium chromium-driver (.ci/run installs them)")
    return browser, driver


@contextmanager
def served(app):
    """``app`` on 127.0.0.1 (werkzeug, threaded), as a browser reaches it: yields its base URL."""
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join(10)
        app.extensions[EXTENSION].close()


@contextmanager
def chromium(profile: Path, logs: dict[str, str]):
    """A headless Chromium with a fresh profile under ``profile`` and the given ``goog:loggingPrefs``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", logs)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.set_page_load_timeout(WAIT)
    try:
        yield browser
    finally:
        browser.quit()


def console(browser) -> list[str]:
    """The page's console errors (a script that failed), for a failure's message."""
    return [entry["message"] for entry in browser.get_log("browser") if entry.get("level") == "SEVERE"]
