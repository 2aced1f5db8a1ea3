"""Run the installed ``kcm`` console script as a user would, against the real Kafka."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

KCM = Path(sys.executable).parent / "kcm"


@pytest.fixture
def kcm(kafka_bootstrap):
    """``kcm(*args, input=None, env=None)`` -> CompletedProcess; KCM_KAFKA_BOOTSTRAP is the test broker."""
    assert KCM.exists(), f"{KCM} is missing: `make install` installs the console script"

    def run(*args: str, input: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "KCM_KAFKA_BOOTSTRAP": kafka_bootstrap, **(env or {})}
        done = subprocess.run([str(KCM), *args], input=input if input is not None else b"", env=full_env,
                              capture_output=True, timeout=120)
        done.out = done.stdout.decode()
        done.err = done.stderr.decode()
        assert "Traceback" not in done.err, done.err
        return done

    return run


@pytest.fixture
def new_topic_name(kafka_admin):
    """A topic name nobody uses yet; the topic is deleted after the test if the test created it."""
    name = f"kcm-cli-test-{uuid.uuid4().hex[:12]}"
    yield name
    if name in kafka_admin.list_topics(timeout=10).topics:
        kafka_admin.delete_topics([name], operation_timeout=30)[name].result(30)


# ------------------------------------------------------------------ the API commands: a real API on a real socket
class LiveApi:
    """The API served by werkzeug on 127.0.0.1 (threads), with authentication on; ``get`` etc. check outcomes
    over HTTP as the bootstrap admin, outside the CLI."""

    def __init__(self, url: str, token: str):
        import requests

        self.url = url
        self.token = token
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, route: str, **kwargs):
        response = self.http.request(method, self.url + route, timeout=30, **kwargs)
        return response.status_code, (response.json() if response.content else None)

    def get(self, route: str):
        status, body = self.call("GET", route)
        assert status == 200, (route, status, body)
        return body


@pytest.fixture
def live_api(pg_clean, pg_url, redis_client, redis_test_url):
    import threading

    from werkzeug.serving import make_server

    from api import create_app
    from api.context import EXTENSION
    from tests.integration.api.conftest import ADMIN_TOKEN, test_settings

    app = create_app(test_settings(pg_url, redis_test_url))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="kcm-cli-test-api", daemon=True)
    thread.start()
    try:
        yield LiveApi(f"http://127.0.0.1:{server.server_port}", ADMIN_TOKEN)
    finally:
        server.shutdown()
        thread.join(10)
        app.extensions[EXTENSION].close()


@pytest.fixture
def config_home(tmp_path):
    """The CLI's XDG_CONFIG_HOME: its profile file is the test's, never the developer's."""
    home = tmp_path / "config"
    home.mkdir()
    return home


@pytest.fixture
def cli(live_api, kafka_bootstrap, config_home):
    """``cli(*args, input=None, env=None, auth=True)``: the installed ``kcm`` against ``live_api`` (KCM_API_URL and
    KCM_TOKEN set unless ``auth=False``); ``.out``/``.err`` are text, ``.json`` the parsed stdout."""
    assert KCM.exists(), f"{KCM} is missing: `make install` installs the console script"
    base = {k: v for k, v in os.environ.items() if k not in ("KCM_API_URL", "KCM_TOKEN", "KCM_PROFILE", "KCM_OUTPUT")}
    base.update({"KCM_KAFKA_BOOTSTRAP": kafka_bootstrap, "XDG_CONFIG_HOME": str(config_home)})

    def run(*args: str, input: str | None = None, env: dict | None = None, auth: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        full_env = {**base, **({"KCM_API_URL": live_api.url, "KCM_TOKEN": live_api.token} if auth else {}),
                    **(env or {})}
        done = subprocess.run([str(KCM), *args], input=(input or "").encode(), env=full_env, capture_output=True,
                              timeout=timeout)
        done.out = done.stdout.decode()
        done.err = done.stderr.decode()
        assert "Traceback" not in done.out + done.err, done.out + done.err
        done.json = _parsed(done.out)
        return done

    return run


def _parsed(text: str):
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


@pytest.fixture
def consumer_file(tmp_path):
    """``consumer_file(body, name="c.yaml")``: the body written as YAML, its path as a string."""
    import yaml

    def write(body: dict, name: str = "consumer.yaml") -> str:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return str(path)

    return write
