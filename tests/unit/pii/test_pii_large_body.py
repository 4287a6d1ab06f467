"""A large body is redacted on the sanitizer's own thread, exactly as a small one is inline."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from proxy_core.policy_config import GovernanceConfig
from proxy_core.services.sanitizer import OFF_LOOP_BYTES, Sanitizer

CONFIG = GovernanceConfig.model_validate({"projects": {"redacted": {"pii": {"mode": "redact"}}}})
LINE = "Call (312) 555-0147 or jane.doe@example.org about the claim. "


class _Recording(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.threads: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        def run() -> Any:
            self.threads.append(threading.current_thread().name)
            return fn(*args, **kwargs)

        return super().submit(run)


def _body(size: int) -> tuple[dict[str, Any], int]:
    count = size // len(LINE) + 1
    return {"model": "m", "messages": [{"role": "user", "content": LINE * count}]}, len(LINE) * count


async def test_a_large_body_goes_to_the_thread_and_a_small_one_does_not() -> None:
    sanitizer = Sanitizer(CONFIG)
    executor = _Recording()
    sanitizer._large_bodies = executor
    try:
        small, small_size = _body(1024)
        large, large_size = _body(OFF_LOOP_BYTES)
        inline = sanitizer.for_request("redacted")
        assert await inline.body_of(small, small_size) == sanitizer.for_request("redacted").body(small)
        assert executor.threads == []
        off_loop = await sanitizer.for_request("redacted").body_of(large, large_size)
        assert len(executor.threads) == 1
        assert off_loop == sanitizer.for_request("redacted").body(large)
        assert "555-0147" not in str(off_loop)
        assert "<REDACTED_PHONE_1>" in str(off_loop)
    finally:
        sanitizer.close()


async def test_without_redaction_nothing_is_sent_to_the_thread() -> None:
    config = GovernanceConfig.model_validate({"projects": {"open": {"pii": {"mode": "off"}}}})
    sanitizer = Sanitizer(config)
    large, size = _body(OFF_LOOP_BYTES)
    assert await sanitizer.for_request("open").body_of(large, size) is large
    assert sanitizer._large_bodies is None  # never started
    sanitizer.close()


async def test_close_stops_the_thread_and_a_later_request_starts_another() -> None:
    sanitizer = Sanitizer(CONFIG)
    large, size = _body(OFF_LOOP_BYTES)
    await sanitizer.for_request("redacted").body_of(large, size)
    sanitizer.close()
    assert sanitizer._large_bodies is None
    assert await sanitizer.for_request("redacted").body_of(large, size)
    sanitizer.close()
