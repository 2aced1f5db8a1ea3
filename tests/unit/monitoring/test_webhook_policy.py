"""The webhook URL obeys the broker address policy (schema/brokers.py), and refusals never echo the URL."""
from __future__ import annotations

import pytest

from schema.settings import Settings
from supervisor.lag.webhook import refusal


def settings(**env) -> Settings:
    return Settings.from_env({f"KCM_{k.upper()}": v for k, v in env.items()})


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data",     # cloud metadata
    "http://metadata.google.internal/hook",
    "http://user:tok3n-in-url@hooks.example/x",    # credentials in the URL
    "ftp://hooks.example/x",
    "not a url",
])
def test_refused_webhook_urls_name_the_rule_not_the_url(url):
    reason = refusal(url, settings())
    assert reason is not None and reason.startswith("KCM_ALERT_WEBHOOK_URL: ")
    assert "tok3n-in-url" not in reason and "meta-data" not in reason


def test_allowed_brokers_restricts_the_webhook_host_too():
    restricted = settings(allowed_brokers="*.kafka.internal")
    assert "KCM_ALLOWED_BROKERS" in refusal("https://hooks.example/x", restricted)
    assert refusal("http://127.0.0.1:9/hook", settings()) is None


def test_retry_intervals_must_be_whole_positive_seconds():
    assert settings(alert_retry_intervals="1, 2,4").alert_retry_intervals == (1, 2, 4)
    for bad in ("0", "a,b", "1,-2"):
        with pytest.raises(ValueError, match="KCM_ALERT_RETRY_INTERVALS"):
            settings(alert_retry_intervals=bad)


def test_the_webhook_url_and_the_sentry_dsn_stay_out_of_the_settings_repr():
    text = repr(settings(alert_webhook_url="https://hooks.example/T0/secret-path", sentry_dsn="https://k3y@s.io/1"))
    assert "secret-path" not in text and "k3y" not in text
