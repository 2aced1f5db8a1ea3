"""The broker address policy (SSRF): which hosts a consumer, a forwarder or a token endpoint may name.

``KCM_ALLOWED_BROKERS`` is a comma-separated list of host names, globs (``*.kafka.internal``) and CIDRs
(``10.0.0.0/8``). Set, every host must match one entry; unset, any host may be named. Either way link-local
addresses (169.254.0.0/16, fe80::/10) and cloud metadata endpoints are refused unless an entry names them
explicitly (the exact host, or a CIDR inside the refused range; ``*`` or ``0.0.0.0/0`` does not count).

Standard library only: the API schemas, the worker and the processors share it (an HTTP sink will use
``check_url``). Messages name the rule and the entry's position, never a resolved secret.
"""
from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from schema import names

LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",    # AWS ECS task metadata
    "fd00:ec2::254",    # AWS IMDS over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",      # Oracle Cloud (classic)
))
METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.azure.com", "metadata.packet.net", "metadata.platformequinix.com",
})
SETTING = "KCM_ALLOWED_BROKERS"
URL_SCHEMES = ("https", "http")


class BrokerNotAllowed(ValueError):
    """A host the policy refuses; the message names the rule (and the host only when it was given as is)."""


@dataclass(frozen=True)
class BrokerPolicy:
    hosts: frozenset[str] = frozenset()  # exact names, lower-case, no trailing dot
    globs: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> BrokerPolicy:
        hosts, globs, networks = set(), [], []
        for index, raw in enumerate(e.strip() for e in (text or "").split(",")):
            if not raw:
                continue
            entry = raw.lower().rstrip(".")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if any(c in entry for c in "*?["):
                globs.append(entry)
            elif names.is_host(entry):
                hosts.add(entry)
            else:
                raise ValueError(f"{SETTING} entry {index} is not a host name, glob or CIDR")
        return cls(frozenset(hosts), tuple(globs), tuple(networks))

    @classmethod
    def of(cls, settings) -> BrokerPolicy:
        return cls.parse(settings.allowed_brokers)

    @property
    def restricted(self) -> bool:
        return bool(self.hosts or self.globs or self.networks)

    # ------------------------------------------------------------------ hosts
    def check_host(self, host: str) -> str | None:
        """Why ``host`` may not be named (a message), or None when it may."""
        name = host.strip().strip("[]").lower().rstrip(".")
        address = _address(name)
        if _refused_always(name, address) and not self._named_explicitly(name, address):
            return (f"{_what(name, address)} is refused (link-local and cloud metadata addresses); name it "
                    f"explicitly in {SETTING} to allow it.")
        if self.restricted and not self._matches(name, address):
            return f"Host is not in {SETTING} (the brokers this deployment may connect to)."
        return None

    def _matches(self, name: str, address) -> bool:
        if address is not None:
            return name in self.hosts or any(address in net for net in self.networks if net.version == address.version)
        return name in self.hosts or any(fnmatch.fnmatchcase(name, glob) for glob in self.globs)

    def _named_explicitly(self, name: str, address) -> bool:
        if name in self.hosts:
            return True
        if address is None:
            return False
        return any(address in net and any(net.subnet_of(ll) for ll in LINK_LOCAL if ll.version == net.version)
                   or (address in net and net.num_addresses == 1)
                   for net in self.networks if net.version == address.version)

    # ------------------------------------------------------------------ callers' forms
    def check_servers(self, servers: Iterable[str]) -> dict[int, str]:
        """Each refused ``host:port`` of a bootstrap list, by index."""
        refused = {}
        for index, server in enumerate(servers):
            message = self.check_host(host_of(server))
            if message is not None:
                refused[index] = message
        return refused

    def check_url(self, url: str) -> str | None:
        """Why a URL (an OAUTHBEARER token endpoint, later an HTTP sink) may not be called, or None."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return "Not a valid URL."
        if parts.scheme not in URL_SCHEMES or not host:
            return f"Must be an {' or '.join(URL_SCHEMES)} URL with a host."
        if parts.username or parts.password:
            return "Must not carry credentials in the URL (use a secret reference setting)."
        if not names.is_host(host):
            return "Not a valid host name or IP address."
        return self.check_host(host)

    def check_resolved(self, servers: Iterable[str], resolver=socket.getaddrinfo) -> dict[int, str]:
        """The worker's second look: a host name whose DNS answer is a refused address (``evil.example`` ->
        169.254.169.254) is refused too, unless that address is named explicitly. Unresolvable: left to Kafka."""
        refused = {}
        for index, server in enumerate(servers):
            host = host_of(server).strip("[]")
            if _address(host) is not None:
                continue
            try:
                answers = {info[4][0] for info in resolver(host, None)}
            except (OSError, UnicodeError):
                continue
            for answer in sorted(answers):
                address = _address(answer.split("%")[0])
                if address is not None and _refused_always("", address) and not self._named_explicitly("", address):
                    refused[index] = (f"Host resolves to a link-local or cloud metadata address; name that address "
                                      f"explicitly in {SETTING} to allow it.")
                    break
        return refused


def host_of(server: str) -> str:
    """The host of ``host:port`` (``[v6]:port`` too)."""
    server = server.strip()
    if server.startswith("["):
        return server[1:].partition("]")[0]
    return server.rpartition(":")[0] if ":" in server else server


def _address(name: str):
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:169.254.169.254 is that address
        return address.ipv4_mapped
    return address


def _refused_always(name: str, address) -> bool:
    if address is not None:
        return address in METADATA_ADDRESSES or any(address in net for net in LINK_LOCAL if net.version == address.version)
    return name in METADATA_NAMES


def _what(name: str, address) -> str:
    if address is None:
        return "A cloud metadata host name"
    return "A cloud metadata address" if address in METADATA_ADDRESSES else "A link-local address"
