"""Who is calling, and which projects they may use.

``AuthProvider`` is the extension point (a deployment can plug in its own). Two are built in:

* ``NoAuth`` (default, for local use): everyone may use every project, and the client's
  ``Authorization: Bearer`` value is the provider API key, as the original gateway did.
* ``StaticApiKeys``: ``Authorization: Bearer <gateway key>``; each key is bound to projects and
  compared in constant time. Provider keys then come from the server's own configuration.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from proxy_core.errors import AuthenticationError, PermissionDeniedError

ALL_PROJECTS = "*"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``projects`` is None when the caller may use every project. ``provider_api_key`` is the key
    to send upstream on the caller's behalf (only when the bearer token is not a gateway key).
    """

    name: str
    projects: frozenset[str] | None
    provider_api_key: str | None = None

    def may_use(self, project_id: str | None) -> bool:
        return self.projects is None or (project_id is not None and project_id in self.projects)

    def require(self, project_id: str | None) -> None:
        if not self.may_use(project_id):
            raise PermissionDeniedError("This API key may not be used for this project.", param="project_id")


class AuthProvider(Protocol):
    """Turns request headers into a ``Principal`` or raises ``AuthenticationError``."""

    @property
    def forwards_client_key(self) -> bool:
        """Whether the bearer token is the caller's provider key (True) or a gateway key."""
        ...

    async def authenticate(self, headers: Mapping[str, str]) -> Principal: ...


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class NoAuth:
    """No gateway authentication; the bearer token, if any, is forwarded as the provider key."""

    forwards_client_key = True

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return Principal(name="anonymous", projects=None, provider_api_key=bearer_token(headers))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class StaticApiKeys:
    """Gateway API keys from configuration, each bound to a set of projects."""

    forwards_client_key = False

    def __init__(self, keys: Iterable[tuple[str, str, Iterable[str]]]) -> None:
        """``keys``: (name, secret key, projects) triples; ``"*"`` in projects means all."""
        self._entries: list[tuple[bytes, Principal]] = []
        for name, secret, projects in keys:
            project_set = frozenset(projects)
            principal = Principal(name=name, projects=None if ALL_PROJECTS in project_set else project_set)
            self._entries.append((_digest(secret), principal))

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        token = bearer_token(headers)
        if token is None:
            raise AuthenticationError(
                "Missing API key: send 'Authorization: Bearer <gateway key>'.", code="missing_api_key"
            )
        candidate = _digest(token)
        match: Principal | None = None
        for digest, principal in self._entries:
            # Compare against every entry so timing does not reveal which one matched.
            if hmac.compare_digest(candidate, digest):
                match = principal
        if match is None:
            raise AuthenticationError("Invalid API key.")
        return match
