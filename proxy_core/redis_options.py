"""Where Redis is and how to reach it, worked out once from the settings.

Three topologies share one set of options: a single server (``standalone``), a Redis Cluster
reached through any of its nodes (``cluster``), and a master found through Redis Sentinel
(``sentinel``). Credentials and TLS apply to every one of them. The settings class validates the
combination at start-up (``redis_problem``) so a deployment that names a cluster without a node,
or TLS files without TLS, stops with one line instead of failing on its first request; the Redis
adapters build their clients from the ``RedisOptions`` derived here and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import SecretStr

RedisMode = Literal["standalone", "cluster", "sentinel"]
URL_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PORT = 6379


@dataclass(frozen=True, slots=True)
class RedisTls:
    """TLS for every connection (data nodes and sentinels): the CA to trust, an optional client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """A validated Redis target: ``url`` for standalone and cluster (user-info removed, carried by
    ``username``/``password``), ``sentinels`` and ``service`` for Sentinel."""

    mode: RedisMode
    url: str | None
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: SecretStr | None = field(default=None, repr=False)
    db: int = 0
    tls: RedisTls | None = None
    timeout_s: float = 2.0
    wait_replicas: int = 0
    wait_timeout_ms: int | None = None  # None: half of ``timeout_s``

    @property
    def password_value(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None

    @property
    def sentinel_password_value(self) -> str | None:
        return self.sentinel_password.get_secret_value() if self.sentinel_password is not None else None

    def node(self) -> tuple[str, int]:
        """The host and port ``url`` names (a cluster's seed node)."""
        parts = urlsplit(self.url or "")
        return parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT

    def url_with_credentials(self, **query: str) -> str:
        """``url`` with the username and password put back (percent-encoded), plus ``query`` options:
        for clients that take a connection only as a URL."""
        parts = urlsplit(self.url or "")
        userinfo = ""
        if self.username or self.password is not None:
            userinfo = quote(self.username or "", safe="")
            if self.password is not None:
                userinfo += ":" + quote(self.password.get_secret_value(), safe="")
            userinfo += "@"
        netloc = userinfo + parts.netloc
        extra = "&".join(f"{name}={quote(value, safe='/')}" for name, value in query.items())
        combined = "&".join(part for part in (parts.query, extra) if part)
        return urlunsplit((parts.scheme, netloc, parts.path, combined, parts.fragment))


def split_url(url: str) -> tuple[str, str | None, str | None]:
    """The URL without user-info, and the username and password it carried (percent-decoded)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), username, password


def parse_sentinels(values: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """``host:port`` pairs (IPv6 hosts in brackets); ``ValueError`` naming the bad entry."""
    nodes = []
    for value in values:
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port")
        nodes.append((host, int(port)))
    return tuple(nodes)


def url_problem(url: str, mode: RedisMode) -> str | None:
    """Why REDIS_URL cannot name a server of ``mode``, or None."""
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        return "REDIS_URL must start with redis://, rediss:// or unix://"
    if mode == "cluster":
        if parts.scheme == "unix" or not parts.hostname:
            return "REDIS_MODE=cluster needs REDIS_URL naming a node as redis://host:port (or rediss://)"
        if parts.path.strip("/") not in ("", "0"):
            return "REDIS_MODE=cluster has only database 0; REDIS_URL names another"
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        return "REDIS_URL has an invalid port"
    return None


NO_REDIS_TARGET = "REDIS_URL, REDIS_HOST or REDIS_SENTINELS"


class RedisFields(Protocol):
    """The settings ``redis_target`` reads (``Settings`` has them; tests may pass less)."""

    redis_mode: RedisMode
    redis_url: SecretStr | None
    redis_host: str | None
    redis_port: int
    redis_username: str | None
    redis_password: SecretStr | None
    redis_db: int
    redis_sentinels: tuple[str, ...]
    redis_sentinel_service: str | None
    redis_sentinel_username: str | None
    redis_sentinel_password: SecretStr | None
    redis_tls: bool
    redis_tls_ca_file: Path | None
    redis_tls_cert_file: Path | None
    redis_tls_key_file: Path | None
    redis_wait_replicas: int | None
    redis_wait_timeout_ms: int
    redis_timeout_s: float


def redis_target(fields: RedisFields) -> RedisOptions | None:
    """The Redis target the settings name, None when they name none; ``ValueError`` (one line,
    naming the variables) when the combination cannot be what was meant."""
    mode = fields.redis_mode
    raw_url = fields.redis_url.get_secret_value() if fields.redis_url is not None else None
    if mode == "sentinel":
        _check_sentinel(fields, raw_url)
    elif fields.redis_sentinels or fields.redis_sentinel_service:
        raise ValueError(f"REDIS_SENTINELS and REDIS_SENTINEL_SERVICE need REDIS_MODE=sentinel (it is {mode})")
    if mode == "cluster":
        if raw_url is None or fields.redis_host is not None:
            raise ValueError("REDIS_MODE=cluster takes REDIS_URL naming any node of the cluster, and no REDIS_HOST")
        if fields.redis_wait_replicas:
            raise ValueError("REDIS_WAIT_REPLICAS is not available with REDIS_MODE=cluster")
    if mode == "standalone" and raw_url is None and fields.redis_host is None:
        return None
    wait = fields.redis_wait_replicas
    if wait is None:
        wait = 1 if mode == "sentinel" else 0
    if wait and fields.redis_wait_timeout_ms >= fields.redis_timeout_s * 1000:
        # Cut off by the socket timeout, a WAIT would read as a lost connection, not as "too few replicas".
        raise ValueError(
            f"REDIS_WAIT_TIMEOUT_MS ({fields.redis_wait_timeout_ms}) must be below REDIS_TIMEOUT_S "
            f"({fields.redis_timeout_s:g} s)"
        )
    url, url_username, url_password = _url(fields, raw_url)
    tls = _tls(fields, url)
    return RedisOptions(
        mode=mode,
        url=url,
        sentinels=parse_sentinels(fields.redis_sentinels) if mode == "sentinel" else (),
        service=fields.redis_sentinel_service,
        username=fields.redis_username or url_username,
        password=fields.redis_password or (SecretStr(url_password) if url_password is not None else None),
        sentinel_username=fields.redis_sentinel_username,
        sentinel_password=fields.redis_sentinel_password,
        db=fields.redis_db,
        tls=tls,
        timeout_s=fields.redis_timeout_s,
        wait_replicas=wait,
        wait_timeout_ms=fields.redis_wait_timeout_ms,
    )


def _check_sentinel(fields: RedisFields, raw_url: str | None) -> None:
    if not fields.redis_sentinels or not fields.redis_sentinel_service:
        raise ValueError("REDIS_MODE=sentinel needs REDIS_SENTINELS (host:port,…) and REDIS_SENTINEL_SERVICE")
    if raw_url is not None or fields.redis_host is not None:
        raise ValueError("REDIS_MODE=sentinel finds the master through REDIS_SENTINELS: unset REDIS_URL and REDIS_HOST")
    try:
        parse_sentinels(fields.redis_sentinels)
    except ValueError as exc:
        raise ValueError(f"REDIS_SENTINELS: {exc}") from None


def _url(fields: RedisFields, raw_url: str | None) -> tuple[str | None, str | None, str | None]:
    """The data node's URL without user-info (None with Sentinel), and the credentials it carried."""
    if fields.redis_mode == "sentinel":
        return None, None, None
    if raw_url is not None and fields.redis_host is not None:
        raise ValueError("set REDIS_URL or REDIS_HOST, not both")
    if raw_url is None:
        scheme = "rediss" if fields.redis_tls else "redis"
        host = f"[{fields.redis_host}]" if ":" in (fields.redis_host or "") else fields.redis_host
        return f"{scheme}://{host}:{fields.redis_port}/{fields.redis_db}", None, None
    problem = url_problem(raw_url, fields.redis_mode)
    if problem is not None:
        raise ValueError(problem)
    url, username, password = split_url(raw_url)
    if fields.redis_tls and url.startswith("redis://"):
        url = "rediss://" + url.removeprefix("redis://")
    return url, username, password


def _tls(fields: RedisFields, url: str | None) -> RedisTls | None:
    """TLS options, when TLS is on (``rediss://`` or REDIS_TLS); files must exist and come in pairs."""
    enabled = fields.redis_tls or (url or "").startswith("rediss://")
    files = {
        "REDIS_TLS_CA_FILE": fields.redis_tls_ca_file,
        "REDIS_TLS_CERT_FILE": fields.redis_tls_cert_file,
        "REDIS_TLS_KEY_FILE": fields.redis_tls_key_file,
    }
    named = [name for name, path in files.items() if path is not None]
    if not enabled:
        if named:
            raise ValueError(f"{', '.join(named)} set, but TLS is off (use rediss:// or REDIS_TLS=true)")
        return None
    for name, path in files.items():
        if path is not None and not path.is_file():
            raise ValueError(f"{name}: {path} does not exist")
    if (fields.redis_tls_cert_file is None) != (fields.redis_tls_key_file is None):
        raise ValueError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together (a client certificate and its key)")
    return RedisTls(fields.redis_tls_ca_file, fields.redis_tls_cert_file, fields.redis_tls_key_file)
