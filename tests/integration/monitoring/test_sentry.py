"""KCM_SENTRY_DSN: an exception raised in a request handler reaches a Sentry endpoint (a receiver on 127.0.0.1
standing in for sentry.io), through the logging setup every process calls, and the event carries no secret: not
the bearer token, not a secret reference's value, not a header, local variable or request body."""
from __future__ import annotations

import gzip
import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api.services.consumers import ConsumerService
from schema import logs
from tests.integration.api.conftest import ADMIN_TOKEN, make_app
from tests.integration.api.test_gunicorn import free_port
from tests.support.kafka import wait_for

SECRET_VALUE = "pw-sentry-4d2b9e-hidden"


class SentryReceiver:
    def __init__(self):
        self.port = free_port()
        self.envelopes: list[bytes] = []
        envelopes = self.envelopes

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        found = []
        for envelope in self.envelopes:
            for line in envelope.splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and ("exception" in item or "logentry" in item or "message" in item):
                    found.append(item)
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sentry(monkeypatch):
    import sentry_sdk  # the `sentry` extra: this test needs it installed

    receiver = SentryReceiver()
    monkeypatch.setenv("KCM_SENTRY_DSN", f"http://kcmtestkey@127.0.0.1:{receiver.port}/1")
    monkeypatch.setenv("KCM_SECRET_SENTRY_TEST_PASSWORD", SECRET_VALUE)  # what a secret reference would read
    monkeypatch.setenv("KCM_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
    handler = logs.setup_logging("web")  # what every process calls at start
    yield receiver
    logging.getLogger().removeHandler(handler)
    sentry_sdk.init()  # no DSN: nothing is sent by later tests
    logs._error_reporting = None
    receiver.close()


def test_an_exception_in_a_request_handler_reaches_sentry_without_secrets(sentry, pg_clean, pg_url,
                                                                          redis_test_url, monkeypatch):
    import sentry_sdk

    def failing_page(self, *args, **kwargs):
        password = SECRET_VALUE  # noqa: F841 (a local variable that must not be sent)
        raise RuntimeError(f"the listing broke while holding {SECRET_VALUE}")

    monkeypatch.setattr(ConsumerService, "page", failing_page)
    app = make_app(pg_url, redis_test_url)
    response = app.test_client().get("/consumers/", headers={"X-Debug-Secret": SECRET_VALUE})
    assert response.status_code == 500
    assert set(response.json) == {"code", "status", "message", "errors"} and SECRET_VALUE not in response.text
    logging.getLogger("kcm.test").error("a known condition, logged without an exception")
    sentry_sdk.flush(10)

    events = wait_for(sentry.events, timeout=20, message="an event at the Sentry receiver")
    assert [e["exception"]["values"][-1]["type"] for e in events if "exception" in e] == ["RuntimeError"]
    assert not [e for e in events if "exception" not in e], "an ERROR line without an exception became an event"
    event = next(e for e in events if "exception" in e)
    assert event["exception"]["values"][-1]["value"] == "the listing broke while holding [Filtered]"
    assert event["tags"]["kcm_process"] == "web"
    assert event["request"]["url"].endswith("/consumers/")
    assert {h.lower() for h in event["request"].get("headers", {})} <= logs.SAFE_HEADERS
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames and all("vars" not in f for f in frames)
    raw = b"\n".join(sentry.envelopes)
    for secret in (SECRET_VALUE, ADMIN_TOKEN):
        assert secret.encode() not in raw, secret


def test_without_a_dsn_nothing_is_set_up(monkeypatch):
    monkeypatch.delenv("KCM_SENTRY_DSN", raising=False)
    assert logs.setup_error_reporting("lag") is False


def test_secret_values_cover_credentials_secret_references_and_url_passwords():
    found = logs.secret_values({
        "KCM_BOOTSTRAP_ADMIN_TOKEN": "t" * 40, "KCM_SECRET_KAFKA": "kafka-password",
        "KCM_DATABASE_URL": "postgresql://kcm:db-password@db/kcm", "KCM_ALERT_WEBHOOK_URL": "https://h/x/hook-path",
        "KCM_LOG_LEVEL": "INFO", "KCM_SUPERVISOR_ID": "host-1", "HOME": "/root"})
    assert set(found) == {"t" * 40, "kafka-password", "db-password", "https://h/x/hook-path", "/x/hook-path"}
