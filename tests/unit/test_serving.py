"""One listening socket per worker: what a worker receives, and how a busy port is reported."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator

import pytest
from uvicorn.config import STARTUP_FAILURE

from proxy_core.serving import ReusePortListener, bind_tcp, reuse_port_supported, serve

pytestmark = pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT balancing is Linux-only")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port with a plain listener on it (no SO_REUSEPORT), as another program would hold it."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_listener_becomes_a_new_socket_of_the_ports_reuse_port_group_in_each_worker() -> None:
    with bind_tcp("127.0.0.1", 0, reuse_port=True) as first:
        port = first.getsockname()[1]
        listener = ReusePortListener("127.0.0.1", port)
        with pickle.loads(pickle.dumps(listener)) as second, pickle.loads(pickle.dumps(listener)) as third:
            for sock in (second, third):
                assert isinstance(sock, socket.socket)
                assert sock.getsockname() == ("127.0.0.1", port)
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert len({first.fileno(), second.fileno(), third.fileno()}) == 3


def test_a_worker_that_cannot_bind_ends_as_a_start_up_failure(taken_port: int) -> None:
    listener = ReusePortListener("127.0.0.1", taken_port)
    with pytest.raises(SystemExit) as stopped:
        pickle.loads(pickle.dumps(listener))
    assert stopped.value.code == STARTUP_FAILURE


def test_a_taken_port_is_reported_once_before_any_worker_starts(
    taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status = serve({"host": "127.0.0.1", "port": taken_port, "workers": 2})
    assert status == STARTUP_FAILURE
    assert f"cannot listen on 127.0.0.1:{taken_port}" in capsys.readouterr().err


def test_a_port_another_gateways_workers_listen_on_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    with bind_tcp("127.0.0.1", 0, reuse_port=True) as other_worker:
        other_worker.listen()
        port = other_worker.getsockname()[1]
        assert serve({"host": "127.0.0.1", "port": port, "workers": 2}) == STARTUP_FAILURE
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize(("host", "family"), [("localhost", socket.AF_INET), ("127.0.0.1", socket.AF_INET)])
def test_a_host_name_binds_ipv4_as_uvicorns_shared_socket_does(host: str, family: socket.AddressFamily) -> None:
    with bind_tcp(host, 0, reuse_port=True) as sock:
        assert sock.family == family
        assert sock.getsockname()[0] == "127.0.0.1"
