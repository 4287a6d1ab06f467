"""Run an ASGI application with uvicorn in a background thread.

Tests and benchmarks need real HTTP servers (the gateway talks to its upstream
and to Langfuse over sockets, through clients we do not control), but they
should not have to manage subprocesses.  :class:`ServerThread` binds a
listening socket on ``127.0.0.1`` with an OS-assigned port *before* starting,
so the URL is known immediately, then serves the app from a daemon thread that
owns its own event loop.

Keep-alive latency matters for benchmarks: every accepted socket gets
``TCP_NODELAY`` so small responses are not held back by Nagle's algorithm
interacting with the client's delayed ACKs (which costs ~40 ms per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Any, Literal

import uvicorn
from uvicorn.config import LifespanType

__all__ = ["ServerThread"]

_HOST = "127.0.0.1"


def _bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _protocol_class(http: Literal["auto", "h11", "httptools"]) -> type[asyncio.Protocol]:
    """Return uvicorn's HTTP protocol class with TCP_NODELAY set per connection."""
    base: type[asyncio.Protocol]
    if http in ("auto", "httptools"):
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

            base = HttpToolsProtocol
        except ImportError:
            if http == "httptools":
                raise
            from uvicorn.protocols.http.h11_impl import H11Protocol

            base = H11Protocol
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol

    def connection_made(self: Any, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        base.connection_made(self, transport)

    return type(f"NoDelay{base.__name__}", (base,), {"connection_made": connection_made})


class ServerThread:
    """Serve ``app`` on ``127.0.0.1:<free port>`` from a background thread.

    Usable as a context manager (``with ServerThread(app) as srv: srv.url``) or
    with explicit :meth:`start` / :meth:`stop`.  The listening socket is bound
    in the constructor, so always pair construction with :meth:`stop`.
    """

    def __init__(
        self,
        app: Any,
        *,
        port: int = 0,
        lifespan: LifespanType = "auto",
        http: Literal["auto", "h11", "httptools"] = "auto",
        loop: Literal["auto", "asyncio", "uvloop"] = "auto",
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self._app = app
        self._sock = _bind_socket(_HOST, port)
        self.port: int = self._sock.getsockname()[1]
        self._config = uvicorn.Config(
            app,
            lifespan=lifespan,
            http=_protocol_class(http),
            loop=loop,
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            # As the gateway serves (KEEP_ALIVE_S): idle connections outlive the clients' 5 s, so
            # a client never reuses one the server has just closed.
            timeout_keep_alive=75,
        )
        self._server = uvicorn.Server(self._config)
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ServerThread:
        """Start serving and block until the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"server on port {self.port} failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server on port {self.port} did not start in time")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait for the thread (bounded)."""
        thread = self._thread
        if thread is None:
            self._sock.close()
            return
        self._server.should_exit = True
        thread.join(self._shutdown_timeout)
        if thread.is_alive():
            self._server.force_exit = True
            thread.join(self._shutdown_timeout)
        self._sock.close()

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # surfaced by start()
            self._error = exc

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
