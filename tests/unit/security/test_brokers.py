"""schema.brokers: KCM_ALLOWED_BROKERS (names, globs, CIDRs) and the always-refused link-local/metadata hosts."""
from __future__ import annotations

import socket

import pytest

from schema.brokers import BrokerPolicy

OPEN = BrokerPolicy()


@pytest.mark.parametrize("host", ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254",
                                  "::ffff:169.254.169.254", "metadata.google.internal", "METADATA.google.internal.",
                                  "100.100.100.200", "instance-data"])
def test_link_local_and_metadata_hosts_are_refused_even_without_an_allowlist(host):
    assert OPEN.check_host(host) is not None and "KCM_ALLOWED_BROKERS" in OPEN.check_host(host)


@pytest.mark.parametrize("host", ["kafka", "10.0.0.5", "127.0.0.1", "::1", "b-1.msk.amazonaws.com"])
def test_without_an_allowlist_other_hosts_are_allowed(host):
    assert OPEN.check_host(host) is None


def test_an_allowlist_admits_only_its_names_globs_and_networks():
    policy = BrokerPolicy.parse("kafka-1.internal, *.kafka.prod, 10.0.0.0/8, fd12::/16")
    for host in ("kafka-1.internal", "KAFKA-1.internal", "b1.kafka.prod", "10.1.2.3", "fd12::9"):
        assert policy.check_host(host) is None, host
    for host in ("kafka-2.internal", "kafka.prod", "evil.example", "11.0.0.1", "127.0.0.1", "fd13::1"):
        assert "not in KCM_ALLOWED_BROKERS" in policy.check_host(host), host


def test_metadata_needs_an_explicit_entry_a_wide_one_does_not_count():
    assert BrokerPolicy.parse("0.0.0.0/0, *").check_host("169.254.169.254") is not None
    assert BrokerPolicy.parse("*").check_host("metadata.google.internal") is not None
    assert BrokerPolicy.parse("169.254.169.254").check_host("169.254.169.254") is None
    assert BrokerPolicy.parse("169.254.10.0/24").check_host("169.254.10.7") is None
    assert BrokerPolicy.parse("metadata.google.internal").check_host("metadata.google.internal") is None


def test_servers_and_urls_use_the_same_rule():
    policy = BrokerPolicy.parse("*.kafka.prod")
    assert set(policy.check_servers(["a.kafka.prod:9092", "evil:9092", "[fe80::1]:9092"])) == {1, 2}
    assert policy.check_url("https://a.kafka.prod/token") is None
    assert policy.check_url("https://evil.example/token") is not None
    assert OPEN.check_url("http://169.254.169.254/latest/meta-data/") is not None
    assert OPEN.check_url("gopher://kafka/") is not None
    assert OPEN.check_url("https://user:pw@idp.example/token") is not None


def test_a_name_that_resolves_to_metadata_is_refused_at_the_worker():
    def resolver(host, port):
        answers = {"rebind.example": "169.254.169.254", "kafka.example": "10.0.0.1"}
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 0))]

    assert OPEN.check_resolved(["kafka.example:9092", "rebind.example:9092"], resolver) .keys() == {1}
    assert BrokerPolicy.parse("169.254.169.254, *.example").check_resolved(["rebind.example:1"], resolver) == {}


def test_a_malformed_allowlist_is_an_error_naming_the_setting():
    with pytest.raises(ValueError, match="KCM_ALLOWED_BROKERS entry 1"):
        BrokerPolicy.parse("kafka, bad host!")
