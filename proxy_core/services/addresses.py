"""Which addresses a client-chosen upstream (``encoded_base_url``) may reach.

A URL a client chose must not become a way into the gateway's own network: its host may resolve
to no loopback, private, shared (CGNAT), link-local, cloud-metadata, unspecified, multicast or
reserved address, nor to an IPv6 address that carries one of those in its low bits (IPv4-mapped,
IPv4-compatible, SIIT, 6to4, NAT64, Teredo): a host or a translator on the way turns those into
the IPv4 address they embed. One rule, ``AddressRule``, is applied twice: by the policy check
before the call, and by the provider client's resolver when the connection is opened (so a DNS
answer that changed in between is refused too).

The operator can let a client reach an internal upstream by naming its host in
``ALLOWED_BASE_URLS``: an address literal (``http://10.0.0.7:8000/v1``) allows exactly that
address, ``localhost`` (or a name under ``.localhost``) allows loopback addresses for that name.
A DNS name (``https://models.example.com``) allows no internal address: a name can be pointed
anywhere after the operator looked at it. Link-local, metadata, unspecified, multicast and
reserved addresses are refused even when named: no OpenAI-compatible server lives there, but
cloud credentials do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Kinds an operator may allow by naming the host; every other kind is refused always.
LOOPBACK = "loopback"
INTERNAL_KINDS = frozenset({LOOPBACK, "private", "shared (CGNAT)"})

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean …
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
    )
)


def _networks(*pairs: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(network), kind) for network, kind in pairs)


_V4 = _networks(
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", LOOPBACK),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "private"),  # benchmarking, in practice used inside networks
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("169.254.0.0/16", "link-local"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes the broadcast address
)
_V6 = _networks(
    ("::/128", "unspecified"),
    ("::1/128", LOOPBACK),
    ("fc00::/7", "private"),  # unique local
    ("fec0::/10", "private"),  # site-local (deprecated)
    ("64:ff9b:1::/48", "private"),  # local-use NAT64: the operator's translator maps it anywhere
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("100::/64", "reserved"),  # discard-only
    ("::/8", "reserved"),  # what is left of it after the embedded forms below
)
# IPv6 prefixes whose low 32 bits are an IPv4 address a host or translator will reach.
_EMBEDS_LOW_32 = tuple(
    ipaddress.ip_network(network)
    for network in (
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b::/96",  # NAT64 well-known prefix
        "::/96",  # IPv4-compatible (deprecated)
    )
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to when it embeds one (6to4, Teredo, mapped, NAT64 …)."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address (de-obfuscated)
    if address in ipaddress.ip_network("::/127"):  # :: and ::1 are themselves, not IPv4-compatible
        return None
    for network in _EMBEDS_LOW_32:
        if address in network:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_kind(text: str) -> str | None:
    """What kind of non-public address ``text`` is (``"loopback"``, ``"metadata"`` …); None when public.

    Text that is no address at all is ``"invalid"``: a resolver that answers garbage is refused.
    """
    try:
        address: IPAddress = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return "invalid"
    if address in _METADATA:
        return "metadata"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_kind(str(embedded))
    for network, kind in _V4 if address.version == 4 else _V6:
        if address in network:
            return kind
    return None


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".").removeprefix("[").removesuffix("]")


class AddressRule:
    """The one address rule of client-chosen upstreams, for the policy check and the connect-time check.

    ``named_hosts``: the hosts of ``ALLOWED_BASE_URLS``. An address-literal host allows exactly
    its own address (if internal), ``localhost`` and ``*.localhost`` allow loopback addresses
    for themselves; nothing else is allowed by naming.
    """

    def __init__(self, named_hosts: Iterable[str] = ()) -> None:
        self._literals: set[IPAddress] = set()
        self._loopback_names: set[str] = set()
        for host in map(_normal_host, named_hosts):
            try:
                self._literals.add(ipaddress.ip_address(host))
            except ValueError:
                if host == "localhost" or host.endswith(".localhost"):
                    self._loopback_names.add(host)

    def refusal(self, host: str, addresses: Sequence[str]) -> str | None:
        """Why ``host`` may not be reached at ``addresses`` (None: it may). Every address must pass."""
        if not addresses:
            return "it resolves to no address"
        host = _normal_host(host)
        for text in addresses:
            kind = address_kind(text)
            if kind is None or (kind in INTERNAL_KINDS and self._named(host, text, kind)):
                continue
            return f"its host resolves to a {kind} address"
        return None

    def _named(self, host: str, text: str, kind: str) -> bool:
        if kind == LOOPBACK and host in self._loopback_names:
            return True
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return False
        return literal in self._literals and literal == ipaddress.ip_address(text.split("%", 1)[0])

    def __call__(self, host: str, addresses: Sequence[str]) -> bool:
        """True when the host's addresses are refused (the connect-time resolver's question)."""
        return self.refusal(host, addresses) is not None
