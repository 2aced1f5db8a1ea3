"""deploy/gunicorn.conf.py binds loopback, except on a Heroku dyno whose router needs every interface."""
import runpy
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

CONFIG = str(Path(__file__).resolve().parents[3] / "deploy" / "gunicorn.conf.py")


def test_binds_loopback_on_port_by_default(monkeypatch):
    monkeypatch.delenv("DYNO", raising=False)
    monkeypatch.setenv("PORT", "8123")
    assert runpy.run_path(CONFIG)["bind"] == ["127.0.0.1:8123"]


def test_binds_every_interface_on_a_heroku_dyno(monkeypatch):
    monkeypatch.setenv("DYNO", "web.1")
    monkeypatch.setenv("PORT", "41234")
    assert runpy.run_path(CONFIG)["bind"] == ["0.0.0.0:41234"]
