"""deploy/gunicorn.conf.py keeps the web line's old settings, turns HTTPS on with KCM_TLS_CERT/KCM_TLS_KEY, and
opens no shared control socket."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONF = ROOT / "deploy" / "gunicorn.conf.py"


def loaded(env: dict) -> dict:
    """The settings gunicorn itself reads from the file (in a child: the file reads os.environ at import)."""
    code = ("import json, sys; from gunicorn.app.base import Application\n"
            "class A(Application):\n"
            "    def init(self, *a): return {}\n"
            "    def load(self): return None\n"
            f"sys.argv = ['gunicorn', '-c', {str(CONF)!r}, 'api:create_app()']\n"
            "a = A(); c = a.cfg\n"
            "print(json.dumps({'bind': c.bind, 'workers': c.workers, 'accesslog': c.accesslog, "
            "'errorlog': c.errorlog, 'certfile': c.certfile, 'keyfile': c.keyfile, "
            "'control_socket_disable': c.settings['control_socket_disable'].get(), 'is_ssl': c.is_ssl}))\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def test_defaults_match_the_old_web_line_and_no_control_socket(tmp_path):
    settings = loaded({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert settings["bind"] == ["127.0.0.1:8000"] and settings["workers"] == 2
    assert settings["accesslog"] == "-" and settings["errorlog"] == "-"
    assert settings["control_socket_disable"] is True and not settings["is_ssl"]
    custom = loaded({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PORT": "8123", "WEB_CONCURRENCY": "3"})
    assert custom["bind"] == ["127.0.0.1:8123"] and custom["workers"] == 3


def test_tls_needs_both_files(tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KCM_TLS_CERT": str(tmp_path / "cert.pem"),
           "KCM_TLS_KEY": str(tmp_path / "key.pem")}
    settings = loaded(env)
    assert settings["is_ssl"] and settings["certfile"] == str(tmp_path / "cert.pem")
    half = subprocess.run([sys.executable, "-c", f"exec(open({str(CONF)!r}).read())"],
                          env={**env, "KCM_TLS_KEY": ""}, capture_output=True, text=True, timeout=30)
    assert half.returncode != 0 and "set both" in half.stderr
