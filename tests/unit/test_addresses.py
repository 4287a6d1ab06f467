"""The address rule of client-chosen upstreams: every internal kind and every IPv6 form that embeds one."""

from __future__ import annotations

import pytest

from proxy_core.services.addresses import AddressRule, address_kind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("198.18.0.1", "private"),
        ("fd12:3456::1", "private"),  # unique local
        ("fc00::1", "private"),
        ("fec0::1", "private"),  # site-local
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("168.63.129.16", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "reserved"),
        ("100::1", "reserved"),
        # IPv6 forms that carry an IPv4 address: the kind of the address they lead to
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:0:192.168.0.1", "private"),  # IPv4-translated (SIIT)
        ("::10.0.0.1", "private"),  # IPv4-compatible
        ("::127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
        ("2002:0a00:0005::", "private"),  # 6to4 of 10.0.0.5
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::10.0.0.5", "private"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("64:ff9b:1::8.8.8.8", "private"),  # local-use NAT64: refused whatever it embeds
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1 (obfuscated)
        ("not-an-address", "invalid"),
    ],
)
def test_every_internal_kind_is_recognised(address: str, kind: str) -> None:
    assert address_kind(address) == kind


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "203.0.113.10", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:0808:0808::1", "64:ff9b::8.8.8.8"],
)
def test_public_addresses_and_forms_embedding_them_pass(address: str) -> None:
    assert address_kind(address) is None
    assert AddressRule().refusal("api.example.com", [address]) is None


def test_a_host_with_any_refused_address_or_none_is_refused() -> None:
    rule = AddressRule()
    assert rule.refusal("x.example.com", []) == "it resolves to no address"
    assert rule.refusal("x.example.com", ["8.8.8.8", "10.0.0.5"]) == "its host resolves to a private address"
    assert rule("x.example.com", ["8.8.8.8", "::ffff:127.0.0.1"])
    assert not rule("x.example.com", ["8.8.8.8"])


def test_naming_a_literal_allows_exactly_that_address() -> None:
    rule = AddressRule(["127.0.0.1", "10.0.0.7", "::1"])
    assert not rule("127.0.0.1", ["127.0.0.1"])
    assert not rule("10.0.0.7", ["10.0.0.7"])
    assert not rule("[::1]", ["::1"])
    assert rule("127.0.0.2", ["127.0.0.2"])  # another loopback address, not named
    assert rule("10.0.0.8", ["10.0.0.8"])
    assert rule("models.example.com", ["127.0.0.1"])  # a name resolving to the named literal


def test_naming_localhost_allows_loopback_for_that_name_only() -> None:
    rule = AddressRule(["localhost", "gpu.localhost."])
    assert not rule("localhost", ["127.0.0.1", "::1"])
    assert not rule("LocalHost.", ["127.0.0.1"])
    assert not rule("gpu.localhost", ["127.0.0.1"])
    assert rule("localhost", ["10.0.0.5"])  # loopback only
    assert rule("other.localhost", ["127.0.0.1"])


def test_naming_a_dns_name_allows_no_internal_address() -> None:
    rule = AddressRule(["models.example.com"])
    assert rule.refusal("models.example.com", ["10.0.0.5"]) == "its host resolves to a private address"
    assert rule("models.example.com", ["127.0.0.1"])
    assert not rule("models.example.com", ["203.0.113.10"])


@pytest.mark.parametrize(
    ("named", "address"),
    [
        ("169.254.169.254", "169.254.169.254"),
        ("100.100.100.200", "100.100.100.200"),
        ("fd00:ec2::254", "fd00:ec2::254"),
        ("169.254.1.1", "169.254.1.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("224.0.0.1", "224.0.0.1"),
        ("240.0.0.1", "240.0.0.1"),
    ],
)
def test_metadata_link_local_and_unroutable_stay_refused_even_when_named(named: str, address: str) -> None:
    assert AddressRule([named])(named, [address])
