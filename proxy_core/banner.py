"""The one banner ``python -m proxy_core`` prints once it serves: where it is, and where things go.

A newcomer's first question after ``make run`` is whether it worked and where the traces will
be; an operator's is which stores a process really uses. The banner answers both from the
validated settings, once every worker is ready (``/ready`` answered 200), never with a secret:
Redis is named by host, port and database, Langfuse by host.
"""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlsplit

import httpx

from proxy_core.retry import RetryableError, retrying_blocking
from proxy_core.settings import Settings

logger = logging.getLogger("proxy_core")


def public_url(settings: Settings) -> str:
    """The address to give a person: a wildcard listen address is reached on localhost."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _probe_url(settings: Settings) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(settings.host, settings.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/ready"


def _redis_place(settings: Settings) -> str | None:
    if settings.redis_url is not None:
        parts = urlsplit(settings.redis_url.get_secret_value())
        database = parts.path.lstrip("/") or "0"
        return f"Redis at {parts.hostname}:{parts.port or 6379}/{database}"
    if settings.redis_host is not None:
        return f"Redis at {settings.redis_host}:{settings.redis_port}/{settings.redis_db}"
    return None


def banner(settings: Settings) -> str:
    """The banner's text (pure, for tests)."""
    url = public_url(settings)
    redis = _redis_place(settings)
    projects = settings.secrets.langfuse_keys
    if projects:
        hosts = sorted({project.host or settings.langfuse_host for project in projects.values()})
        traces = f"Langfuse at {', '.join(hosts)} ({len(projects)} project{'s' if len(projects) != 1 else ''})"
    else:
        place = f"in {redis}" if redis else "in this process"
        traces = f"the embedded trace store, {place} (no Langfuse project configured)"
    rollouts = f"{redis}, keys under {settings.redis_key_prefix!r}" if redis else "in this process (one process only)"
    workers = f", {settings.workers} workers" if settings.workers > 1 else ""
    return (
        f"proxy-core is ready on {url}{workers}\n"
        f"  traces:   {traces}; read back with GET {url}/traces?tags=rollout_id:<id>\n"
        f"  rollouts: {rollouts}\n"
        f"  API:      {url}/docs"
    )


def announce_when_ready(settings: Settings, *, timeout_s: float = 300.0) -> threading.Thread:
    """Log ``banner(settings)`` once ``/ready`` answers 200, from a daemon thread."""

    def wait_and_announce() -> None:
        with httpx.Client(timeout=2.0) as client:
            try:
                for attempt in retrying_blocking(deadline=time.monotonic() + timeout_s, base_s=0.05, cap_s=0.5):
                    with attempt:
                        _require_ready(client, _probe_url(settings))
            except RetryableError as exc:
                logger.warning("not ready after %.0f s (%s); GET /ready says why", timeout_s, exc)
                return
        logger.info("%s", banner(settings))

    thread = threading.Thread(target=wait_and_announce, name="banner", daemon=True)
    thread.start()
    return thread


def _require_ready(client: httpx.Client, url: str) -> None:
    try:
        status = client.get(url).status_code
    except httpx.HTTPError as exc:
        raise RetryableError(f"{type(exc).__name__}") from exc
    if status != 200:
        raise RetryableError(f"/ready answered {status}")
