"""HTTPS: the Procfile's web command serves TLS with KCM_TLS_CERT/KCM_TLS_KEY and the API sends
Strict-Transport-Security; behind a proxy, X-Forwarded-* count only when the peer is in KCM_TRUSTED_PROXIES."""
from __future__ import annotations

import datetime
import http.client
import json
import os
import shlex
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.context import EXTENSION
from tests.integration.deploy.conftest import free_port
from tests.integration.security.conftest import make_app
from tests.support.kafka import wait_for

ROOT = Path(__file__).resolve().parents[3]
HSTS = "Strict-Transport-Security"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_the_procfile_web_command_serves_https_with_hsts(sqlite_url, redis_client, redis_test_url, tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "PORT": str(port),
           "WEB_CONCURRENCY": "1", "KCM_DATABASE_URL": sqlite_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_TLS_CERT": str(cert), "KCM_TLS_KEY": str(key), "HOME": str(tmp_path)}
    log = tmp_path / "web.log"
    proc = subprocess.Popen(shlex.split(procfile["web"]), cwd=ROOT, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    context = ssl.create_default_context(cafile=str(cert))  # verifies the chain and the name "localhost"

    def get(path: str):
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def answered():
        assert proc.poll() is None, log.read_text()
        try:
            return get("/openapi.json")
        except OSError:
            return None

    try:
        status, headers, body = wait_for(answered, timeout=60, message="gunicorn answering over TLS")
        assert status == 200 and "/consumers/" in json.loads(body)["paths"]
        assert headers[HSTS].startswith("max-age=31536000")
        status, headers, _ = get("/consumers/")  # an error response carries it too
        assert status == 401 and HSTS in headers
        plain = http.client.HTTPConnection("localhost", port, timeout=5)
        with pytest.raises((http.client.HTTPException, OSError)):  # plain HTTP on the TLS port gets no API
            plain.request("GET", "/openapi.json")
            plain.getresponse()
        assert not (tmp_path / ".gunicorn").exists()  # no control socket in $HOME to clobber
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.fixture
def proxied_app(pg_clean, redis_client, redis_test_url, pg_url):
    app = make_app(pg_url, redis_test_url, trusted_proxies="10.0.0.5, fd00::/8")
    yield app
    app.extensions[EXTENSION].close()


def test_forwarded_headers_count_only_from_a_trusted_proxy(proxied_app, pg_engine):
    client = proxied_app.test_client(token=None)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    trusted = client.get("/openapi.json", headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert trusted.status_code == 200 and HSTS in trusted.headers
    untrusted = client.get("/openapi.json", headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.6"})
    assert untrusted.status_code == 200 and HSTS not in untrusted.headers  # plain HTTP as far as kcm knows
    # the address the audit trail records for a refused change
    client.post("/consumers/", json={}, headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    client.post("/consumers/", json={}, headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.6"})
    with pg_engine.connect() as conn:
        addresses = [row[0] for row in conn.execute(sa.text(
            "SELECT client_address FROM audit_events WHERE path LIKE '/consumers%' ORDER BY occurred_at"))]
    assert addresses == ["203.0.113.9", "10.0.0.6"]
