"""The secrets in force, and how a refresh replaces them.

The secrets (Langfuse projects, the default project, gateway API keys) come from a
``SecretsSource``: the secrets file, or a secret manager behind an adapter. What the gateway
builds from them — the project table, the authentication provider, the public-key → project
lookup of export-stage redaction — is built once per version into one ``SecretsSnapshot``, and
``CurrentSecrets`` holds the snapshot in force. A refresh builds the next snapshot whole, then
replaces the reference in one assignment; every reader (a request on the event loop, an exporter
thread) takes the snapshot at each use and keeps no part of it, so each sees one version or the
next, never pieces of both, and rotated keys apply from the next request on without a restart.

A refresh that fails — the source unreachable, the secret missing, malformed or unfit for
production — changes nothing: the last good snapshot stays in force and the failure is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from proxy_core.config_files import ConfigError, SecretsFile
from proxy_core.retry import RetryableError, retrying_blocking
from proxy_core.services.auth import AuthProvider, Principal
from proxy_core.services.background import cancel_and_wait
from proxy_core.services.projects import ProjectDirectory, ProjectTable

logger = logging.getLogger("proxy_core.secrets")


class SecretsSource(Protocol):
    """Where the secrets are read from."""

    @property
    def name(self) -> str:
        """How logs and errors name the source (an id or a path, never a value)."""
        ...

    def load(self) -> SecretsFile:
        """The secrets as they are now; blocking (it may go over the network).

        Raises ``ConfigError`` when they are missing, malformed or refused, and
        ``RetryableError`` when the source could not be reached.
        """
        ...


@dataclass(frozen=True, slots=True)
class SecretsSnapshot:
    """Everything built from one version of the secrets; never edited, replaced whole."""

    secrets: SecretsFile
    projects: ProjectTable
    auth: AuthProvider


SnapshotBuilder = Callable[[SecretsFile], SecretsSnapshot]


class CurrentSecrets:
    """Holds the snapshot in force and hands out views that read it at each use."""

    def __init__(self, build: SnapshotBuilder, secrets: SecretsFile) -> None:
        """``build`` turns a version of the secrets into a snapshot, raising ``ConfigError`` for one
        the gateway must not run with."""
        self._build = build
        self._snapshot = build(secrets)

    @property
    def snapshot(self) -> SecretsSnapshot:
        return self._snapshot

    def replace(self, secrets: SecretsFile) -> bool:
        """Put ``secrets`` in force; False when they equal the secrets in force (nothing is rebuilt).

        Secrets without gateway API keys never replace secrets with some: a secret cut short
        must not open the gateway to everyone (a restart can still switch authentication off).
        A ``ConfigError`` leaves the snapshot in force untouched.
        """
        if secrets == self._snapshot.secrets:
            return False
        if self._snapshot.secrets.api_keys and not secrets.api_keys:
            raise ConfigError("they name no api_keys, and a refresh never switches gateway authentication off")
        snapshot = self._build(secrets)
        self._snapshot = snapshot
        return True

    def projects(self) -> ProjectDirectory:
        return ProjectDirectory(lambda: self._snapshot.projects)

    def auth(self) -> AuthProvider:
        return _CurrentAuth(self)


class _CurrentAuth:
    """The authentication provider of the snapshot in force (gateway keys may come and go)."""

    def __init__(self, current: CurrentSecrets) -> None:
        self._current = current

    @property
    def forwards_client_key(self) -> bool:
        return self._current.snapshot.auth.forwards_client_key

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return await self._current.snapshot.auth.authenticate(headers)


def load_at_start(source: SecretsSource, within_s: float) -> SecretsFile:
    """The secrets to start with. A source that cannot be reached is tried again (the one retry
    policy) for up to ``within_s``; then, like a missing or malformed secret, it is a
    ``ConfigError``, which stops start-up before the gateway answers anything."""
    try:
        secrets: SecretsFile = retrying_blocking(deadline=time.monotonic() + within_s)(source.load)
    except RetryableError as exc:
        raise ConfigError(f"{source.name}: {exc}") from None
    return secrets


def _summary(secrets: SecretsFile) -> str:
    return f"{len(secrets.langfuse_keys)} Langfuse project(s), {len(secrets.api_keys)} gateway API key(s)"


async def refresh_once(current: CurrentSecrets, source: SecretsSource) -> bool:
    """Read ``source`` again (on a worker thread) and put what it holds in force; whether it changed.

    On failure the secrets in force stay, and a warning says so.
    """
    try:
        secrets = await asyncio.to_thread(source.load)
        changed = current.replace(secrets)
    except (ConfigError, RetryableError) as exc:
        logger.warning(
            "refreshing the secrets from %s failed (%s); the last good secrets stay in force", source.name, exc
        )
        return False
    if changed:
        logger.info("secrets refreshed from %s: %s", source.name, _summary(secrets))
    return changed


async def keep_refreshed(current: CurrentSecrets, source: SecretsSource, interval_s: float) -> None:
    """Refresh every ``interval_s`` until cancelled (at shutdown).

    An unexpected error is logged and the schedule goes on: a refresh loop that died would
    silently freeze the secrets until the next restart.
    """
    while True:
        await asyncio.sleep(interval_s)
        try:
            await refresh_once(current, source)
        except Exception:
            logger.exception("refreshing the secrets from %s failed; the last good secrets stay in force", source.name)


class SecretsRefresher:
    """The refresh schedule as a task of the application's lifespan (none without an interval)."""

    def __init__(self, current: CurrentSecrets, source: SecretsSource | None, interval_s: float | None) -> None:
        self._current = current
        self._source = source
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._source is not None and self._interval_s is not None

    def start(self) -> None:
        if self._source is not None and self._interval_s is not None:
            self._task = asyncio.create_task(keep_refreshed(self._current, self._source, self._interval_s))

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
