"""Steady tracked-completion traffic against a gateway process, and what it was told."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.e2e.process import ROLLOUT


@dataclass
class Outcomes:
    acknowledged: set[str] = field(default_factory=set)  # insertion ids of 200 answers
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, insertion_id: str | None) -> None:
        with self.lock:
            self.statuses.append(status)
            if status == 200 and insertion_id is not None:
                self.acknowledged.add(insertion_id)

    def share_ok(self) -> float:
        with self.lock:
            return sum(1 for status in self.statuses if status == 200) / max(1, len(self.statuses))


def run_traffic(base_url: str, rollout: str, *, rate_per_s: float, seconds: float, content: str = "hi") -> Outcomes:
    """Send tracked completions at ``rate_per_s`` for ``seconds`` (paced, a few in parallel)."""
    outcomes = Outcomes()
    url = f"{base_url}/{ROLLOUT.format(r=rollout)}/chat/completions"
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(max_workers=8) as pool:

        def one(n: int) -> None:
            body = {"model": "fake", "messages": [{"role": "user", "content": f"{content} {n}"}]}
            try:
                response = client.post(url, json=body)
            except httpx.HTTPError:
                outcomes.add(0, None)
                return
            outcomes.add(response.status_code, response.headers.get("x-insertion-id"))

        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            pool.submit(one, n)
            n += 1
            time.sleep(max(0.0, started + n / rate_per_s - time.monotonic()))
    return outcomes
