"""The ``encoded_base_url`` policy: a client-chosen upstream is a server-side request forgery risk.

A client may name its own OpenAI-compatible upstream (for example a model it serves itself) by
putting a URL-safe base64 URL into the path. It is honoured only when it falls under an operator
allow-list (``ALLOWED_BASE_URLS``, empty by default, so the feature is off), uses http(s), carries
no user-info or fragment, and resolves to no address ``AddressRule`` refuses (loopback, private,
metadata …; see ``addresses``), even when a prefix matches (a DNS name can be pointed anywhere).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from proxy_core.errors import InvalidRequestError, PermissionDeniedError
from proxy_core.services.addresses import AddressRule

_URLSAFE_B64 = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    path: str

    def covers(self, other: _Origin) -> bool:
        """True when ``other`` is this origin and its path lies under this path (segment-wise)."""
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        prefix = self.path.rstrip("/")
        return other.path == prefix or other.path.startswith(prefix + "/") or not prefix


def decode_base_url(encoded: str) -> str:
    """Decode URL-safe base64 (padding optional) into a URL string; 400 when it is not."""
    if not _URLSAFE_B64.match(encoded):
        raise _invalid("not URL-safe base64")
    padded = encoded.rstrip("=") + "=" * (-len(encoded.rstrip("=")) % 4)
    try:
        return base64.urlsafe_b64decode(padded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid("not URL-safe base64 of a UTF-8 URL") from None


def _invalid(reason: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid encoded_base_url: {reason}.", param="encoded_base_url", code="invalid_base_url"
    )


def _forbidden(reason: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"encoded_base_url is not allowed: {reason}.", param="encoded_base_url", code="base_url_not_allowed"
    )


def _parse_origin(url: str) -> _Origin:
    """Parse an http(s) URL into its origin and path; ValueError on anything else."""
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise ValueError("contains whitespace or control characters")
    parts: SplitResult = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("only http and https URLs are allowed")
    if "@" in parts.netloc:
        raise ValueError("user-info is not allowed")
    if parts.fragment or parts.query:
        raise ValueError("query strings and fragments are not allowed")
    if not parts.hostname:
        raise ValueError("a host is required")
    if _has_dot_segment(parts.path):
        raise ValueError("'.' and '..' path segments are not allowed")
    port = parts.port if parts.port is not None else _DEFAULT_PORTS[scheme]
    return _Origin(scheme, parts.hostname.lower().rstrip("."), port, parts.path or "/")


def _has_dot_segment(path: str) -> bool:
    """True when the path climbs or stays put with ``.``/``..``, in any spelling.

    The allow-list compares paths as written, but servers and proxies on the way normalise them:
    ``/v1/../internal`` (or ``/v1/%2e%2e/internal``, ``/v1%2f..%2finternal``, ``/v1\\..``) would
    pass a ``/v1`` prefix and then reach ``/internal``.
    """
    decoded = unquote(path).replace("\\", "/")
    return any(segment in (".", "..") for segment in decoded.split("/"))


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class BaseUrlPolicy:
    """Decides whether a decoded client base URL may be used as the request's ``api_base``."""

    def __init__(self, allowed_prefixes: Iterable[str], resolver: Resolver | None = None) -> None:
        self._allowed: tuple[_Origin, ...] = tuple(_parse_origin(prefix) for prefix in allowed_prefixes)
        # The same rule is given to the provider client, which applies it again at connect time.
        self.address_rule = AddressRule(origin.host for origin in self._allowed)
        self._resolve = resolver or _system_resolver

    @property
    def enabled(self) -> bool:
        return bool(self._allowed)

    async def check(self, encoded: str) -> str:
        """Return the decoded URL to use as ``api_base``, or raise 400/403."""
        url = decode_base_url(encoded)
        try:
            origin = _parse_origin(url)
        except ValueError as exc:
            raise _forbidden(str(exc)) from None
        if not any(allowed.covers(origin) for allowed in self._allowed):
            raise _forbidden("it does not match ALLOWED_BASE_URLS")
        try:
            addresses = await self._resolve(origin.host, origin.port)
        except OSError:
            raise _forbidden("its host does not resolve") from None
        refusal = self.address_rule.refusal(origin.host, addresses)
        if refusal is not None:
            raise _forbidden(refusal)
        return url
