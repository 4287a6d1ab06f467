"""moto's AWS emulator (``moto[server]``) as a process of its own on a free loopback port.

The gateway reaches it as it would reach AWS: through boto3, pointed at it by the standard
``AWS_ENDPOINT_URL``, with a region and (dummy) credentials from the environment.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx

from tests.e2e.process import free_port

REGION = "eu-west-1"


class MotoServer:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (log_dir / "moto.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> MotoServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("moto server exited early")
            try:
                if httpx.get(f"{self.url}/moto-api/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("moto server did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log.close()

    def __enter__(self) -> MotoServer:
        return self.wait_ready()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The standard AWS environment that points boto3 at this emulator."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def secrets_client(self) -> Any:
        return boto3.client(
            "secretsmanager",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_secret(self, value: str | bytes) -> str:
        """A secret of its own for one test (the emulator is shared); its name."""
        name = f"gateway/{uuid.uuid4().hex[:12]}"
        client = self.secrets_client()
        if isinstance(value, bytes):
            client.create_secret(Name=name, SecretBinary=value)
        else:
            client.create_secret(Name=name, SecretString=value)
        return name

    def put(self, name: str, value: str) -> None:
        """A new current version of ``name``, as a rotation makes one."""
        self.secrets_client().put_secret_value(SecretId=name, SecretString=value)
