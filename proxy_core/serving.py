"""How the process serves HTTP: uvicorn itself for one worker, one listener per worker for more.

With uvicorn's multi-process mode every worker accepts from one socket bound by the parent. A
worker woken by a burst of new connections accepts as many as are queued, so a client that opens
its whole pool at once (an evaluation harness, a load generator) can land most or all of its
keep-alive connections on one worker, which then stays the busy one for as long as they live.
Measured with two workers and 64 connections opened together: splits of 15/49, 54/10 and 64/0,
the last at half the throughput of two workers.

On Linux each worker here binds a socket of its own to the same address with ``SO_REUSEPORT``;
the kernel then hashes every new connection to one of the listening sockets, so connections
spread over the workers whatever the client does. uvicorn's supervisor is kept as it is
(health checks, restarts of dead workers, SIGHUP/SIGTTIN/SIGTTOU): it only hands each worker
process the ``sockets`` it was given, pickled, and a ``ReusePortListener`` unpickles, in the
worker, as that worker's own freshly bound socket.

uvicorn's access log would record every request target verbatim, and a ``/traces`` query string
carries client data (``user_id=jane.doe@example.org``). ``access_log_config`` is uvicorn's own
logging configuration plus a filter that keeps the path and the parameter names and drops every
value, so the access log never holds what the PII rules keep out of every other log.

With several workers, each keeps its metrics in files of its own in one directory that the parent
makes fresh for the run (``shared_metrics_dir``), so that a scrape answered by any worker sums
them all; prometheus-client learns the directory from ``PROMETHEUS_MULTIPROC_DIR``, which the
workers inherit.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import uvicorn
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

# uvicorn's own logger, configured by ``uvicorn.Config``: the line sits with uvicorn's start-up lines.
logger = logging.getLogger("uvicorn.error")

APP_FACTORY = "proxy_core.main:app_from_environment"

# Stands for each query value in the access log (ASCII: the log may go to a non-UTF-8 stream).
REMOVED = "..."
# A parameter name is kept only if it is a plain identifier; anything else could be data too.
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def without_query_values(target: str) -> str:
    """``/traces?tags=rollout_id:r1&user_id=jane@x.org`` → ``/traces?tags=...&user_id=...``."""
    path, _, query = target.partition("?")
    if not query:
        return path
    names = (part.partition("=")[0] for part in query.split("&") if part)
    return path + "?" + "&".join(f"{name if _PARAMETER_NAME.fullmatch(name) else REMOVED}={REMOVED}" for name in names)


class QueryValuesFilter(logging.Filter):
    """Rewrites the request target of uvicorn's access-log records with ``without_query_values``.

    uvicorn logs ``(client, method, target, http_version, status)`` as the record's arguments and
    its formatter reads them back from there, so only the target is replaced, in place.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (*args[:2], without_query_values(args[2]), *args[3:])
        return True


def access_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration, with ``QueryValuesFilter`` on its access logger.

    Passed as uvicorn's ``log_config``, so the worker processes, which configure their logging
    again from it, get the filter too.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"query_values": {"()": f"{__name__}.{QueryValuesFilter.__name__}"}}
    config["loggers"]["uvicorn.access"]["filters"] = ["query_values"]
    return config


# prometheus-client's switch: when set, it keeps every metric value in files in this directory.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def forget_inherited_metrics_dir() -> None:
    """The gateway chooses the directory itself: one inherited from the environment may hold an
    earlier run's files, which every scrape would add in, and one worker needs none at all."""
    os.environ.pop(METRICS_DIR_VARIABLE, None)


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """A fresh directory for the workers' metric files while they run, removed afterwards.

    Set in this (the parent) process's environment before any worker starts, so every worker,
    restarted ones included, imports prometheus-client with it and writes its values there.
    """
    path = tempfile.mkdtemp(prefix="proxy-core-metrics-")
    os.environ[METRICS_DIR_VARIABLE] = path
    try:
        yield path
    finally:
        os.environ.pop(METRICS_DIR_VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)


def reuse_port_supported() -> bool:
    """Linux balances connections over a ``SO_REUSEPORT`` group; other kernels may not."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def bind_tcp(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not listening), in its ``SO_REUSEPORT`` group or not.

    Without ``reuse_port`` the bind fails while anything else holds the port, another gateway's
    ``SO_REUSEPORT`` workers included: that is the check made before any worker starts, so a
    second gateway started on the same port fails instead of silently sharing its connections.
    """
    # The address family as uvicorn's own shared socket chooses it: IPv6 only for an IPv6 host.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _report_cannot_listen(host: str, port: int, exc: OSError) -> None:
    print(f"proxy_core: cannot listen on {host}:{port}: {exc}", file=sys.stderr)


def _worker_socket(host: str, port: int) -> socket.socket:
    """Runs in the worker while its arguments are unpickled: a failure ends it as a start-up
    failure, which makes uvicorn's supervisor stop instead of restarting it in a loop."""
    try:
        return bind_tcp(host, port, reuse_port=True)
    except OSError as exc:
        _report_cannot_listen(host, port, exc)
        raise SystemExit(STARTUP_FAILURE) from exc


class ReusePortListener:
    """Stands for a socket in the parent; becomes a new ``SO_REUSEPORT`` socket in each worker."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return (_worker_socket, (self.host, self.port))


def serve(options: dict[str, Any]) -> int:
    """Serve ``APP_FACTORY`` with uvicorn ``options`` until stopped; the process's exit status."""
    workers = int(options.get("workers") or 1)
    if workers <= 1:
        uvicorn.run(APP_FACTORY, factory=True, **options)  # exits with STARTUP_FAILURE itself
        return 0
    with shared_metrics_dir():
        if not reuse_port_supported():
            uvicorn.run(APP_FACTORY, factory=True, **options)
            return 0
        return _serve_workers(options, workers)


def _serve_workers(options: dict[str, Any], workers: int) -> int:
    """Each worker on a ``SO_REUSEPORT`` socket of its own, under uvicorn's supervisor."""
    host, port = str(options["host"]), int(options["port"])
    try:
        bind_tcp(host, port, reuse_port=False).close()  # fail here, once, not in every worker
    except OSError as exc:
        _report_cannot_listen(host, port, exc)
        return STARTUP_FAILURE
    config = uvicorn.Config(APP_FACTORY, factory=True, **options)
    logger.info("Listening on http://%s:%d with %d workers, one SO_REUSEPORT socket each", host, port, workers)
    supervisor = Multiprocess(config, sockets=cast(list[socket.socket], [ReusePortListener(host, port)]))
    supervisor.run()
    failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    return STARTUP_FAILURE if failed else 0
