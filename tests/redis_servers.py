"""Redis servers of a test's own on loopback: single servers, a 3-master Cluster, a Sentinel set, TLS.

Every server is a ``redis-server`` child process on a free port, never daemonised, stopped by its
PID when the test is done (the shared Redis on 6379 is never touched). TLS uses a throwaway CA
made here with ``cryptography``: a server certificate for 127.0.0.1 and a client certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REDIS_SERVER = shutil.which("redis-server") or "redis-server"
REDIS_CLI = shutil.which("redis-cli") or "redis-cli"
SERVICE = "gw-master"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something truthy; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except (redis.RedisError, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (PEM files)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _issue(
    directory: Path, name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, *, server: bool = False
) -> tuple[x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"proxy-core test {name}")])
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    certificate = builder.sign(issuer_key, hashes.SHA256())
    (directory / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return subject, key


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _issue(directory, "ca", None)
    _issue(directory, "server", ca, server=True)
    _issue(directory, "client", ca)
    return Certificates(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


@dataclass(frozen=True)
class Access:
    """How clients reach the test's servers: TLS certificates and an ACL user, when set."""

    tls: Certificates | None = None
    username: str | None = None
    password: str | None = None
    client_certificate: str = "yes"  # the server's tls-auth-clients: yes (required) or optional

    def server_args(self) -> list[str]:
        args: list[str] = []
        if self.tls is not None:
            args += [
                "--tls-cert-file", str(self.tls.server_cert), "--tls-key-file", str(self.tls.server_key),
                "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", self.client_certificate,
                "--tls-replication", "yes", "--tls-cluster", "yes",
            ]  # fmt: skip
        if self.username is not None:
            # The ACL user may touch every key; the default user may not log in at all.
            args += [
                "--user",
                self.username,
                "on",
                f">{self.password}",
                "~*",
                "&*",
                "+@all",
                "--user",
                "default",
                "off",
            ]
        return args

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.tls is not None:
            kwargs.update(
                ssl=True,
                ssl_ca_certs=str(self.tls.ca),
                ssl_certfile=str(self.tls.client_cert),
                ssl_keyfile=str(self.tls.client_key),
            )
        if self.username is not None:
            kwargs.update(username=self.username, password=self.password)
        return kwargs

    def cli_args(self) -> list[str]:
        args: list[str] = []
        if self.tls is not None:
            args += ["--tls", "--cacert", str(self.tls.ca), "--cert", str(self.tls.client_cert)]
            args += ["--key", str(self.tls.client_key)]
        if self.username is not None:
            args += ["--user", self.username, "--pass", str(self.password)]
        return args

    @property
    def scheme(self) -> str:
        return "rediss" if self.tls is not None else "redis"


@dataclass
class RedisServer:
    """One ``redis-server`` child process on a free loopback port."""

    directory: Path
    args: list[str] = field(default_factory=list)
    access: Access = field(default_factory=Access)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        port_args = ["--port", "0", "--tls-port", str(self.port)] if self.access.tls else ["--port", str(self.port)]
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [REDIS_SERVER, *self.args, *port_args, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), *self.access.server_args()],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self.ping, 10, f"redis-server on port {self.port}")
        return self

    def client(self, **kwargs: Any) -> redis.Redis:
        options: dict[str, Any] = {"socket_timeout": 5, "decode_responses": True, **self.access.client_kwargs()}
        return redis.Redis(host="127.0.0.1", port=self.port, **{**options, **kwargs})

    def ping(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited:\n{(self.directory / 'server.log').read_text()}")
        with self.client(socket_timeout=1) as client:
            return bool(client.ping())

    @property
    def url(self) -> str:
        return f"{self.access.scheme}://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def running(*servers: RedisServer) -> Iterator[tuple[RedisServer, ...]]:
    """Start the servers; stop every one of them (by PID) however the block ends."""
    with ExitStack() as stack:
        for server in servers:
            stack.callback(server.stop)
            server.start()
        yield servers


@dataclass
class Cluster:
    """Three masters, no replicas, all 16 384 slots covered."""

    nodes: tuple[RedisServer, ...]
    access: Access

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(
            host="127.0.0.1", port=self.nodes[0].port, decode_responses=True, **self.access.client_kwargs()
        )

    def node_ids(self) -> dict[int, str]:
        ids = {}
        for node in self.nodes:
            with node.client() as client:
                ids[node.port] = client.execute_command("CLUSTER", "MYID")
        return ids

    def owner(self, slot: int) -> RedisServer:
        """The master that serves ``slot`` now."""
        with self.nodes[0].client() as client:
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return next(node for node in self.nodes if node.port == int(primary[1]))
        raise LookupError(slot)


@contextmanager
def redis_cluster(directory: Path, access: Access | None = None) -> Iterator[Cluster]:
    access = access or Access()
    nodes = tuple(
        RedisServer(
            directory / f"node-{n}",
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(free_port()),
             "--cluster-node-timeout", "2000"],
            access,
        )
        for n in range(3)
    )  # fmt: skip
    with running(*nodes):
        subprocess.run(
            [REDIS_CLI, *access.cli_args(), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for node in nodes:
            wait_for(lambda node=node: _cluster_ok(node), 30, f"cluster state ok on {node.port}")
        yield Cluster(nodes, access)


def _cluster_ok(node: RedisServer) -> bool:
    with node.client() as client:
        info = client.execute_command("CLUSTER", "INFO")
        return "cluster_state:ok" in info and "cluster_known_nodes:3" in info


@dataclass
class SentinelSet:
    """A master, one replica, and three sentinels watching them as ``SERVICE``."""

    master: RedisServer
    replica: RedisServer
    sentinels: tuple[RedisServer, ...]

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master_port(self) -> int:
        with self.sentinels[0].client() as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return int(port)

    def server(self, port: int) -> RedisServer:
        return self.master if self.master.port == port else self.replica


def _sentinel_ready(sentinel: RedisServer) -> bool:
    with sentinel.client() as client:
        state = client.sentinel_master(SERVICE)
        return int(state["num-slaves"]) == 1 and int(state["num-other-sentinels"]) == 2


@contextmanager
def sentinel_set(directory: Path) -> Iterator[SentinelSet]:
    # A demoted master resyncs at once (Redis waits 5 s by default for more replicas to sync with).
    quick_sync = ["--repl-diskless-sync-delay", "0"]
    master = RedisServer(directory / "master", quick_sync)
    replica = RedisServer(directory / "replica", [*quick_sync, "--replicaof", "127.0.0.1", str(master.port)])
    sentinels = []
    for n in range(3):
        folder = directory / f"sentinel-{n}"
        folder.mkdir(parents=True)
        (folder / "sentinel.conf").write_text(
            f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        sentinels.append(RedisServer(folder, [str(folder / "sentinel.conf"), "--sentinel"]))
    with running(master, replica, *sentinels):
        with replica.client() as client:
            wait_for(lambda: client.info("replication").get("master_link_status") == "up", 30, "replication")
        for sentinel in sentinels:
            wait_for(lambda sentinel=sentinel: _sentinel_ready(sentinel), 30, f"sentinel {sentinel.port}")
        yield SentinelSet(master, replica, tuple(sentinels))
