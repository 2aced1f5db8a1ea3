"""OIDC / JWT bearer tokens verified against a JWKS served on 127.0.0.1 by the test (RS256 and ES256), found
directly or through OIDC discovery; every forged, stale or misdirected token is a 401."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.context import EXTENSION
from tests.integration.api.conftest import VALID_CONSUMER, make_app

AUDIENCE = "kcm-api"


class Issuer:
    """A JWKS (and discovery document) on a local port, with an RSA and an EC signing key."""

    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _jwks(self) -> dict:
        keys = []
        for kid, key, alg in (("rsa-1", self.rsa, "RS256"), ("ec-1", self.ec, "ES256")):
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}

    def _handler(self):
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path == "/jwks.json":
                    body = issuer._jwks()
                elif self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks.json"}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def token(self, alg="RS256", **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": "alice@example.com", "iat": now, "exp": now + 300,
                   "roles": ["admin"], **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        if alg == "RS256":
            return jwt.encode(payload, self.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
        return jwt.encode(payload, self.ec, algorithm="ES256", headers={"kid": "ec-1"})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def issuer():
    served = Issuer()
    yield served
    served.close()


@pytest.fixture(params=["jwks_url", "discovery"])
def oidc_app(request, issuer, pg_clean, redis_client, redis_test_url, pg_url):
    jwks_url = f"{issuer.url}/jwks.json" if request.param == "jwks_url" else ""
    app = make_app(pg_url, redis_test_url, oidc_issuer=issuer.url, oidc_audience=AUDIENCE, oidc_jwks_url=jwks_url)
    yield app
    app.extensions[EXTENSION].close()


def call(app, token, method="GET", path="/consumers/", body=None):
    return app.test_client(token=token).open(path, method=method, json=body)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_valid_jwt_authenticates_with_the_role_of_its_claim(oidc_app, issuer, alg):
    assert call(oidc_app, issuer.token(alg)).status_code == 200
    assert call(oidc_app, issuer.token(alg), "POST", "/consumers/", VALID_CONSUMER).status_code == 201
    viewer = issuer.token(alg, roles=["viewer", "unrelated-role"])
    assert call(oidc_app, viewer).status_code == 200
    assert call(oidc_app, viewer, "POST", "/consumers/", VALID_CONSUMER).status_code == 403
    events = call(oidc_app, issuer.token(alg), "GET", "/audit/").json
    assert {e["principal_id"] for e in events if e["action"] == "consumer.create"} == {"alice@example.com"}


def test_a_jwt_without_a_kcm_role_is_403(oidc_app, issuer):
    response = call(oidc_app, issuer.token(roles=None))
    assert response.status_code == 403 and "no kcm role" in response.json["message"]


def test_kcm_scopes_limit_a_jwt_to_its_groups(oidc_app, issuer):
    admin = issuer.token()
    billing = call(oidc_app, admin, "POST", "/consumers/", {**VALID_CONSUMER, "consumer_group": "billing-1"}).json
    other = call(oidc_app, admin, "POST", "/consumers/", {**VALID_CONSUMER, "consumer_group": "search-1"}).json
    scoped = issuer.token(kcm_scopes=["billing-*"])
    assert [c["id"] for c in call(oidc_app, scoped).json] == [billing["id"]]
    assert call(oidc_app, scoped, path=f"/consumers/{other['id']}/").status_code == 404
    assert call(oidc_app, issuer.token(kcm_scopes=[])).json == []  # an empty list: no group at all


def _hs256_with_public_key(issuer) -> str:
    """The classic algorithm-confusion forgery: HMAC keyed with the issuer's public key."""
    import base64
    import hashlib
    import hmac

    public_pem = issuer.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64(json.dumps({"iss": issuer.url, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300,
                              "roles": ["admin"]}).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _alg_none(issuer) -> str:
    now = int(time.time())
    return jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300, "roles": ["admin"]},
                      None, algorithm="none")


@pytest.mark.parametrize("forge", [
    lambda i: i.token(exp=int(time.time()) - 3600),
    lambda i: i.token(nbf=int(time.time()) + 3600),
    lambda i: i.token(iss="http://127.0.0.1:1/another-issuer"),
    lambda i: i.token(aud="another-audience"),
    lambda i: i.token(exp=None),
    _alg_none,
    _hs256_with_public_key,
    lambda i: i.token()[:-6] + "AAAAAA",  # a broken signature
], ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-expiry", "alg-none",
        "hs256-with-public-key", "bad-signature"])
def test_forged_stale_or_misdirected_jwts_are_401(oidc_app, issuer, forge):
    token = forge(issuer)
    response = call(oidc_app, token, "POST", "/consumers/", VALID_CONSUMER)
    assert response.status_code == 401, response.json
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert token not in response.get_data(as_text=True)
    assert call(oidc_app, issuer.token(), "GET", "/consumers/").json == []  # nothing was created
