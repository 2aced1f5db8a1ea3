"""The rq job that POSTs one alert to ``KCM_ALERT_WEBHOOK_URL`` (run by the Procfile's ``deadletters`` rq worker,
which listens to ``kcm-alerts`` too). A failure raises, and rq retries at ``KCM_ALERT_RETRY_INTERVALS``.

The URL is read here, from the rq worker's environment, never from the job: it may carry a token in its path,
and the job lives in Redis. It goes through the broker address policy (``schema/brokers.py``) each time, on its
name and on what the name resolves to; redirects are not followed. Error messages name a status or an exception
type only, never the URL.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from schema.brokers import BrokerPolicy
from schema.settings import Settings

log = logging.getLogger("kcm.alerts")

TIMEOUT = 10.0
SETTING = "KCM_ALERT_WEBHOOK_URL"


class WebhookFailed(Exception):
    """The alert was not accepted; rq retries it. The message never contains the URL."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # a 3xx is a failure, not a new address
        return None


def refusal(url: str, settings: Settings) -> str | None:
    """Why the webhook URL may not be called (the address policy), or None."""
    policy = BrokerPolicy.of(settings)
    refused = policy.check_url(url)
    if refused is None:
        refused = next(iter(policy.check_resolved([urlsplit(url).netloc]).values()), None)
    return None if refused is None else f"{SETTING}: {refused}"


def deliver(alert: dict) -> int:
    """POST the alert as JSON; returns the HTTP status (2xx). Raises WebhookFailed for anything else."""
    settings = Settings.from_env()
    url = settings.alert_webhook_url
    if not url:
        log.warning("AlertDropped kind=%s consumer_id=%s: %s is not set", alert.get("kind"), alert.get("consumer_id"),
                    SETTING)
        return 0
    refused = refusal(url, settings)
    if refused is not None:
        raise WebhookFailed(refused)
    request = urllib.request.Request(url, data=json.dumps(alert).encode(), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "kcm-alerts", "Idempotency-Key": alert["alert_id"]})
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise WebhookFailed(f"the webhook answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookFailed(f"the webhook is unreachable ({type(reason).__name__})") from None
    log.info("AlertDelivered kind=%s status=%s consumer_id=%s http=%d", alert.get("kind"), alert.get("status"),
             alert.get("consumer_id"), status)
    return status
