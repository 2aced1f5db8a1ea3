"""HTTPS and proxies: ``Strict-Transport-Security`` on every response served over HTTPS, and the
``X-Forwarded-*`` headers of a TLS-terminating proxy trusted only from ``KCM_TRUSTED_PROXIES``.

werkzeug's ``ProxyFix`` believes whoever sends the headers; here it is applied only to a request whose peer
(the TCP connection's address) is one of the trusted proxies, so a client that reaches gunicorn directly cannot
claim another address (rate limits, the audit trail) or claim HTTPS."""
from __future__ import annotations

import ipaddress

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from schema.settings import SettingsError

HSTS = "max-age=31536000; includeSubDomains"  # one year: browsers refuse plain HTTP to this host from then on
PROXY_HEADERS = {"x_for": 1, "x_proto": 1, "x_host": 1, "x_port": 1, "x_prefix": 1}  # one trusted hop


def trusted_networks(text: str) -> tuple:
    networks = []
    for index, entry in enumerate(e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SettingsError(f"KCM_TRUSTED_PROXIES entry {index} is not an IP address or CIDR") from None
    return tuple(networks)


class TrustedProxyFix:
    """``ProxyFix`` for requests from a trusted proxy; every other request is served as it arrived."""

    def __init__(self, wsgi_app, networks: tuple):
        self.wsgi_app = wsgi_app
        self.fixed = ProxyFix(wsgi_app, **PROXY_HEADERS)
        self.networks = networks

    def _trusted(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address((peer or "").split("%")[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks if network.version == address.version)

    def __call__(self, environ, start_response):
        if self._trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.wsgi_app(environ, start_response)


def install_transport(app: Flask, settings) -> None:
    networks = trusted_networks(settings.trusted_proxies)
    if networks:
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, networks)

    @app.after_request
    def _strict_transport_security(response):
        if request.is_secure:  # over plain HTTP the header means nothing (RFC 6797 says ignore it)
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
